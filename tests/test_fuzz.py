"""Hypothesis fuzzing over the whole catalog: shapes, extreme and degenerate values, fp16, bad inputs,
bad model files.

Every catalog entry is fuzzed with no per-loss code: shapes are drawn inside the range its cases run
at (per dimension, between the smallest and the largest size its run dims use, so 1 pixel, odd and
the largest sizes all come up), values from its input makers and then pushed to the edges its input
domains allow (logits up to ±1e4, every label ignored or one class, empty or full masks), and the
exported graphs come from the session ``graphs`` cache (the parity tests' exports, made once).
Example counts are small and the draws derandomized, so CI time stays bounded and failures
reproduce; ``HYPOTHESIS_PROFILE=deep`` runs more examples with fresh randomness.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lossgraph import catalog
from lossgraph.export import OnnxLoss, OnnxLossError
from lossgraph.parity import Row, check_inputs, compare, reference_eval, torch_eval

settings.register_profile(
    "ci",
    max_examples=3,  # + the explicit examples below: 6 per entry
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("deep", settings.get_profile("ci"), max_examples=60, derandomize=False)
FUZZ = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

NAMES = catalog.names()
MAX_DIMS = 12  # more symbolic dims than any entry has (FCOS levels included)
LOGIT_SCALES = (1.0, 1e4, 30.0, 1e-3)
LABEL_MODES = ("as_made", "all_ignored", "one_class")
MASK_MODES = ("as_made", "empty", "full")


def _f64(inputs):
    return {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in inputs.items()}


def _dims(case, run, sizes):
    """Dims of the drawn shape: run dims ``run`` of the case, each dim optionally moved within the
    sizes the case uses for it (``sizes[k]`` is None: keep; an int picks a size in range)."""
    choices = [dict(case.export_dims), *map(dict, case.run_dims)]
    base = choices[run % len(choices)]
    dims = dict(base)
    for k, name in enumerate(sorted(base)):
        lo = min(c[name] for c in choices if name in c)
        hi = max(c[name] for c in choices if name in c)
        if sizes[k] is not None:
            dims[name] = lo + sizes[k] % (hi - lo + 1)
    return base, dims


def _push_values(spec, params, inputs, logit_scale, labels, masks):
    """Move the inputs to the edges of their domains (the domain decides what is valid)."""
    out = dict(inputs)
    for i in spec.input_specs(params):
        x = out[i.name]
        if i.domain == "logits" and logit_scale != 1.0:
            out[i.name] = (np.where(x >= 0, 1.0, -1.0) * logit_scale * (0.5 + np.abs(x) / (1 + np.abs(x)))).astype(x.dtype)
        elif i.domain == "labels" and labels == "all_ignored" and params.get("ignore_index") is not None:
            out[i.name] = np.full_like(x, params["ignore_index"])
        elif i.domain == "labels" and labels == "one_class":
            out[i.name] = np.zeros_like(x)
        elif i.domain in ("mask", "binary") and masks != "as_made":
            out[i.name] = (np.zeros_like if masks == "empty" else np.ones_like)(x)
    return out


def _valid_inputs(spec, params, case, run, sizes, seed):
    """Inputs at the drawn shape; when the reference rejects that shape, torch must reject it too,
    and the case's own run dims are used instead."""
    base, dims = _dims(case, run, sizes)
    try:
        inputs = spec.example_inputs(dims, seed=seed, params=params)
    except Exception:  # a maker may need related sizes (levels, anchors): not a loss bug
        return spec.example_inputs(base, seed=seed, params=params), base
    try:
        spec.ref(_f64(inputs), params)
        return inputs, dims
    except (ValueError, TypeError) as e:
        import torch

        with pytest.raises((ValueError, TypeError)):
            spec.build(**params)(*[torch.from_numpy(np.array(v)) for v in inputs.values()])
        assert str(e).startswith(spec.name), str(e)
    return spec.example_inputs(base, seed=seed, params=params), base


