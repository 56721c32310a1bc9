"""The bad-input matrix: every catalog entry x every bad-input class x torch, the reference, the graph.

Generated from the catalog (no per-loss code). Each cell is either the documented error, raised by
all three paths with the same class and the same one-line message, or the documented value, equal
in all three; no cell lets an out-of-domain input become a finite number:

* labels out of range (one label = the class count, one = -1), float labels (whole values accepted
  by the binary losses, fractions refused; other losses refuse floats), [0, 1] inputs (probabilities,
  0/1 targets, masks, centerness) pushed outside: an InputError (InputTypeError for a dtype) in
  torch, the reference and ``OnnxLoss``; the raw graph (``validate=False``) answers NaN in every
  output, gradients included, for the inputs it guards (labels, non-differentiable [0, 1] inputs);
* every integer label dtype (uint8 ... int64) gives the int64 value in all three paths;
* a NaN or an inf in a differentiable input gives a non-finite loss in all three paths;
* an empty input (a dimension of size 0) is an InputError in all three paths, except the box losses'
  N, M (0 boxes: 0, or an empty array, in all three).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import lossgraph as lg
from lossgraph import catalog
from lossgraph.catalog import UNIT_DOMAINS, Derived, eval_dims
from lossgraph.export import OnnxLoss
from lossgraph.parity import compare, reference_eval, torch_eval

NAMES = catalog.names()


def _first_case_inputs(name):
    spec = catalog.get(name)
    return spec.input_specs(spec.cases[0].params)


LABELED = [n for n in NAMES if any(i.domain == "labels" for i in _first_case_inputs(n))]
DIFFERENTIABLE = [n for n in NAMES if any(i.grad for i in _first_case_inputs(n))]
INT_DTYPES = (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64)


def _setup(name):
    spec = catalog.get(name)
    case = spec.cases[0]
    params = spec.resolve(case.params)
    dims = dict(case.export_dims)
    return spec, params, dims, spec.example_inputs(dims, seed=3, params=params)


def _outputs(spec, params, value):
    names = spec.output_names(params)
    outs = dict(value) if isinstance(value, dict) else {names[0]: value}
    return {k: np.asarray(v, dtype=np.float64) for k, v in outs.items()}


def _three_ways(spec, params, graph, inputs):
    """``[(path, outcome)]``: outcome is the exception raised, or the outputs as float64 arrays."""
    out = []
    for path, call in (
        ("torch", lambda: torch_eval(spec, spec.build(**params), inputs, params, grad=False)[0]),
        ("reference", lambda: _outputs(spec, params, spec.ref(inputs, params))),
        ("onnx", lambda: {k: np.asarray(v, dtype=np.float64) for k, v in graph.run(**inputs).items()
                          if k in spec.output_names(params)}),  # the value outputs of the gradient graph
    ):
        try:
            out.append((path, call()))
        except (lg.InputError, lg.InputTypeError) as e:
            out.append((path, e))
    return out


def _wording(e: BaseException) -> str:
    """The message with the path's own words for a container (tensor / array) made the same."""
    text = re.sub(r"\b(tensor|array)\b", "array", str(e))
    return re.sub(r" array \((float32|int64|float64)\)", " array", text)


def assert_same_error(results, kind=lg.InputError):
    kinds = {p: type(r) for p, r in results}
    assert all(isinstance(r, kind) for _, r in results), f"expected {kind.__name__} everywhere; got {kinds}"
    words = {p: _wording(r) for p, r in results}
    assert len(set(words.values())) == 1, f"the paths word it differently: {words}"


