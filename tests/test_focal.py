"""Sigmoid focal loss: torchvision's published formula, hand-computed values, stability at extreme logits.

torchvision cannot be imported beside the pinned CPU torch (its registry wheel is a CUDA build), so
``_torchvision_formula`` is ``sigmoid_focal_loss`` as published in pytorch/vision
``torchvision/ops/focal_loss.py`` (read at commit 148ddaa), written out: a formula test, not a
torchvision test. kornia's and MONAI's binary focal losses are called for real in
``test_anchors_kornia.py`` / ``test_anchors_monai.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lossgraph as lg
from lossgraph import reference as ref

F = lg.functional


def _sig(z):
    return 1 / (1 + math.exp(-z))


def test_hand_computed_value():
    # t=0 at x=-2: alpha_t = 0.75, BCE = -log(1 - σ(-2)), (1 - p_t) = σ(-2); t=1 at x=3: 0.25, -log σ(3), 1 - σ(3)
    want = 0.75 * -math.log(1 - _sig(-2)) * _sig(-2) ** 2 + 0.25 * -math.log(_sig(3)) * (1 - _sig(3)) ** 2
    x, t = np.array([[-2.0, 3.0]]), np.array([[0.0, 1.0]])
    assert F.sigmoid_focal(torch.tensor(x), torch.tensor(t), reduction="sum").item() == pytest.approx(want, rel=1e-12)
    assert ref.sigmoid_focal(x, t, reduction="sum") == pytest.approx(want, rel=1e-12)
    assert ref.sigmoid_focal(x, t, reduction="mean") == pytest.approx(want / 2, rel=1e-12)
    none = ref.sigmoid_focal(x, t, alpha=-1, gamma=0, reduction="none")
    np.testing.assert_allclose(none, [[-math.log(1 - _sig(-2)), -math.log(_sig(3))]], rtol=1e-12)


def _torchvision_formula(x, t, alpha, gamma):
    """torchvision's published ``sigmoid_focal_loss`` formula (not torchvision), reduction='none'."""
    p = torch.sigmoid(x)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 0.0), (0.5, 1.0), (0.9, 3.5)])
def test_equals_torchvision_formula(alpha, gamma):
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.standard_normal((3, 4, 5, 6)) * 3)
    t = torch.tensor((rng.random((3, 4, 5, 6)) < 0.3).astype(np.float64))
    want = _torchvision_formula(x, t, alpha, gamma)
    got = F.sigmoid_focal(x, t, alpha=alpha, gamma=gamma, reduction="none")
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-15)
    assert F.sigmoid_focal(x, t, alpha, gamma, "mean").item() == pytest.approx(want.mean().item(), rel=1e-12)
    assert F.sigmoid_focal(x, t, alpha, gamma, "sum").item() == pytest.approx(want.sum().item(), rel=1e-12)


def test_reference_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3)) * 2
    t = rng.random((2, 3))  # soft targets too
    _, g = ref.sigmoid_focal(x, t, gamma=1.5, grad=True)
    h = 1e-6
    fd = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        fd[i] = (ref.sigmoid_focal(x + e, t, gamma=1.5) - ref.sigmoid_focal(x - e, t, gamma=1.5)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-10)