def _all_finite(what, values):
    bad = [k for k, v in values.items() if not np.isfinite(np.asarray(v, dtype=np.float64)).all()]
    assert not bad, f"{what}: non-finite {', '.join(bad)}"


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(
    case=st.integers(0, 2),
    run=st.integers(0, 7),
    sizes=st.lists(st.none() | st.integers(0, 1000), min_size=MAX_DIMS, max_size=MAX_DIMS),
    logit_scale=st.sampled_from(LOGIT_SCALES),
    labels=st.sampled_from(LABEL_MODES),
    masks=st.sampled_from(MASK_MODES),
    half=st.booleans(),
    seed=st.integers(0, 2**16),
)
# explicit examples, run for every entry: each case (mod the entry's count) at ±1e4 logits on its first
# run dims, with all-ignored labels and empty masks, one class and full masks, and fp16
@example(case=0, run=1, sizes=[None] * MAX_DIMS, logit_scale=1e4, labels="as_made", masks="as_made", half=False, seed=0)
@example(case=1, run=1, sizes=[None] * MAX_DIMS, logit_scale=1e4, labels="all_ignored", masks="empty", half=False, seed=1)
@example(case=2, run=1, sizes=[None] * MAX_DIMS, logit_scale=1e4, labels="one_class", masks="full", half=True, seed=2)
def test_fuzz_three_way_parity(name, graphs, case, run, sizes, logit_scale, labels, masks, half, seed):
    """Drawn shapes and edge values: torch, the ONNX graphs (exported once, at other dims) and the
    reference agree on values and gradients, and nothing is NaN or inf. fp16 inputs: rtol 1e-3."""
    spec = catalog.get(name)
    case = spec.cases[case % len(spec.cases)]
    params = spec.resolve(case.params)
    inputs, dims = _valid_inputs(spec, params, case, run, sizes, seed)
    inputs = _push_values(spec, params, inputs, logit_scale, labels, masks)
    value = OnnxLoss(graphs.get(spec, params, case.export_dims, False), providers="cpu")
    grad = OnnxLoss(graphs.get(spec, params, case.export_dims, True), providers="cpu")
    where = f"{name} {case.params} at {dims}, logits x{logit_scale}, labels {labels}, masks {masks}, fp16 {half}"
    if half:
        inputs = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in inputs.items()}
        r_out, _ = reference_eval(spec, inputs, params, grad=False)
        t_out, t_grad = torch_eval(spec, spec.build(**params), inputs, params)
        o_out = grad.run(**inputs)
        for what, got in (("torch", t_out), ("onnx", {k: o_out[k] for k in r_out})):
            err, ok = compare(got, r_out, 1e-3, 1e-5)
            assert ok, f"{where}: fp16 {what} vs reference: max abs error {err}"
        _all_finite(f"{where}: torch", {**t_out, **t_grad})
        _all_finite(f"{where}: onnx", o_out)
        return
    row = check_inputs(spec, params, inputs, row=Row(name, params, dims, None), value_graph=value, grad_graph=grad)
    assert row.ok, f"{where}: " + "; ".join(row.failures)
    r_out, r_grad = reference_eval(spec, inputs, params)
    t_out, t_grad = torch_eval(spec, spec.build(**params), inputs, params)
    _all_finite(f"{where}: reference", {**r_out, **r_grad})
    _all_finite(f"{where}: torch", {**t_out, **t_grad})
    _all_finite(f"{where}: onnx", grad.run(**inputs))


# --- wrong inputs: every graph rejects them with a clear message ---------------------------------------

MUTATIONS = ("extra dim", "drop dim", "grow dim", "shrink dim")


