"""Tests generated from the catalog: three-way parity, edge inputs, extreme logits, fp16, bad input.

Every catalog entry gets all of these with no per-loss code; family test files add the properties
that tie each reference to its definition.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossgraph as lg
from lossgraph import catalog
from lossgraph.export import OnnxLoss, OnnxLossError
from lossgraph.parity import Row, check_case, check_inputs, compare, reference_eval, torch_eval

NAMES = catalog.names()
CASES = [(n, k) for n in NAMES for k in range(len(catalog.get(n).cases))]
GRID = [(n, k) for n in NAMES for k in range(len(catalog.get(n).grid))]
EDGES = [
    (n, k, e)
    for n in NAMES
    if catalog.get(n).edges
    for k, case in enumerate(catalog.get(n).cases)
    for e in catalog.get(n).edges(catalog.get(n).resolve(case.params))
]


def _fail_report(rows: list[Row]) -> str:
    return "\n".join(f"{r.name} {r.params} {r.dims}: {'; '.join(r.failures)}" for r in rows if not r.ok)


@pytest.mark.parametrize("name,case", CASES)
def test_parity_three_ways(name, case, graphs):
    """Export once at the case's dims; run at other shapes; torch, ONNX and reference agree (value, grad)."""
    spec = catalog.get(name)
    rows = check_case(spec, spec.cases[case], graphs)
    assert rows and all(r.ok for r in rows), _fail_report(rows)
    # the comparisons really ran (a metric has no gradient graph)
    ran = {"torch~ref", "onnx~torch"} | ({"grad-graph value~ref"} if spec.grad_inputs(spec.resolve(spec.cases[case].params)) else set())
    assert all(ran <= set(r.errors) for r in rows)


@pytest.mark.parametrize("name,k", GRID)
def test_option_grid_torch_vs_reference(name, k):
    """Every option combination of the grid: torch eager equals the reference, value and gradient."""
    spec = catalog.get(name)
    params = spec.resolve(spec.grid[k])
    rows = []
    for seed, dims in enumerate(spec.cases[0].run_dims[:2]):
        inputs = spec.example_inputs(dims, seed=seed + 10, params=params)
        rows.append(check_inputs(spec, params, inputs, row=Row(name, params, dict(dims), None)))
    assert all(r.ok for r in rows), _fail_report(rows)


@pytest.mark.parametrize("name,case,edge", EDGES)
def test_edge_inputs_three_ways(name, case, edge, graphs):
    """Documented edge inputs (empty masks, all ignored, ...): finite and equal in all three."""
    spec = catalog.get(name)
    case = spec.cases[case]
    params = spec.resolve(case.params)
    inputs = spec.edges(params)[edge]
    value = OnnxLoss(graphs.get(spec, params, case.export_dims, False), providers="cpu")
    grad = OnnxLoss(graphs.get(spec, params, case.export_dims, True), providers="cpu")
    row = check_inputs(spec, params, inputs, row=Row(name, params, {}, None), value_graph=value, grad_graph=grad)
    assert row.ok, _fail_report([row])
    outs, grads = torch_eval(spec, spec.build(**params), inputs, params)
    assert all(np.isfinite(v).all() for v in [*outs.values(), *grads.values()])


def _scaled_logits(spec, inputs, params, scale):
    out = dict(inputs)
    for i in spec.input_specs(params):
        if i.domain == "logits":
            x = out[i.name]
            out[i.name] = (np.where(x >= 0, 1.0, -1.0) * scale * (0.5 + np.abs(x) / (1 + np.abs(x)))).astype(x.dtype)
    return out


@pytest.mark.parametrize("name", [n for n in NAMES if any(i.domain == "logits" for i in catalog.get(n).input_specs())])
def test_extreme_logits(name, graphs):
    """Logits of magnitude ~1e4: finite everywhere, torch/ONNX/reference agree (value and gradient)."""
    spec = catalog.get(name)
    case = spec.cases[0]
    params = spec.resolve(case.params)
    inputs = _scaled_logits(spec, spec.example_inputs(case.run_dims[0], seed=3, params=params), params, 1e4)
    value = OnnxLoss(graphs.get(spec, params, case.export_dims, False), providers="cpu")
    grad = OnnxLoss(graphs.get(spec, params, case.export_dims, True), providers="cpu")
    row = check_inputs(spec, params, inputs, row=Row(name, params, {}, None), value_graph=value, grad_graph=grad)
    assert row.ok, _fail_report([row])
    onnx_out = grad.run(**inputs)
    assert all(np.isfinite(v).all() for v in onnx_out.values())


@pytest.mark.parametrize("name", NAMES)
def test_fp16_inputs(name, graphs):
    """fp16 predictions: torch accumulates in fp32 and matches the reference on the rounded inputs
    (rtol 1e-3); the ONNX runner takes fp16 arrays (lossless upcast) and agrees too."""
    spec = catalog.get(name)
    case = spec.cases[0]
    params = spec.resolve(case.params)
    inputs = spec.example_inputs(case.run_dims[0], seed=4, params=params)
    half = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in inputs.items()}
    ref_out, _ = reference_eval(spec, half, params, grad=False)
    ts = [torch.from_numpy(v) for v in half.values()]
    out = spec.build(**params)(*ts)
    outs = {k: v.detach().double().numpy() for k, v in (out.items() if isinstance(out, dict) else [("loss", out)])}
    assert all(np.isfinite(v).all() for v in outs.values())
    err, ok = compare(outs if len(outs) > 1 else next(iter(outs.values())),
                      ref_out if len(ref_out) > 1 else next(iter(ref_out.values())), 1e-3, 1e-5)
    assert ok, f"fp16 torch vs reference: max abs error {err}"
    onnx_out = OnnxLoss(graphs.get(spec, params, case.export_dims, False), providers="cpu").run(**half)
    err, ok = compare({k: onnx_out[k] for k in ref_out}, ref_out, 1e-3, 1e-5)
    assert ok, f"fp16 ONNX vs reference: max abs error {err}"


