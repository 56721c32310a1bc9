"""Dice family: hand-computed values, the source's and smp's published formulas written out here,
empty and all-ignored inputs, fp16 sums that would overflow in fp16.

segmentation_models_pytorch needs torchvision, which cannot be imported beside the pinned CPU torch,
so ``_smp_dice`` is smp's ``DiceLoss(mode="multiclass")`` as published in
``segmentation_models_pytorch/losses/dice.py`` (qubvel-org/segmentation_models.pytorch, read at
commit 0d8c7a6) written out: a formula test, not an smp test. kornia's and MONAI's Dice losses are
called for real in ``test_anchors_kornia.py`` / ``test_anchors_monai.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossgraph as lg
from lossgraph import reference as ref

F = lg.functional


def _inputs(shape, rng, ignore=None, frac=0.2):
    b, c, h, w = shape
    x = rng.standard_normal(shape) * 2
    y = rng.integers(0, c, size=(b, h, w))
    if ignore is not None:
        y[rng.random(y.shape) < frac] = ignore
    return x, y


def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _source_dice(x, y, smooth=1.0):
    """The source's DiceLoss (bug fixed: target_flat is the one-hot target): everything flattened."""
    out = torch.softmax(x, 1)
    target = torch.zeros_like(out).scatter_(1, y.unsqueeze(1), 1.0)
    o, t = out.reshape(-1), target.reshape(-1)
    return 1 - (2.0 * (o * t).sum() + smooth) / (o.sum() + t.sum() + smooth)


def _smp_dice(x, y, smooth=0.0, eps=1e-7, ignore_index=None):
    """smp's published ``DiceLoss(mode='multiclass')`` formula (not smp itself)."""
    bs, c = x.shape[:2]
    y_pred = x.log_softmax(1).exp().view(bs, c, -1)
    y_true = y.view(bs, -1)
    if ignore_index is not None:
        mask = y_true != ignore_index
        y_pred = y_pred * mask.unsqueeze(1)
        y_true = torch.nn.functional.one_hot((y_true * mask).long(), c).permute(0, 2, 1) * mask.unsqueeze(1)
    else:
        y_true = torch.nn.functional.one_hot(y_true, c).permute(0, 2, 1)
    y_true = y_true.type_as(y_pred)
    dims = (0, 2)
    inter = (y_pred * y_true).sum(dims)
    card = (y_pred + y_true).sum(dims)
    score = (2.0 * inter + smooth) / (card + smooth).clamp_min(eps)
    loss = (1.0 - score) * (y_true.sum(dims) > 0).to(score.dtype)
    return loss.mean()


def test_hand_computed_dice():
    # two pixels, two classes; softmax of (0, ln 3) -> (1/4, 3/4); labels 1 and 0
    x = torch.tensor([[[[0.0, 0.0]], [[np.log(3.0), 0.0]]]], dtype=torch.float64)
    y = torch.tensor([[[1, 0]]])
    # pooled: Σp·t = 3/4 + 1/2, Σp = 2, Σt = 2 -> 1 - (2·1.25 + 1) / (4 + 1) = 0.3
    assert F.dice(x, y).item() == pytest.approx(0.3, rel=1e-12)
    assert ref.dice(x.numpy(), y.numpy()) == pytest.approx(0.3, rel=1e-12)
    # per class, smooth 0: class 0: 2·0.5 / (0.75 + 1) ; class 1: 2·0.75 / (1.25 + 1)
    want = 1 - (1 / 1.75 + 1.5 / 2.25) / 2
    assert F.dice(x, y, smooth=0.0, per_class=True).item() == pytest.approx(want, rel=1e-12)
    # squared: Σp² = 1/16 + 9/16 + 1/2 = 1.125, Σt² = 2
    assert F.dice(x, y, squared=True).item() == pytest.approx(1 - 3.5 / 4.125, rel=1e-12)
    assert ref.dice(x.numpy(), y.numpy(), squared=True) == pytest.approx(1 - 3.5 / 4.125, rel=1e-12)


