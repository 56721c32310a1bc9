"""Equivalences with the installed MONAI (the ``test`` extra pins ``monai>=1.6,<1.7``): ``DiceLoss`` and
``FocalLoss`` called from ``monai.losses`` itself, values and gradients, at several shapes, with
``ignore_index`` and absent classes. MONAI's focal loss computes in float32 (it casts its inputs), so
those comparisons are float32 against float32 at fp32 tolerances. MONAI's ``GeneralizedDiceLoss``
has no counterpart in lossgraph (no docstring claims it), so it is not tested.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

monai_losses = pytest.importorskip("monai.losses", reason="the test extra installs MONAI")

import lossgraph as lg  # noqa: E402
from _anchors import assert_same, seg_inputs  # noqa: E402

F = lg.functional
SHAPES = [(2, 4, 5, 6), (3, 3, 1, 7), (1, 5, 4, 4), (1, 2, 1, 2)]
FP32 = 1e-6  # float32 on both sides (MONAI's focal loss casts to float32): rounding of a few ulps


def _all_present(y: torch.Tensor, classes: int) -> torch.Tensor:
    y.view(-1)[:classes] = torch.arange(classes)
    return y


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("smooth,squared", [(0.0, False), (1.0, False), (1e-5, True)])
@pytest.mark.parametrize("ignore", [None, 255])
def test_dice_per_class_equals_monai_batch_dice(shape, smooth, squared, ignore):
    """``dice(per_class=True, smooth=s, squared=q, ignore_index=i)`` is MONAI's ``DiceLoss(softmax=True,
    to_onehot_y=True, batch=True, smooth_nr=s, smooth_dr=s, squared_pred=q, ignore_index=i)`` of the
    labels as ``(B, 1, H, W)``, when every class occurs among the valid labels."""
    x, y = seg_inputs(shape, seed=sum(shape), ignore=ignore)
    y = _all_present(y, shape[1])
    monai = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, batch=True, smooth_nr=smooth, smooth_dr=smooth,
                                  squared_pred=squared, ignore_index=ignore)
    # squared: MONAI's Σt² is the float32 square of the float32 2-norm of its one-hot target (its
    # one_hot is float32), 1e-7 relative rounding; Σp² the square of a float64 norm
    rtol = 1e-6 if squared else 1e-12
    assert_same(F.dice(x, y, smooth=smooth, squared=squared, per_class=True, ignore_index=ignore),
                monai(x, y[:, None]), x, rtol=rtol)


@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_dice_absent_class_differs_from_monai(smooth):
    """A class absent from the labels: lossgraph counts 0 for it (smp's rule), MONAI
    ``1 - s / (Σp_c + s)``, so ``MONAI · C = ours · C + Σ_absent (1 - s / (Σp_c + s))``."""
    shape = (2, 4, 3, 5)
    x, y = seg_inputs(shape, seed=3, classes=3)  # class 3 absent
    y = _all_present(y, 3)
    monai = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, batch=True, smooth_nr=smooth, smooth_dr=smooth)
    mass = torch.softmax(x, 1)[:, 3].sum()
    want = (F.dice(x, y, smooth=smooth, per_class=True) * 4 + 1 - smooth / (mass + smooth)) / 4
    assert_same(want, monai(x, y[:, None]), x)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha,gamma", [(None, 2.0), (0.25, 2.0), (0.7, 0.5)])
def test_focal_equals_monai_softmax_focal(shape, alpha, gamma):
    """MONAI's ``FocalLoss(use_softmax=True, to_onehot_y=True, alpha=a)`` weights class 0 by ``1 - a``
    like kornia: it is ``focal(alpha=1 - a)``. With ``ignore_index`` its ``'mean'`` divides by the valid
    pixels, as here; ``'none'`` summed over its class axis is ours."""
    x, y = seg_inputs(shape, seed=5 + sum(shape), ignore=255, dtype=torch.float32)
    ours_alpha = None if alpha is None else 1.0 - alpha
    for reduction in ("mean", "none"):
        monai = monai_losses.FocalLoss(use_softmax=True, to_onehot_y=True, gamma=gamma, alpha=alpha,
                                       reduction=reduction, ignore_index=255)
        want = monai(x, y[:, None])
        want = want.sum(1) if reduction == "none" else want
        assert_same(F.focal(x, y, gamma, ours_alpha, 255, reduction), want, x, rtol=FP32)


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_focal_monai_reductions_differ(shape):
    """MONAI's other reductions, pinned: without ``ignore_index`` its ``'mean'`` divides by
    ``B·C·H·W`` (ours / C); its ``'sum'`` is the sum over images of each image's mean over pixels
    (the valid ones with ``ignore_index``), not the sum over pixels."""
    x, y = seg_inputs(shape, seed=7, dtype=torch.float32)
    c = shape[1]
    plain = monai_losses.FocalLoss(use_softmax=True, to_onehot_y=True, reduction="mean")(x, y[:, None])
    assert_same(F.focal(x, y, 2.0, None, None, "mean") / c, plain, x, rtol=FP32)
    x, y = seg_inputs(shape, seed=8, ignore=255, dtype=torch.float32)
    summed = monai_losses.FocalLoss(use_softmax=True, to_onehot_y=True, reduction="sum", ignore_index=255)
    per_image = torch.stack([F.focal(x[b:b + 1], y[b:b + 1], 2.0, None, 255, "mean") for b in range(shape[0])])
    assert_same(per_image.sum(), summed(x, y[:, None]), x, rtol=FP32)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1)])
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 0.5), (0.6, 0.0)])
def test_sigmoid_focal_equals_monai_sigmoid_focal(shape, alpha, gamma):
    """``sigmoid_focal(alpha, gamma, 'mean' | 'none')`` is MONAI's ``FocalLoss(use_softmax=False, gamma,
    alpha)`` on 0/1 targets (``alpha < 0``: MONAI's ``alpha=None``); MONAI's ``'sum'`` is the sum over
    ``(B, C)`` of the spatial means."""
    rng = np.random.default_rng(11 + len(shape))
    x = torch.tensor(rng.standard_normal(shape) * 3, dtype=torch.float32, requires_grad=True)
    t = torch.tensor((rng.random(shape) < 0.3) * 1.0, dtype=torch.float32)
    a = None if alpha < 0 else alpha
    for reduction in ("mean", "none"):
        want = monai_losses.FocalLoss(use_softmax=False, gamma=gamma, alpha=a, reduction=reduction)(x, t)
        assert_same(F.sigmoid_focal(x, t, alpha, gamma, reduction), want, x, rtol=FP32)
    want = monai_losses.FocalLoss(use_softmax=False, gamma=gamma, alpha=a, reduction="sum")(x, t)
    assert_same(F.sigmoid_focal(x, t, alpha, gamma, "none").mean((2, 3)).sum(), want, x, rtol=FP32)