@pytest.mark.parametrize("name", NAMES)
@settings(FUZZ, max_examples=5)
@given(which=st.integers(0, 20), mutation=st.sampled_from(MUTATIONS), axis=st.integers(0, 20))
def test_fuzz_graph_rejects_wrong_shapes(name, graphs, which, mutation, axis):
    """Wrong rank or a dim that does not match the other inputs: OnnxLossError before running, in one
    line naming the loss, an input, its declared symbolic shape and the shape it got."""
    spec = catalog.get(name)
    case = spec.cases[0]
    params = spec.resolve(case.params)
    run = OnnxLoss(graphs.get(spec, params, case.export_dims, False), providers="cpu")
    good = spec.example_inputs(case.run_dims[0], seed=6, params=params)
    ins = spec.input_specs(params)
    target = ins[which % len(ins)]
    x = good[target.name]
    if mutation == "extra dim":
        bad = x[None]
    elif mutation == "drop dim":
        bad = x[0] if x.ndim else x.reshape(1)
    else:
        ax = axis % x.ndim if x.ndim else None
        shared = ax is not None and (isinstance(target.shape[ax], int) or any(
            target.shape[ax] in i.shape for i in ins if i.name != target.name
        ))
        if not shared or (mutation == "shrink dim" and x.shape[ax] < 2):
            bad = x[None]  # this dim is free to vary (or cannot shrink): wrong rank instead
        elif mutation == "grow dim":
            bad = np.concatenate([x, x], axis=ax)
        else:
            bad = np.take(x, range(x.shape[ax] - 1), axis=ax)
    with pytest.raises(OnnxLossError) as info:
        run(**{**good, target.name: bad})
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{name}: "), msg
    m = re.match(rf"{name}: (\w+) must have shape (\(.*?\))(?: matching (\w+) .*?)?; got (\(.*?\))$", msg)
    assert m, msg
    named = {i.name: i for i in ins}
    assert m.group(1) in named
    feeds = {**good, target.name: bad}
    assert m.group(4) == "(" + ", ".join(map(str, feeds[m.group(1)].shape)) + ("," if feeds[m.group(1)].ndim == 1 else "") + ")"
    assert m.group(2) == "(" + ", ".join(map(str, named[m.group(1)].shape)) + ("," if len(named[m.group(1)].shape) == 1 else "") + ")"


# --- bad model files ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_bytes(graphs):
    spec = catalog.get(NAMES[0])
    case = spec.cases[0]
    with open(graphs.get(spec, spec.resolve(case.params), case.export_dims, True), "rb") as f:
        return f.read()


def _assert_clear_load_error(path):
    with pytest.raises(OnnxLossError) as info:
        OnnxLoss(path, providers="cpu")
    msg = str(info.value)
    assert msg.startswith(f"OnnxLoss: {path} is not a loadable ONNX model: ") and "\n" not in msg, msg
    return msg


@pytest.mark.xdist_group(NAMES[0])  # the worker that exports this entry's graphs anyway
@FUZZ
@given(cut=st.floats(0.0, 0.9999))
@example(cut=0.0)
@example(cut=0.5)
def test_truncated_model_gives_a_clear_error(model_bytes, tmp_path_factory, cut):
    """A graph file cut anywhere (including just before its metadata, where it still parses)."""
    path = tmp_path_factory.mktemp("cut") / "cut.onnx"
    path.write_bytes(model_bytes[: int(cut * len(model_bytes))])
    msg = _assert_clear_load_error(path)
    assert "empty" in msg or "truncated" in msg, msg


@pytest.mark.xdist_group(NAMES[0])
def test_model_cut_at_its_metadata_gives_a_clear_error(model_bytes, tmp_path):
    import onnx

    model = onnx.ModelProto.FromString(model_bytes)
    assert model.producer_name == "lossgraph"
    assert model.metadata_props[-1].key == "lossgraph.end"
    for keep in range(len(model.metadata_props)):  # every field boundary inside the metadata
        head = onnx.ModelProto()
        head.CopyFrom(model)
        del head.metadata_props[keep:]
        data = head.SerializeToString()
        assert model_bytes.startswith(data)
        path = tmp_path / f"cut{keep}.onnx"
        path.write_bytes(data)
        assert "the file is truncated (a lossgraph graph without the end of its metadata)" in _assert_clear_load_error(path)


@pytest.mark.parametrize(
    "kind,words",
    [
        ("npz", "zip archive"),
        ("npy", ".npy array"),
        ("pickle", "Python pickle"),
        ("text", "not an ONNX model"),
        ("random", "not an ONNX model"),
        ("empty", "the file is empty"),
    ],
)
def test_foreign_files_give_a_clear_error(tmp_path, kind, words):
    import pickle

    path = tmp_path / "model.onnx"
    if kind == "npz":
        np.savez(path.with_suffix(".npz"), a=np.arange(3))
        path.write_bytes(path.with_suffix(".npz").read_bytes())
    elif kind == "npy":
        np.save(path.with_suffix(".npy"), np.arange(3))
        path.write_bytes(path.with_suffix(".npy").read_bytes())
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": [1, 2, 3]}))
    elif kind == "text":
        path.write_text("graph {\n  node: Relu\n}\n")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    else:
        path.write_bytes(b"")
    assert words in _assert_clear_load_error(path)
