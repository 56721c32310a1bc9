"""Equivalences with the installed kornia (the ``test`` extra pins ``kornia>=0.9,<0.10``): every claim
in a lossgraph docstring about kornia is checked here against ``kornia.losses`` itself, values and
gradients, in float64, at several shapes, with the edge inputs. Where kornia differs (no
``ignore_index`` in its Lovász losses, its ``alpha`` convention and ``'mean'`` denominator in the
focal loss, its per-image Dice), the test pins the exact relation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

kornia_losses = pytest.importorskip("kornia.losses", reason="the test extra installs kornia")

import lossgraph as lg  # noqa: E402
from lossgraph import reference as ref  # noqa: E402
from _anchors import assert_same, grad, seg_inputs  # noqa: E402

F = lg.functional
SHAPES = [(2, 4, 5, 6), (3, 3, 1, 7), (1, 5, 4, 4), (1, 2, 1, 1)]


def _per_image_valid(fn, x, y, ignore):
    """``fn`` of each image on its non-ignored pixels only (kornia has no ``ignore_index``), averaged."""
    losses = []
    for b in range(x.shape[0]):
        keep = y[b] != ignore
        losses.append(fn(x[b][..., keep][None, ..., None], y[b][keep][None, :, None]))
    return torch.stack(losses).mean()


# --- Lovász-Softmax -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_lovasz_softmax_equals_kornia(shape):
    """``lovasz_softmax(from_logits=True, per_image=True, classes="all")`` is kornia's
    ``lovasz_softmax_loss`` (kornia >= 0.9; older releases sorted class ids, not foreground flags)."""
    x, y = seg_inputs(shape, seed=sum(shape), classes=shape[1] - 1)  # the last class absent
    want = kornia_losses.lovasz_softmax_loss(x, y)
    kw = dict(from_logits=True, per_image=True, classes="all")
    assert_same(F.lovasz_softmax(x, y, **kw), want, x)
    value, g_ref = ref.lovasz_softmax(x.detach().numpy(), y.numpy(), grad=True, **kw)
    assert value == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(g_ref, grad(want, x), rtol=1e-9, atol=1e-14)
    # lossgraph's defaults (Berman's: one group over the batch, present classes) are another loss
    assert abs(F.lovasz_softmax(x, y, from_logits=True).item() - want.item()) > 1e-3


@pytest.mark.parametrize("shape", [(2, 4, 5, 6), (3, 3, 4, 7)])
def test_lovasz_softmax_ignore_equals_kornia_on_valid_pixels(shape):
    """kornia has no ``ignore_index``: ours with one equals kornia on each image's valid pixels."""
    x, y = seg_inputs(shape, seed=7 + sum(shape), ignore=255)
    want = _per_image_valid(kornia_losses.lovasz_softmax_loss, x, y, 255)
    assert_same(F.lovasz_softmax(x, y, from_logits=True, per_image=True, classes="all", ignore_index=255), want, x)


def test_lovasz_softmax_edge_inputs_equal_kornia():
    """One pixel per image, and images holding one class only."""
    for shape, fill in [((2, 3, 1, 1), None), ((2, 3, 4, 5), 2)]:
        x, y = seg_inputs(shape, seed=3)
        if fill is not None:
            y[:] = fill
        assert_same(F.lovasz_softmax(x, y, from_logits=True, per_image=True, classes="all"),
               kornia_losses.lovasz_softmax_loss(x, y), x)


# --- Lovász hinge ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 5, 6), (3, 1, 7), (1, 4, 4), (2, 1, 1)])
def test_lovasz_hinge_equals_kornia(shape):
    """``lovasz_hinge(per_image=True)`` (the default) is kornia's ``lovasz_hinge_loss`` of the logits
    as one channel ``(B, 1, H, W)``; ``per_image=False`` is kornia on the batch as one image."""
    rng = np.random.default_rng(11 + sum(shape))
    x = torch.tensor(rng.standard_normal(shape) * 2, requires_grad=True)
    y = torch.tensor(rng.integers(0, 2, size=shape))
    y[0] = 0  # an image without foreground
    assert_same(F.lovasz_hinge(x, y), kornia_losses.lovasz_hinge_loss(x[:, None], y), x)
    whole = kornia_losses.lovasz_hinge_loss(x.reshape(1, 1, 1, -1), y.reshape(1, 1, -1))
    assert_same(F.lovasz_hinge(x, y, per_image=False), whole, x)
    assert ref.lovasz_hinge(x.detach().numpy(), y.numpy()) == pytest.approx(
        kornia_losses.lovasz_hinge_loss(x[:, None], y).item(), rel=1e-12)