def _bad_cells(spec, params, dims, inputs):
    """``{cell: (inputs, expected error class, graph guards it)}`` for this entry."""
    cells = {}
    for i in spec.input_specs(params):
        x = inputs[i.name]
        if i.domain == "labels":
            ignore = params.get("ignore_index")
            top = eval_dims(i.classes, dims)
            for tag, value in (("high", top), ("low", -1)):
                if value == ignore:
                    continue
                bad = x.copy()
                bad.reshape(-1)[-1] = value
                cells[f"{i.name}_{tag}"] = ({**inputs, i.name: bad}, lg.InputError, True)
            if i.floats:
                half = x.astype(np.float32)
                half.reshape(-1)[0] = 0.5
                cells[f"{i.name}_fraction"] = ({**inputs, i.name: half}, lg.InputError, True)
            else:
                cells[f"{i.name}_float"] = ({**inputs, i.name: x.astype(np.float32)}, lg.InputTypeError, False)
        elif i.domain in UNIT_DOMAINS:
            for tag, value in (("above_1", 1.5), ("below_0", -0.5)):
                bad = x.copy()
                bad.reshape(-1)[0] = value
                cells[f"{i.name}_{tag}"] = ({**inputs, i.name: bad}, lg.InputError, not i.grad)
    return cells


def _empty_cells(spec, params, inputs):
    """``{dim: inputs with that dim cut to size 0}`` (the example inputs sliced, so the other inputs
    keep matching shapes)."""
    ins = spec.input_specs(params)
    names = sorted({s for i in ins for s in i.shape if isinstance(s, str) and not isinstance(s, Derived)})
    derived = any(isinstance(s, Derived) for i in ins for s in i.shape)
    cells = {}
    for d in names:
        if derived and d.startswith(("H", "W")):  # FCOS: a level of 0 locations changes N; B covers it
            continue
        cut = {}
        for i in ins:
            x = inputs[i.name]
            for axis, s in enumerate(i.shape):
                if s == d:
                    x = np.take(x, np.arange(0), axis=axis)
            cut[i.name] = x
        cells[d] = cut
    return cells