@pytest.mark.parametrize("smooth", [1.0, 0.0, 0.3])
def test_dice_equals_source_formula(smooth, rng):
    x, y = _inputs((2, 5, 7, 9), rng)
    xt = torch.tensor(x)
    want = _source_dice(xt, torch.tensor(y), smooth).item()
    assert F.dice(xt, torch.tensor(y), smooth=smooth).item() == pytest.approx(want, rel=1e-12)
    assert ref.dice(x, y, smooth=smooth) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("ignore", [None, 255])
def test_dice_per_class_smooth0_equals_smp_defaults(ignore, rng):
    x, y = _inputs((3, 4, 6, 5), rng, ignore=ignore)
    y[:, 0, 0] = 1
    y[y == 3] = 2  # class 3 absent: smp counts it as 0 loss in the mean over C
    xt = torch.tensor(x, requires_grad=True)
    want = _smp_dice(xt, torch.tensor(y), ignore_index=ignore)
    (g_want,) = torch.autograd.grad(want, xt)
    got = F.dice(xt, torch.tensor(y), smooth=0.0, per_class=True, ignore_index=ignore)
    (g_got,) = torch.autograd.grad(got, xt)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(g_got.numpy(), g_want.numpy(), rtol=1e-9, atol=1e-14)
    value, g_ref = ref.dice(x, y, smooth=0.0, per_class=True, ignore_index=ignore, grad=True)
    assert value == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(g_ref, g_want.numpy(), rtol=1e-9, atol=1e-14)


def test_dice_ignored_pixels_do_not_count(rng):
    x, y = _inputs((2, 3, 5, 6), rng, ignore=255)
    valid = y != 255
    # changing logits or labels at ignored pixels changes nothing
    x2 = x.copy()
    x2[np.broadcast_to(~valid[:, None], x.shape)] = 50.0
    a = F.dice(torch.tensor(x), torch.tensor(y), ignore_index=255).item()
    b = F.dice(torch.tensor(x2), torch.tensor(y), ignore_index=255).item()
    assert a == pytest.approx(b, rel=1e-12)
    # and the loss equals the source formula over the valid pixels only (here: one image row of them)
    keep = torch.tensor(x).permute(0, 2, 3, 1)[torch.tensor(valid)]  # (n, C)
    want = _source_dice(keep.T[None, :, :, None], torch.tensor(y[valid])[None, :, None]).item()
    assert a == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("params", [{}, {"smooth": 0.0}, {"smooth": 0.0, "per_class": True, "squared": True}])
def test_dice_all_ignored_is_zero_with_zero_gradient(params, rng):
    x, y = _inputs((2, 3, 4, 5), rng)
    y[:] = 255
    xt = torch.tensor(x, requires_grad=True)
    v = F.dice(xt, torch.tensor(y), ignore_index=255, **params)
    (g,) = torch.autograd.grad(v, xt)
    assert v.item() == 0.0 and torch.count_nonzero(g) == 0
    rv, rg = ref.dice(x, y, ignore_index=255, grad=True, **params)
    assert rv == 0.0 and not rg.any()


