"""FCOS loss: equal to the notebook's loops (value and gradient), a hand-computed location, empty
images, the derived location count N in graphs and the runner, and bad input."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch

import lossgraph as lg
from lossgraph import catalog
from lossgraph import reference as ref
from lossgraph.catalog.fcos import level_dims
from lossgraph.export import OnnxLoss, OnnxLossError
from lossgraph.baselines.fcos import fcos_loss

SPEC = catalog.get("fcos")
KEYS = ("cls", "cnt", "reg", "total")


def _inputs(levels, sizes, b=3, c=4, seed=0, empty_images=(1,)):
    params = SPEC.resolve({"levels": levels})
    inputs = SPEC.example_inputs(level_dims(b, c, sizes), seed=seed, params=params)
    for i in empty_images:  # images with no positives at all
        inputs["cnt_targets"][i] = -1.0
        inputs["cls_targets"][i] = 0
    return inputs


def _split(ts, levels):
    return ts[:levels], ts[levels:2 * levels], ts[2 * levels:3 * levels], *ts[3 * levels:]


@pytest.mark.parametrize("levels,sizes", [(5, [(12, 9), (6, 5), (3, 3), (2, 2), (1, 1)]), (1, [(7, 5)]), (3, [(4, 4), (2, 2), (1, 1)])])
@pytest.mark.parametrize("reg_loss", ["giou", "iou"])
@pytest.mark.parametrize("add_centerness", [True, False])
def test_equals_notebook_loops_value_and_gradient(levels, sizes, reg_loss, add_centerness):
    inputs = _inputs(levels, sizes, seed=levels)
    ts = [torch.tensor(v, dtype=torch.float64 if v.dtype.kind == "f" else torch.int64) for v in inputs.values()]
    preds = [t.requires_grad_(True) for t in ts[: 3 * levels]]
    ours = lg.functional.fcos(*_split(ts, levels), reg_loss=reg_loss, add_centerness=add_centerness)
    src = fcos_loss(*_split(ts, levels), reg_loss=reg_loss, add_centerness=add_centerness)
    for k in KEYS:
        assert ours[k].item() == pytest.approx(src[k].item(), rel=1e-12, abs=1e-14), k
    g_ours = torch.autograd.grad(ours["total"], preds, allow_unused=True)  # cnt unused without add_centerness
    g_src = torch.autograd.grad(src["total"], preds)
    for p, x, y in zip(preds, g_ours, g_src):
        x = torch.zeros_like(p) if x is None else x
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-10, atol=1e-13)


def test_module_equals_functional_and_reference():
    inputs = _inputs(5, [(8, 6), (4, 3), (2, 2), (1, 1), (1, 1)])
    out = SPEC.build()(*[torch.from_numpy(v) for v in inputs.values()])
    want = ref.fcos(*inputs.values())
    for k in KEYS:
        assert out[k].item() == pytest.approx(want[k], rel=1e-5)


def _sig(z):
    return 1 / (1 + math.exp(-z))


def test_hand_computed_single_location():
    # one level of 1x1, C = 2; the location is positive with class 2, centerness 0.5, target box ltrb (1,1,1,1)
    x = np.array([0.5, -1.0])  # class logits; one-hot target (0, 1)
    z, t = 0.3, 0.5
    p, q = np.array([1.0, 1.0, 2.0, 1.0]), np.array([1.0, 1.0, 1.0, 1.0])
    fl = 0.75 * -math.log(1 - _sig(0.5)) * _sig(0.5) ** 2 + 0.25 * -math.log(_sig(-1.0)) * (1 - _sig(-1.0)) ** 2
    bce = -(t * math.log(_sig(z)) + (1 - t) * math.log(1 - _sig(z)))
    iou = 4 / 6  # overlap 2x2, union 3x2 + 2x2 - 4; the enclosing box is the 3x2 prediction: GIoU = IoU
    inputs = [x.reshape(1, 2, 1, 1), np.array(z).reshape(1, 1, 1, 1), p.reshape(1, 4, 1, 1),
              np.array([[[2]]]), np.array([[[t]]]), q.reshape(1, 1, 4)]
    got = ref.fcos(*inputs, levels=1)
    got_iou = lg.functional.fcos(*[[torch.tensor(a)] for a in inputs[:3]], *[torch.tensor(a) for a in inputs[3:]], reg_loss="iou")
    assert got["cls"] == pytest.approx(fl, rel=1e-12)
    assert got["cnt"] == pytest.approx(bce, rel=1e-12)
    assert got["reg"] == pytest.approx(1 - iou, rel=1e-12)
    assert got["total"] == pytest.approx(fl + bce + 1 - iou, rel=1e-12)
    assert got_iou["reg"].item() == pytest.approx(-math.log(iou), rel=1e-12)


def test_no_positives_anywhere():
    inputs = _inputs(2, [(3, 4), (2, 2)], b=2, empty_images=(0, 1))
    value = ref.fcos(*inputs.values(), levels=2)
    assert value["cnt"] == 0.0 and value["reg"] == 0.0
    # cls: the focal sum over negatives of each image (divided by max(0, 1) = 1), averaged over the batch
    x = np.concatenate([inputs[f"cls_{k}"].reshape(2, 4, -1) for k in range(2)], axis=2)
    want = ref.sigmoid_focal(x, np.zeros_like(x), reduction="sum") / 2
    assert value["cls"] == pytest.approx(want, rel=1e-12)
    ts = [torch.from_numpy(v) for v in inputs.values()]
    out = lg.functional.fcos(*_split(ts, 2))
    assert out["total"].item() == pytest.approx(value["total"], rel=1e-5)


def test_negative_locations_never_matter():
    # regression predictions and targets at negatives (even NaN) change neither value nor gradient
    inputs = _inputs(2, [(5, 4), (2, 3)], seed=3)
    neg = (inputs["cnt_targets"][..., 0] <= -1)
    poisoned = {k: v.copy() for k, v in inputs.items()}
    poisoned["reg_targets"][neg] = np.nan
    outs = []
    for inp in (inputs, poisoned):
        ts = [torch.from_numpy(v) for v in inp.values()]
        preds = [t.requires_grad_(True) for t in ts[:6]]
        out = lg.functional.fcos(*_split(ts, 2))
        outs.append((out["total"].item(), torch.autograd.grad(out["total"], preds)))
    assert outs[0][0] == outs[1][0]
    for a, b in zip(outs[0][1], outs[1][1]):
        assert torch.isfinite(b).all()
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_extreme_logits_finite_where_notebook_is_not():
    inputs = _inputs(1, [(4, 3)], seed=4)
    inputs["cls_0"] = np.sign(inputs["cls_0"]) * 1e4
    ts = [torch.from_numpy(v) for v in inputs.values()]
    ours = lg.functional.fcos(*_split(ts, 1))
    src = fcos_loss(*_split(ts, 1))
    assert math.isfinite(ours["cls"].item()) and not math.isfinite(src["cls"].item())
    assert ours["cls"].item() == pytest.approx(ref.fcos(*inputs.values(), levels=1)["cls"], rel=1e-5)


# --- graphs: derived N, no boolean indexing -------------------------------------------------------


@pytest.mark.parametrize("name", ["fcos"])
def test_graph_derives_n_and_runner_checks_it(name, graphs):
    spec = catalog.get(name)
    case = spec.cases[0]
    params = spec.resolve(case.params)
    path = graphs.get(spec, params, case.export_dims, False)
    model = onnx.load(path)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["lossgraph.derived_dims"] == '{"N": "H0*W0 + H1*W1 + H2*W2 + H3*W3 + H4*W4"}'
    ops = {n.op_type for n in model.graph.node} | {n.op_type for f in model.functions for n in f.node}
    assert "NonZero" not in ops  # positives by masking, not boolean indexing
    run = OnnxLoss(path, providers="cpu")
    good = spec.example_inputs(case.run_dims[0], seed=2, params=params)
    bad = {**good, **{k: good[k][:, 1:] for k in ("cls_targets", "cnt_targets", "reg_targets")}}
    with pytest.raises(OnnxLossError, match=r"N = 256; the other inputs give N = H0\*W0 \+ .* = 257"):
        run(**bad)


# --- bad input -------------------------------------------------------------------------------------


def test_bad_input_messages():
    inputs = _inputs(2, [(3, 4), (2, 2)], b=2)
    ts = [torch.from_numpy(v) for v in inputs.values()]
    cls, cnt, reg, y, t, q = _split(ts, 2)
    with pytest.raises(ValueError, match=r"fcos: cls_targets must have shape \(B, N, 1\) with N = H0\*W0 \+ H1\*W1 = 16"):
        lg.functional.fcos(cls, cnt, reg, y[:, 1:], t[:, 1:], q[:, 1:])
    with pytest.raises(ValueError, match="same number"):
        lg.functional.fcos(cls, cnt[:1], reg, y, t, q)
    with pytest.raises(ValueError, match=r"fcos: reg_1 must have shape \(B, 4, H1, W1\)"):
        lg.functional.fcos(cls, cnt, [reg[0], reg[1][:, :3]], y, t, q)
    with pytest.raises(ValueError, match=r"cls_targets must be in \[0, 5\)"):
        lg.functional.fcos(cls, cnt, reg, y + 5, t, q)
    with pytest.raises(ValueError, match="takes 9 inputs for 2 levels"):
        lg.FCOS(levels=2)(*ts[:-1])
    with pytest.raises(ValueError, match="reg_loss must be one of"):
        lg.FCOS(reg_loss="diou")
    with pytest.raises(ValueError, match=r"N = H0\*W0 \+ H1\*W1 = 16"):
        ref.fcos(*[v for v in inputs.values()][:6], inputs["cls_targets"][:, 1:], inputs["cnt_targets"][:, 1:],
                 inputs["reg_targets"][:, 1:], levels=2)