@pytest.fixture(scope="module")
def graph_of(graphs):
    cache = {}

    def get(name):
        if name not in cache:
            spec, params, dims, _ = _setup(name)
            path = graphs.get(spec, params, dims, with_grad=True)
            cache[name] = (OnnxLoss(path, providers="cpu"), OnnxLoss(path, providers="cpu", validate=False))
        return cache[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_bad_values_are_one_error_and_nan_in_the_graph(name, graph_of):
    spec, params, dims, inputs = _setup(name)
    checked, raw = graph_of(name)
    cells = _bad_cells(spec, params, dims, inputs)
    for cell, (bad, kind, guarded) in cells.items():
        results = _three_ways(spec, params, checked, bad)
        assert_same_error(results, kind), cell
        if guarded:  # any runtime, no Python: NaN in every output, value and gradient
            outs = raw.run(**bad)
            finite = [k for k, v in outs.items() if np.isfinite(np.asarray(v, dtype=np.float64)).any()]
            assert not finite, f"{cell}: the graph answered finite {finite}"


@pytest.mark.parametrize("name", LABELED)
def test_every_integer_label_dtype_gives_the_int64_value(name, graph_of):
    spec, params, dims, inputs = _setup(name)
    labels = [i.name for i in spec.input_specs(params) if i.domain == "labels"]
    checked, _ = graph_of(name)
    want = reference_eval(spec, inputs, params, grad=False)[0]
    for dt in INT_DTYPES:
        cast = {**inputs, **{k: inputs[k].astype(dt) for k in labels}}
        if (cast[labels[0]] != inputs[labels[0]]).any():  # ignore_index 255 does not fit int8
            continue
        for path, got in _three_ways(spec, params, checked, cast):
            assert not isinstance(got, Exception), f"{path} refused {np.dtype(dt).name} labels: {got}"
            err, ok = compare(got, want, spec.rtol, spec.atol)
            assert ok, f"{path} with {np.dtype(dt).name} labels: off by {err}"
    fl = [i.name for i in spec.input_specs(params) if i.domain == "labels" and i.floats]
    if fl:  # whole-valued float labels (binary targets) equal the integer ones
        cast = {**inputs, **{k: inputs[k].astype(np.float32) for k in fl}}
        for path, got in _three_ways(spec, params, checked, cast):
            assert not isinstance(got, Exception), f"{path} refused 0/1 float labels: {got}"
            assert compare(got, want, spec.rtol, spec.atol)[1], path


@pytest.mark.parametrize("name", DIFFERENTIABLE)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_predictions_give_a_non_finite_loss(name, bad, graph_of):
    spec, params, dims, inputs = _setup(name)
    grads = spec.grad_inputs(params)
    checked, _ = graph_of(name)
    target = spec.grad_of
    domains = {i.name: i.domain for i in spec.input_specs(params)}
    for g in grads:
        x = inputs[g].copy()
        x.reshape(-1)[x.size // 2] = bad
        results = _three_ways(spec, params, checked, {**inputs, g: x})
        if np.isinf(bad) and domains[g] in UNIT_DOMAINS:  # inf is no probability: the domain error
            assert_same_error(results)
            continue
        for path, got in results:
            assert not isinstance(got, Exception), f"{path} raised on a {bad} in {g}: {got}"
            outs = got if target is None else {target: got[target]}
            finite = [k for k, v in outs.items() if np.isfinite(v).all()]
            assert not finite, f"{path}: a {bad} in {g} gave finite {finite}"


@pytest.mark.parametrize("name", NAMES)
def test_empty_inputs_are_one_error_or_the_documented_value(name, graph_of):
    spec, params, dims, inputs = _setup(name)
    checked, _ = graph_of(name)
    for d, inputs in _empty_cells(spec, params, inputs).items():
        results = _three_ways(spec, params, checked, inputs)
        if d in spec.empty_dims:  # no boxes: 0 for mean/sum, an empty array for 'none', everywhere
            values = [r for _, r in results]
            assert not any(isinstance(v, Exception) for v in values), results
            for v in values[1:]:
                assert compare(v, values[0], spec.rtol, spec.atol)[1], results
        else:
            assert_same_error(results), d


def test_measured_cases_from_the_issue(tmp_path, graphs):
    """The reproducers of the issue, each a finite number or a raw error before."""
    spec = catalog.get("dice")
    path = graphs.get(spec, spec.resolve({}), spec.export_dims, with_grad=False)
    x = np.random.default_rng(0).standard_normal((1, 4, 5, 6)).astype(np.float32)
    for bad in (7, -1):
        with pytest.raises(lg.InputError, match=r"dice: labels must be in \[0, 4\); got values in"):
            OnnxLoss(path)(x, np.full((1, 5, 6), bad))
        assert np.isnan(OnnxLoss(path, validate=False)(x, np.full((1, 5, 6), bad)))
    y8 = np.random.default_rng(1).integers(0, 4, (1, 5, 6)).astype(np.uint8)
    for name in ("cross_entropy", "focal", "ce_dice", "dice"):  # uint8 crashed torch's gather
        want = lg.reference.__dict__[name](x, y8)
        got = float(catalog.get(name).build()(torch.from_numpy(x), torch.from_numpy(y8)))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    y16 = torch.from_numpy(y8.astype(np.int32)).to(torch.uint16)  # "min_all" was not implemented
    np.testing.assert_allclose(float(lg.Dice()(torch.from_numpy(x), y16)), lg.reference.dice(x, y8), rtol=1e-5)
    xb, yb = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0.0, 1.0]).repeat(12).reshape(2, 3, 4)
    np.testing.assert_allclose(float(lg.functional.binary_xloss(xb, yb)), lg.reference.binary_xloss(xb.numpy(), yb.numpy()), rtol=1e-5)
    with pytest.raises(lg.InputTypeError, match="dice: logits must be a float tensor; got a list"):
        lg.Dice()([[0.0]], torch.zeros(1, 1, dtype=torch.long))
    np.testing.assert_allclose(  # bfloat16 tensors in the reference: read as float32
        lg.reference.sigmoid_focal(torch.tensor([[0.5, -1.0]], dtype=torch.bfloat16), np.array([[1.0, 0.0]])),
        lg.reference.sigmoid_focal(np.array([[0.5, -1.0]]), np.array([[1.0, 0.0]])),
    )
    with pytest.raises(lg.InputError, match=r"sigmoid_focal: targets must be in \[0, 1\]; got values in \[2, 2\]"):
        lg.reference.sigmoid_focal(np.zeros((2, 2)), np.full((2, 2), 2.0))
    with pytest.raises(lg.InputError, match=r"sigmoid_focal: targets must be in \[0, 1\]; got values in \[2, 2\]"):
        lg.functional.sigmoid_focal(torch.zeros(2, 2), torch.full((2, 2), 2.0))


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("lovasz_hinge", {"per_image": "no"}, "lovasz_hinge: per_image must be true or false (a JSON boolean); got 'no'"),
        ("sigmoid_focal", {"alpha": 5}, "sigmoid_focal: alpha must be a number in [0, 1] or -1; got 5"),
        ("focal", {"gamma": float("nan")}, "focal: gamma must be a number >= 0; got nan"),
        ("focal", {"gamma": -1}, "focal: gamma must be a number >= 0; got -1"),
        ("dice", {"ignore_index": 1.5}, "dice: ignore_index must be an integer or null; got 1.5"),
        ("focal", {"alpha": 1.5}, "focal: alpha must be a list of per-class numbers >= 0 or a number in [0, 1] or null; got 1.5"),
        ("lovasz_softmax", {"classes": []}, "lovasz_softmax: classes must be 'present', 'all' or a non-empty list of class ids >= 0; got []"),
    ],
)
def test_parameters_are_checked_in_every_path(name, params, message):
    spec = catalog.get(name)
    inputs = spec.example_inputs()
    calls = {
        "build": lambda: spec.build(**params),
        "functional": lambda: lg.functional.__dict__[name](*map(torch.from_numpy, inputs.values()), **params),
        "reference": lambda: lg.reference.__dict__[name](*inputs.values(), **params),
    }
    for path, call in calls.items():
        with pytest.raises((lg.InputError, lg.InputTypeError)) as info:
            call()
        assert str(info.value) == message, path