def test_dice_reference_gradient_matches_finite_differences():
    x, y = _inputs((1, 3, 2, 3), np.random.default_rng(5), ignore=255)
    for params in ({}, {"squared": True, "per_class": True, "smooth": 0.5}):
        _, g = ref.dice(x, y, ignore_index=255, grad=True, **params)
        fd = np.zeros_like(x)
        h = 1e-6
        for i in np.ndindex(x.shape):
            e = np.zeros_like(x)
            e[i] = h
            fd[i] = (ref.dice(x + e, y, ignore_index=255, **params) - ref.dice(x - e, y, ignore_index=255, **params)) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_fp16_512x512_sums_accumulate_in_fp32():
    """Σ over 2x2x512x512 fp16 elements is 1048576 > 65504 (fp16 max): the loss must not overflow."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 2, 512, 512)) * 2).astype(np.float16)
    y = rng.integers(0, 2, size=(2, 512, 512))
    y[:, :8] = 255
    got = F.dice(torch.from_numpy(x), torch.from_numpy(y), ignore_index=255)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    want = ref.dice(x.astype(np.float64), y, ignore_index=255)
    assert got.item() == pytest.approx(want, rel=1e-4)
    assert 0.2 < want < 0.8  # a real value, not 0 or 1 from a saturated sum
    ce = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(y))
    assert ce.dtype == torch.float32 and ce.item() == pytest.approx(ref.cross_entropy(x.astype(np.float64), y), rel=1e-4)
    soft = F.soft_dice(torch.from_numpy(x[:, :1]), torch.from_numpy((y[:, None] == 1).astype(np.float16)), from_logits=True)
    want = ref.soft_dice(x[:, :1].astype(np.float64), (y[:, None] == 1).astype(np.float64), from_logits=True)
    assert torch.isfinite(soft) and soft.item() == pytest.approx(want, rel=1e-4)


# --- soft_dice ---------------------------------------------------------------------------------


def _source_soft_dice(p, t, smooth):
    inter = (p * t).sum()
    return 1 - 2 * (inter + smooth) / ((p * p).sum() + (t * t).sum() + smooth)


@pytest.mark.parametrize("smooth,from_logits", [(1.0, False), (0.0, True), (2.5, True)])
def test_soft_dice_equals_source_formula(smooth, from_logits):
    rng = np.random.default_rng(11)
    z = rng.standard_normal((2, 1, 6, 7)) * 2
    t = (rng.random(z.shape) < 0.4).astype(np.float64)
    p = 1 / (1 + np.exp(-z))
    want = _source_soft_dice(p, t, smooth)
    got = F.soft_dice(torch.tensor(z if from_logits else p), torch.tensor(t), smooth=smooth, from_logits=from_logits)
    assert got.item() == pytest.approx(want, rel=1e-12)
    assert ref.soft_dice(z if from_logits else p, t, smooth=smooth, from_logits=from_logits) == pytest.approx(want, rel=1e-12)


def test_soft_dice_documented_empty_values():
    zeros = np.zeros((1, 1, 3, 3))
    # the source's formula: empty target, zero prediction -> 1 - 2·s/s = -1
    assert F.soft_dice(torch.tensor(zeros), torch.tensor(zeros)).item() == -1.0
    assert ref.soft_dice(zeros, zeros) == -1.0
    # smooth 0: 0/0 taken as a zero Dice term -> 1, with a zero gradient (no NaN)
    p = torch.tensor(zeros, requires_grad=True)
    v = F.soft_dice(p, torch.tensor(zeros), smooth=0.0)
    (g,) = torch.autograd.grad(v, p)
    assert v.item() == 1.0 and torch.count_nonzero(g) == 0
    assert ref.soft_dice(zeros, zeros, smooth=0.0, grad=True)[0] == 1.0
    # a perfect prediction: 1 - 2(n + 1)/(2n + 1)
    ones = np.ones((1, 1, 3, 3))
    assert F.soft_dice(torch.tensor(ones), torch.tensor(ones)).item() == pytest.approx(1 - 20 / 19, rel=1e-12)


def test_soft_dice_reference_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((2, 1, 2, 3))
    t = rng.random(z.shape)
    _, g = ref.soft_dice(z, t, from_logits=True, grad=True)
    h = 1e-6
    fd = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[i] = h
        fd[i] = (ref.soft_dice(z + e, t, from_logits=True) - ref.soft_dice(z - e, t, from_logits=True)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-10)


def test_soft_dice_bad_shapes():
    with pytest.raises(ValueError, match="soft_dice: targets must have the same shape as probas"):
        F.soft_dice(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 3, 4))
    with pytest.raises(ValueError, match="soft_dice: targets must have the same shape as probas"):
        ref.soft_dice(np.zeros((2, 1, 3, 3)), np.zeros((2, 1, 3, 4)))