def test_lovasz_hinge_ignore_equals_kornia_on_valid_pixels():
    x, y = seg_inputs((3, 1, 5, 6), seed=5, ignore=255, classes=2)
    x = x[:, 0].detach().requires_grad_()

    def kornia_image(xb, yb):  # (1, 1, n, 1) logits and (1, n, 1) labels of one image
        return kornia_losses.lovasz_hinge_loss(xb, yb)

    want = _per_image_valid(kornia_image, x[:, None], y, 255)
    assert_same(F.lovasz_hinge(x, y, ignore_index=255), want, x)


# --- focal ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha,gamma", [(None, 2.0), (0.25, 2.0), (0.7, 0.5), (None, 0.0)])
def test_focal_equals_kornia(shape, alpha, gamma):
    """kornia's ``focal_loss(alpha=a)`` weights class 0 by ``1 - a`` and the others by ``a``: it is
    ``focal(alpha=1 - a)`` here (``[α, 1-α, ...]`` with class 0 first), for ``'sum'`` and, summed
    over its class axis, ``'none'``; ignored pixels give 0 in both."""
    x, y = seg_inputs(shape, seed=17 + sum(shape), ignore=255)
    ours_alpha = None if alpha is None else 1.0 - alpha
    kw = dict(alpha=alpha, gamma=gamma, ignore_index=255)
    want_sum = kornia_losses.focal_loss(x, y, reduction="sum", **kw)
    assert_same(F.focal(x, y, gamma, ours_alpha, 255, "sum"), want_sum, x)
    want_none = kornia_losses.focal_loss(x, y, reduction="none", **kw).sum(1)
    assert_same(F.focal(x, y, gamma, ours_alpha, 255, "none"), want_none, x)
    # per-class list: alpha=[1 - a, a, a, ...] is kornia's alpha=a, spelled out
    if alpha is not None:
        listed = [1.0 - alpha] + [alpha] * (shape[1] - 1)
        assert_same(F.focal(x, y, gamma, listed, 255, "sum"), want_sum, x)


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_focal_mean_differs_from_kornia_by_its_denominator(shape):
    """kornia's ``'mean'`` divides the sum by ``B·C·H·W`` (every class slice, ignored pixels too);
    ours divides by the number of valid pixels."""
    x, y = seg_inputs(shape, seed=23, ignore=255)
    b, c, h, w = shape
    n_valid = int((y != 255).sum())
    want = kornia_losses.focal_loss(x, y, alpha=None, gamma=2.0, reduction="mean", ignore_index=255)
    got = F.focal(x, y, 2.0, None, 255, "mean")
    assert_same(got * n_valid / (b * c * h * w), want, x)