def test_class_lists_are_checked_where_c_is_known(graphs):
    from lossgraph.export import to_onnx

    spec = catalog.get("cross_entropy")
    x = spec.example_inputs({"B": 1, "C": 3, "H": 2, "W": 2})
    with pytest.raises(lg.InputError, match=r"to_onnx: cross_entropy: weight must have one value per class \(C = 3\); got 2"):
        to_onnx(spec.build(weight=[1.0, 2.0]), x)
    path = graphs.get(spec, spec.resolve({"weight": [1.0, 2.0, 3.0]}), {"B": 1, "C": 3, "H": 2, "W": 2}, with_grad=False)
    with pytest.raises(lg.InputError, match=r"cross_entropy: weight must have one value per class \(C = 4\); got 3"):
        OnnxLoss(path)(**spec.example_inputs({"B": 1, "C": 4, "H": 2, "W": 2}))


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_all_finite_by_one_sum_and_its_fallback(lib):
    """A finite sum proves every element finite; a sum that overflows (finite values) or holds a
    NaN/inf term is decided element by element."""
    from lossgraph._checks import all_finite, any_nonfinite

    make = np.asarray if lib == "numpy" else torch.tensor
    big = make(np.full(8, 3e38, dtype=np.float32))  # finite, the float32 sum overflows to inf
    assert all_finite(big) and not any_nonfinite([big])
    for bad in (np.nan, np.inf, -np.inf):
        x = np.ones(5, dtype=np.float32)
        x[3] = bad
        assert not all_finite(make(x)) and any_nonfinite([make(x)])
    x = np.full(4, 3e38, dtype=np.float32)
    x[0] = -np.inf  # inf - ... : the sum is -inf, the elementwise check finds the inf
    assert not all_finite(make(x))
    assert all_finite(make(np.zeros((0, 3), dtype=np.float32)))
    if lib == "torch":  # a tensor on the autograd graph: checked without recording anything
        t = torch.ones(3, requires_grad=True)
        assert all_finite(t * 2)