def test_extreme_logits_are_finite_and_exact():
    x = torch.tensor([[1e4, -1e4, 1e4, -1e4]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    v = F.sigmoid_focal(x, t, reduction="none")
    (g,) = torch.autograd.grad(v.sum(), x)
    # right answers cost 0; wrong ones cost alpha_t * |x| (BCE ~ |x|, (1 - p_t) = 1)
    np.testing.assert_allclose(v.detach().numpy(), [[0.0, 0.0, 0.75e4, 0.25e4]], rtol=1e-6)
    assert torch.isfinite(g).all()
    np.testing.assert_allclose(g.numpy(), [[0.0, 0.0, 0.75, -0.25]], atol=1e-6)
    ref_v, ref_g = ref.sigmoid_focal(x.detach().numpy(), t.numpy(), reduction="none", grad=True)
    np.testing.assert_allclose(ref_v, v.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(ref_g, g.numpy(), atol=1e-6)


def test_fp16_input_computes_in_fp32(rng):
    x = torch.tensor(rng.standard_normal((2, 3, 64, 64))).half()
    t = torch.tensor(rng.random((2, 3, 64, 64)) < 0.5).half()
    out = F.sigmoid_focal(x, t, reduction="sum")
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref.sigmoid_focal(x.float().numpy(), t.float().numpy(), reduction="sum"), rel=1e-5)


def test_bad_reduction():
    with pytest.raises(ValueError, match="sigmoid_focal: reduction must be one of"):
        F.sigmoid_focal(torch.zeros(2), torch.zeros(2), reduction="avg")
    with pytest.raises(ValueError, match="sigmoid_focal: reduction must be one of"):
        ref.sigmoid_focal(np.zeros(2), np.zeros(2), reduction="avg")


# --- multi-class softmax focal ------------------------------------------------------------------


def _seg(shape, ignore=None, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2
    y = rng.integers(0, shape[1], size=(shape[0], *shape[2:]))
    if ignore is not None:
        y[rng.random(y.shape) < 0.2] = ignore
    return x, y


def _clcarwin_focal(x, y, gamma, alpha):
    """The common FocalLoss loop-free code (clcarwin) with a per-class alpha list, size_average=True."""
    logpt = torch.log_softmax(x, 1).permute(0, 2, 3, 1).reshape(-1, x.shape[1]).gather(1, y.reshape(-1, 1)).view(-1)
    pt = logpt.exp()
    if alpha is not None:
        logpt = logpt * torch.tensor(alpha, dtype=x.dtype).gather(0, y.reshape(-1))
    return (-1 * (1 - pt) ** gamma * logpt).mean()


def test_softmax_focal_hand_computed():
    # softmax (1/4, 3/4); labels 0 and 1
    x = torch.tensor([[[[0.0, 0.0]], [[math.log(3), math.log(3)]]]], dtype=torch.float64)
    y = torch.tensor([[[0, 1]]])
    terms = [0.75**2 * math.log(4), 0.25**2 * math.log(4 / 3)]
    assert F.focal(x, y, reduction="sum").item() == pytest.approx(sum(terms), rel=1e-12)
    assert ref.focal(x.numpy(), y.numpy(), reduction="sum") == pytest.approx(sum(terms), rel=1e-12)
    # scalar alpha 0.25: class 0 weighs 0.25, class 1 weighs 0.75
    want = (0.25 * terms[0] + 0.75 * terms[1]) / 2
    assert F.focal(x, y, alpha=0.25).item() == pytest.approx(want, rel=1e-12)
    assert ref.focal(x.numpy(), y.numpy(), alpha=0.25) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("alpha,gamma", [(None, 2.0), ([0.2, 1.0, 3.0, 0.5], 1.5), (None, 0.0)])
def test_softmax_focal_equals_common_code(alpha, gamma):
    x, y = _seg((2, 4, 5, 6), seed=1)
    xt = torch.tensor(x)
    want = _clcarwin_focal(xt, torch.tensor(y), gamma, alpha).item()
    assert F.focal(xt, torch.tensor(y), gamma=gamma, alpha=alpha).item() == pytest.approx(want, rel=1e-12)
    assert ref.focal(x, y, gamma=gamma, alpha=alpha) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_softmax_focal_gamma0_is_cross_entropy(reduction):
    x, y = _seg((2, 5, 4, 3), ignore=255, seed=2)
    want = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(y), ignore_index=255, reduction=reduction)
    got = F.focal(torch.tensor(x), torch.tensor(y), gamma=0.0, ignore_index=255, reduction=reduction)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-15)


def test_softmax_focal_scalar_alpha_means_alpha_then_one_minus_alpha():
    x, y = _seg((2, 4, 3, 5), ignore=255, seed=3)
    a = F.focal(torch.tensor(x), torch.tensor(y), alpha=0.3, ignore_index=255, reduction="none")
    b = F.focal(torch.tensor(x), torch.tensor(y), alpha=[0.3, 0.7, 0.7, 0.7], ignore_index=255, reduction="none")
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
    assert ref.focal(x, y, alpha=0.3, ignore_index=255) == pytest.approx(
        ref.focal(x, y, alpha=[0.3, 0.7, 0.7, 0.7], ignore_index=255), rel=1e-12)


def test_softmax_focal_reference_gradient_matches_finite_differences():
    x, y = _seg((1, 3, 2, 3), ignore=255, seed=4)
    kw = dict(gamma=1.5, alpha=[0.5, 2.0, 1.0], ignore_index=255)
    _, g = ref.focal(x, y, grad=True, **kw)
    h = 1e-6
    fd = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        fd[i] = (ref.focal(x + e, y, **kw) - ref.focal(x - e, y, **kw)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-10)


def test_softmax_focal_extreme_logits():
    # pixel 0 right by a margin of 2e4 (costs 0), pixel 1 wrong by 2e4 (costs 2e4 · alpha_y = 2e4 · 0.75)
    x = torch.tensor([[[[1e4, -1e4]], [[-1e4, 1e4]]]], requires_grad=True)
    y = torch.tensor([[[0, 0]]])
    v = F.focal(x, y, alpha=0.25, reduction="none")
    np.testing.assert_allclose(v.detach().numpy(), [[[0.0, 0.25 * 2e4]]], rtol=1e-6)
    (g,) = torch.autograd.grad(v.sum(), x)
    assert torch.isfinite(g).all()
    np.testing.assert_allclose(g.numpy()[0, :, 0], [[0.0, -0.25], [0.0, 0.25]], atol=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_softmax_focal_saturated_pixels_have_zero_loss_and_gradient(gamma):
    """p_y == 1 exactly: (1 - p_y)^γ is 0; its derivative is infinite for γ < 1, yet the total
    gradient (times log p_y = 0) has limit 0, which torch and the reference both give."""
    x = torch.tensor([[[[1e4, 0.3]], [[-1e4, -0.4]], [[0.0, 1.2]]]], requires_grad=True)
    y = torch.tensor([[[0, 2]]])
    v = F.focal(x, y, gamma=gamma, reduction="none")
    (g,) = torch.autograd.grad(v.sum(), x)
    assert v[0, 0, 0].item() == 0.0 and torch.isfinite(g).all()
    np.testing.assert_array_equal(g[0, :, 0, 0].numpy(), [0.0, 0.0, 0.0])
    rv, rg = ref.focal(x.detach().double().numpy(), y.numpy(), gamma=gamma, reduction="none", grad=True)
    np.testing.assert_allclose(v.detach().numpy(), rv, rtol=1e-6)
    np.testing.assert_allclose(g.numpy(), rg, rtol=1e-5, atol=1e-7)


def test_softmax_focal_bad_alpha_length():
    x, y = _seg((1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"focal: alpha must have one value per class \(C = 3\); got 4"):
        F.focal(torch.tensor(x), torch.tensor(y), alpha=[1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"focal: alpha must have one value per class \(C = 3\); got 4"):
        ref.focal(x, y, alpha=[1, 1, 1, 1])