# --- binary (sigmoid) focal -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1), (4, 2)])
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.6, 0.5), (-1.0, 2.0), (0.25, 0.0)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_focal_equals_kornia_binary_focal(shape, alpha, gamma, reduction):
    """``sigmoid_focal(alpha, gamma, reduction)`` is kornia's ``binary_focal_loss_with_logits`` with the
    same arguments for 0/1 targets, ``alpha < 0`` being kornia's ``alpha=None``."""
    rng = np.random.default_rng(29 + len(shape))
    x = torch.tensor(rng.standard_normal(shape) * 3, requires_grad=True)
    t = torch.tensor((rng.random(shape) < 0.3) * 1.0)
    want = kornia_losses.binary_focal_loss_with_logits(
        x, t, alpha=None if alpha < 0 else alpha, gamma=gamma, reduction=reduction)
    assert_same(F.sigmoid_focal(x, t, alpha, gamma, reduction), want, x)


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 0.5)])
def test_sigmoid_focal_soft_targets_differ_from_kornia(alpha, gamma):
    """Soft targets ``t`` in (0, 1): ours (torchvision's formula) puts ``t`` into ``p_t`` and the BCE;
    kornia mixes the two hard-target terms, ``t · FL(x, 1) + (1 - t) · FL(x, 0)``, which is what is
    pinned here (they agree at t = 0 and 1 only)."""
    rng = np.random.default_rng(31)
    x = torch.tensor(rng.standard_normal((2, 3, 4)) * 3, requires_grad=True)
    t = torch.tensor(rng.random((2, 3, 4)))
    want = kornia_losses.binary_focal_loss_with_logits(
        x, t, alpha=None if alpha < 0 else alpha, gamma=gamma, reduction="none")
    ones = torch.ones_like(t)
    mixed = t * F.sigmoid_focal(x, ones, alpha, gamma, "none") + (1 - t) * F.sigmoid_focal(x, 0 * ones, alpha, gamma, "none")
    assert_same(mixed, want, x)
    assert (F.sigmoid_focal(x, t, alpha, gamma, "none") - want).abs().max().item() > 1e-2


def test_sigmoid_focal_extreme_logits_match_kornia_where_finite():
    """Logits of ±30 and ±1e4: both finite and equal (kornia also uses log-sigmoid)."""
    x = torch.tensor([[-1e4, -30.0, 30.0, 1e4]] * 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    want = kornia_losses.binary_focal_loss_with_logits(x, t, alpha=0.25, gamma=2.0, reduction="sum")
    assert torch.isfinite(want)
    assert_same(F.sigmoid_focal(x, t, 0.25, 2.0, "sum"), want, x)


# --- Dice -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ignore", [None, 255])
def test_dice_per_image_equals_kornia_micro(shape, ignore):
    """kornia's ``dice_loss(average='micro', eps=0)`` is one Dice per image, averaged over the batch;
    ours pools the batch: kornia equals the batch mean of ``dice(image, smooth=0)``, and equals
    ``dice(smooth=0)`` itself for one image. ``ignore_index`` masks pixels the same way."""
    x, y = seg_inputs(shape, seed=37 + sum(shape), ignore=ignore)
    kornia_ignore = -100 if ignore is None else ignore
    want = kornia_losses.dice_loss(x, y, average="micro", eps=0.0, ignore_index=kornia_ignore)
    per_image = torch.stack([F.dice(x[b:b + 1], y[b:b + 1], smooth=0.0, ignore_index=ignore)
                             for b in range(shape[0])]).mean()
    assert_same(per_image, want, x)
    if shape[0] == 1:
        assert_same(F.dice(x, y, smooth=0.0, ignore_index=ignore), want, x)


@pytest.mark.parametrize("shape", [(1, 4, 5, 6), (1, 3, 2, 7)])
def test_dice_per_class_and_kornia_macro(shape):
    """One image: ``dice(per_class=True, smooth=0)`` averages over all ``C`` classes (an absent class
    counts 0), kornia's ``'macro'`` over the classes present: ours · C / present == kornia."""
    for absent in (False, True):
        x, y = seg_inputs(shape, seed=41, classes=shape[1] - 1 if absent else None)
        y.view(-1)[: shape[1] - absent] = torch.arange(shape[1] - absent)  # the others all present
        present = len(torch.unique(y))
        want = kornia_losses.dice_loss(x, y, average="macro", eps=0.0)
        assert_same(F.dice(x, y, smooth=0.0, per_class=True) * shape[1] / present, want, x)


def test_dice_all_ignored_image_differs_from_kornia():
    """An all-ignored image: kornia enters it into the batch mean as loss 1, lossgraph as 0."""
    x, y = seg_inputs((2, 3, 4, 5), seed=43)
    y[1] = 255
    want = kornia_losses.dice_loss(x, y, average="micro", eps=0.0, ignore_index=255)
    assert F.dice(x[1:], y[1:], smooth=0.0, ignore_index=255).item() == 0.0
    first = F.dice(x[:1], y[:1], smooth=0.0, ignore_index=255)
    assert_same((first + 1.0) / 2, want, x)
