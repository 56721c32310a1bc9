"""Cross-entropy family: equal to torch's losses where those are finite, 0 (not NaN) when all pixels
are ignored, hand-computed values, CE + Dice as the sum of its terms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import lossgraph as lg
from lossgraph import reference as ref
from lossgraph.export import OnnxLoss, to_onnx

F = lg.functional


def _inputs(shape, ignore=255, frac=0.2, seed=0):
    rng = np.random.default_rng(seed)
    b, c, h, w = shape
    x = rng.standard_normal(shape) * 2
    y = rng.integers(0, c, size=(b, h, w))
    if ignore is not None:
        y[rng.random(y.shape) < frac] = ignore
    return x, y


@pytest.mark.parametrize("weight", [None, [0.5, 2.0, 1.0, 3.0]])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore", [255, None])
def test_cross_entropy_equals_torch(weight, reduction, ignore):
    x, y = _inputs((2, 4, 5, 7), ignore=ignore)
    xt = torch.tensor(x, requires_grad=True)
    w = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    want = TF.cross_entropy(xt, torch.tensor(y), weight=w, ignore_index=-100 if ignore is None else ignore, reduction=reduction)
    (g_want,) = torch.autograd.grad(want.sum(), xt)
    got = F.cross_entropy(xt, torch.tensor(y), ignore_index=ignore, weight=weight, reduction=reduction)
    (g_got,) = torch.autograd.grad(got.sum(), xt)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g_got.numpy(), g_want.numpy(), rtol=1e-10, atol=1e-15)
    value, g_ref = ref.cross_entropy(x, y, ignore_index=ignore, weight=weight, reduction=reduction, grad=True)
    np.testing.assert_allclose(value, want.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g_ref, g_want.numpy(), rtol=1e-10, atol=1e-15)


def test_cross_entropy_hand_computed():
    # logits (0, 0, ln 2): softmax (1/4, 1/4, 1/2); labels 2 and 0, weights (1, 1, 3)
    x = torch.tensor([[[[0.0, 0.0]], [[0.0, 0.0]], [[math.log(2), math.log(2)]]]], dtype=torch.float64)
    y = torch.tensor([[[2, 0]]])
    assert F.cross_entropy(x, y).item() == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-12)
    want = (3 * math.log(2) + math.log(4)) / 4
    assert F.cross_entropy(x, y, weight=[1, 1, 3]).item() == pytest.approx(want, rel=1e-12)
    assert ref.cross_entropy(x.numpy(), y.numpy(), weight=[1, 1, 3]) == pytest.approx(want, rel=1e-12)


def test_all_ignored_gives_zero_where_torch_gives_nan(tmp_path):
    x, y = _inputs((2, 3, 4, 5))
    y[:] = 255
    assert math.isnan(TF.cross_entropy(torch.tensor(x), torch.tensor(y), ignore_index=255).item())
    xt = torch.tensor(x, requires_grad=True)
    for fn in (F.cross_entropy, F.ce_dice, F.focal):
        kw = {"ignore_index": 255}
        v = fn(xt, torch.tensor(y), **kw)
        (g,) = torch.autograd.grad(v, xt)
        assert v.item() == 0.0 and torch.count_nonzero(g) == 0, fn.__name__
        rv, rg = getattr(ref, fn.__name__)(x, y, grad=True, **kw)
        assert rv == 0.0 and not rg.any()
    # and in the exported graph, at another shape than the export one
    path = tmp_path / "ce.onnx"
    model = to_onnx(lg.CrossEntropy(), [x.astype(np.float32), y], path)
    ops = {n.op_type for n in model.graph.node}
    # no CPU-only node under CUDA; no LogSoftmax on axis 1 (8x slower in onnxruntime than the reductions)
    assert "GatherElements" in ops and not ops & {"SoftmaxCrossEntropyLoss", "LogSoftmax"}
    x2, y2 = _inputs((3, 5, 2, 9), seed=3)
    y2[:] = 255
    assert OnnxLoss(path, providers="cpu")(x2.astype(np.float32), y2) == 0.0


def test_cross_entropy_bad_weight_length():
    x, y = _inputs((1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"cross_entropy: weight must have one value per class \(C = 3\); got 2"):
        F.cross_entropy(torch.tensor(x), torch.tensor(y), weight=[1, 2])
    with pytest.raises(ValueError, match=r"cross_entropy: weight must have one value per class \(C = 3\); got 2"):
        ref.cross_entropy(x, y, weight=[1, 2])
    with pytest.raises(TypeError, match="cross_entropy: weight must be a list of per-class numbers >= 0 or null; got 2"):
        F.cross_entropy(torch.tensor(x), torch.tensor(y), weight=2.0)
    with pytest.raises(TypeError, match="cross_entropy: weight must be a list of per-class numbers >= 0 or null; got 2"):
        ref.cross_entropy(x, y, weight=2.0)
    with pytest.raises(ValueError, match="cross_entropy: reduction must be one of"):
        F.cross_entropy(torch.tensor(x), torch.tensor(y), reduction="avg")


@pytest.mark.parametrize("ignore", [None, 255])
def test_binary_xloss_equals_torch_bce_on_valid_pixels(ignore):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6, 5)) * 3
    y = rng.integers(0, 2, size=x.shape)
    if ignore is not None:
        y[rng.random(y.shape) < 0.3] = ignore
    valid = y != ignore if ignore is not None else np.ones(y.shape, bool)
    xt = torch.tensor(x, requires_grad=True)
    want = TF.binary_cross_entropy_with_logits(xt[torch.tensor(valid)], torch.tensor(y[valid], dtype=torch.float64))
    (g_want,) = torch.autograd.grad(want, xt)
    got = F.binary_xloss(xt, torch.tensor(y), ignore_index=ignore)
    (g_got,) = torch.autograd.grad(got, xt)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(g_got.numpy(), g_want.numpy(), rtol=1e-10, atol=1e-16)
    value, g_ref = ref.binary_xloss(x, y, ignore_index=ignore, grad=True)
    assert value == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(g_ref, g_want.numpy(), rtol=1e-10, atol=1e-16)


def test_binary_xloss_extreme_logits_and_all_ignored():
    x = torch.tensor([[[1e4, -1e4, 1e4, -1e4]]], requires_grad=True)
    y = torch.tensor([[[1, 0, 0, 255]]])
    v = F.binary_xloss(x, y, ignore_index=255)
    (g,) = torch.autograd.grad(v, x)
    assert v.item() == pytest.approx(1e4 / 3, rel=1e-6)  # only the wrong pixel costs: |x| / 3 valid
    np.testing.assert_allclose(g.numpy(), [[[0.0, 0.0, 1 / 3, 0.0]]], atol=1e-7)
    none = torch.full((1, 1, 4), 255)
    assert F.binary_xloss(x, none, ignore_index=255).item() == 0.0
    assert ref.binary_xloss(x.detach().numpy(), none.numpy(), ignore_index=255) == 0.0


@pytest.mark.parametrize("weight", [None, [1.0, 0.5, 2.0]])
def test_ce_dice_is_the_sum_of_its_terms(weight):
    x, y = _inputs((2, 3, 5, 4), seed=7)
    xt, yt = torch.tensor(x), torch.tensor(y)
    ce = TF.cross_entropy(xt, yt, weight=None if weight is None else torch.tensor(weight, dtype=torch.float64), ignore_index=255)
    want = ce.item() + F.dice(xt, yt, smooth=1.0, ignore_index=255).item()
    assert F.ce_dice(xt, yt, weight=weight).item() == pytest.approx(want, rel=1e-12)
    assert ref.ce_dice(x, y, weight=weight) == pytest.approx(want, rel=1e-12)