# --- bad input -------------------------------------------------------------------------------------


def _bad_variants(spec, params):
    """(description, inputs, exception, words in the message) for every input of the spec."""
    case = spec.cases[0]
    good = spec.example_inputs(case.run_dims[0], seed=5, params=params)
    for i in spec.input_specs(params):
        x = good[i.name]
        yield f"{i.name} extra dim", {**good, i.name: x[None]}, ValueError, [i.name]
        if x.ndim > 0:
            yield f"{i.name} dropped dim", {**good, i.name: x[0]}, ValueError, [i.name]
        if x.dtype.kind == "f":
            yield f"{i.name} as int", {**good, i.name: x.astype(np.int64)}, TypeError, [i.name]
        elif x.dtype.kind == "i" and not i.floats:  # binary labels take whole-valued floats too
            yield f"{i.name} as float", {**good, i.name: x.astype(np.float32)}, TypeError, [i.name]
        elif x.dtype.kind == "i":
            half = x.astype(np.float32)
            half.flat[0] = 0.5
            yield f"{i.name} as fraction", {**good, i.name: half}, ValueError, [i.name, "whole class ids"]
        if i.domain == "labels":
            bad = x.copy()
            bad.flat[0] = 10**6
            yield f"{i.name} out of range", {**good, i.name: bad}, ValueError, [i.name, "must be in"]


BAD = [(n, d) for n in NAMES for (d, *_) in _bad_variants(catalog.get(n), catalog.get(n).resolve())]


@pytest.mark.parametrize("name,variant", BAD)
def test_bad_input_torch_and_reference(name, variant):
    """Wrong rank, mismatched shapes, wrong dtype, labels out of range: a clear error in torch and reference."""
    spec = catalog.get(name)
    params = spec.resolve()
    (_, inputs, exc, words), = [v for v in _bad_variants(spec, params) if v[0] == variant]
    module = spec.build(**params)
    with pytest.raises(exc) as info:
        module(*[torch.from_numpy(np.array(v)) for v in inputs.values()])
    assert all(w in str(info.value) for w in words), str(info.value)
    assert str(info.value).startswith(name), str(info.value)
    f64 = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in inputs.items()}
    with pytest.raises(exc) as info:
        spec.ref(f64, params)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_onnx_runner(name, graphs):
    """The runner checks rank, fixed and shared dims, dtype kind and input names before running."""
    spec = catalog.get(name)
    case = spec.cases[0]
    params = spec.resolve(case.params)
    run = OnnxLoss(graphs.get(spec, params, case.export_dims, False), providers="cpu")
    good = spec.example_inputs(case.run_dims[0], seed=6, params=params)
    first, *rest = spec.input_specs(params)
    with pytest.raises(OnnxLossError, match=first.name):
        run(**{**good, first.name: good[first.name][None]})
    with pytest.raises(OnnxLossError, match="missing input"):
        run(*list(good.values())[:-1])
    with pytest.raises(OnnxLossError, match="unknown input"):
        run(**good, nonsense=good[first.name])
    for i in rest:  # a shared symbolic dim that does not match names both inputs
        shared = [k for k, s in enumerate(i.shape) if isinstance(s, str) and s in first.shape]
        if shared:
            x = good[i.name]
            bad = np.concatenate([x, x], axis=shared[0])
            with pytest.raises(OnnxLossError, match=f"{i.name}.*matching {first.name}"):
                run(**{**good, i.name: bad})
    if first.dtype.startswith("float"):
        with pytest.raises(TypeError, match=first.name):
            run(**{**good, first.name: good[first.name].astype(np.int64)})


@pytest.mark.parametrize("name", NAMES)
def test_graph_metadata_and_dynamic_dims(name, graphs):
    """Graph inputs carry the spec's names and symbolic dims; metadata names the loss and params."""
    import json

    import onnx

    spec = catalog.get(name)
    case = spec.cases[0]
    params = spec.resolve(case.params)
    model = onnx.load(graphs.get(spec, params, case.export_dims, False))
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["lossgraph.loss"] == name
    assert json.loads(meta["lossgraph.params"]) == json.loads(json.dumps(params))
    assert meta["lossgraph.version"] == lg.__version__
    ins = spec.input_specs(params)
    assert [i.name for i in model.graph.input] == [i.name for i in ins]
    for vi, i in zip(model.graph.input, ins):
        dims = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
        assert dims == list(i.shape), (vi.name, dims, i.shape)
    assert [o.name for o in model.graph.output] == list(spec.output_names(params))
    grad_model = onnx.load(graphs.get(spec, params, case.export_dims, True))
    grads = [f"grad_{i.name}" for i in ins if i.grad]
    assert [o.name for o in grad_model.graph.output] == [*spec.output_names(params), *grads]
