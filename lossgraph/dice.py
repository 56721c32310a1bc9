"""Dice losses: multi-class Dice on softmax outputs, and the source's binary soft Dice.

Sums run in float32 for fp16/bf16 input (a 512x512 fp16 sum overflows at 65504).
"""

from __future__ import annotations

import torch

from ._checks import check_dtype, check_shapes
from ._eager import SoftmaxDiceSums
from ._functional import (
    LossModule,
    check_segmentation,
    check_unit,
    is_tracing,
    one_hot,
    safe_div,
    softmax_c,
    to_acc,
    valid_mask,
)


def dice(
    logits: torch.Tensor,
    labels: torch.Tensor,
    smooth: float = 1.0,
    ignore_index: int | None = None,
    squared: bool = False,
    per_class: bool = False,
) -> torch.Tensor:
    """Multi-class Dice loss on ``p = softmax(logits)`` against one-hot labels, over the whole batch.

    ``loss = 1 - (2 Σ p·t + s) / (Σ p + Σ t + s)`` (``Σ p² + Σ t²`` with ``squared``, V-Net), sums over
    batch, pixels and classes; ignored pixels are masked out of every sum (prediction and target).

    Args:
        logits: ``(B, C, H, W)`` float logits (softmax over C is applied).
        labels: ``(B, H, W)`` integers in ``[0, C)`` or ``ignore_index``.
        smooth: Laplace smoothing ``s`` (source default 1).
        ignore_index: label value whose pixels are ignored.
        squared: squared denominator ``Σ p² + Σ t²``.
        per_class: one Dice per class (sums over batch and pixels), loss averaged over all ``C``
            classes, where a class absent from the (valid) labels contributes 0 (smp's rule).

    Returns:
        Scalar (float32 for fp16/bf16 input). No valid pixel (all ignored) gives 0, with any ``smooth``.

    Equivalences: the source's ``DiceLoss(smooth=1)`` is the default (its ``target_flat = output...``
    bug fixed; its ignore handling, which relabels ignored pixels as the smallest label, replaced by
    masking). segmentation_models_pytorch's ``DiceLoss("multiclass")`` defaults
    (``from_logits=True, smooth=0, log_loss=False``, any ``ignore_index``) are
    ``per_class=True, smooth=0`` (its published formula; ``tests/test_dice.py``). MONAI's
    ``DiceLoss(softmax=True, to_onehot_y=True, batch=True, smooth_nr=s, smooth_dr=s,
    squared_pred=q, ignore_index=i)`` (labels as ``(B, 1, H, W)``) is ``per_class=True, smooth=s,
    squared=q`` when every class occurs in the valid labels; a class absent from them counts
    ``1 - s / (Σp_c + s)`` there, 0 here. kornia's ``dice_loss(average="micro", eps=0,
    ignore_index=i)`` is one Dice per image averaged over the batch: the mean over images of
    ``dice(image, smooth=0)`` (equal to this for ``B = 1``; an all-ignored image counts 1 there, 0
    here); its ``"macro"`` averages over the classes present, so for one image it is
    ``per_class=True, smooth=0`` times ``C / present``. Tested: ``tests/test_anchors_monai.py``,
    ``tests/test_anchors_kornia.py``.

    Example:
        >>> x = torch.tensor([[[[9.0]], [[-9.0]]]]); y = torch.tensor([[[0]]])
        >>> round(float(dice(x, y, smooth=0)), 4)
        0.0
    """
    fn = "dice"
    c, labels = check_segmentation(fn, "logits", logits, labels, ignore_index)
    x = to_acc(logits)
    valid = valid_mask(labels, ignore_index).unsqueeze(1)  # (B, 1, H, W)
    if is_tracing():  # graphs: softmax, one-hot and sums as plain ops
        m = valid.to(x.dtype)
        p = softmax_c(x) * m
        t = (one_hot(labels, c) & valid).to(x.dtype)
        dims = (0, 2, 3) if per_class else (0, 1, 2, 3)
        inter = (p * t).sum(dims)
        target_sum = t.sum(dims)
        den = ((p * p).sum(dims) if squared else p.sum(dims)) + target_sum
    else:  # eager: per-class sums with an analytic backward, no one-hot tensor (lossgraph/_eager.py)
        safe = torch.where(valid[:, 0], labels, torch.zeros_like(labels))
        weights = None if ignore_index is None else valid[:, 0].to(x.dtype)
        inter, psum = SoftmaxDiceSums.apply(x, safe, weights, squared)
        target_sum = torch.bincount(safe[valid[:, 0]], minlength=c).to(x.dtype)
        if not per_class:
            inter, psum, target_sum = inter.sum(), psum.sum(), target_sum.sum()
        den = psum + target_sum
    loss = 1.0 - safe_div(2.0 * inter + smooth, den + smooth)
    if per_class:
        return torch.where(target_sum > 0, loss, torch.zeros_like(loss)).mean()
    return torch.where(valid.any(), loss, torch.zeros_like(loss))


def soft_dice(
    probas: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0, from_logits: bool = False
) -> torch.Tensor:
    """Binary soft Dice loss, the source's formula: ``1 - 2 (Σ p·t + s) / (Σ p² + Σ t² + s)``.

    Sums over every element (the whole batch). Note the source puts ``s`` inside ``2(·)``: an empty
    target with an all-zero prediction gives ``1 - 2 = -1``, not 0 (kept, as written). With
    ``smooth=0`` and both sums 0 the Dice term is taken as 0 (loss 1), not NaN.

    Args:
        probas: float tensor of any shape, typically ``(B, 1, H, W)``: foreground probabilities, or
            logits with ``from_logits=True`` (sigmoid is applied).
        targets: float tensor of the same shape, values in ``[0, 1]``.
        smooth: ``s`` (source default 1).
        from_logits: apply sigmoid to ``probas`` first.

    Returns:
        Scalar (float32 for fp16/bf16 input).

    Example:
        >>> p = torch.tensor([0.9, 0.1]); t = torch.tensor([1.0, 0.0])
        >>> round(float(soft_dice(p, t, smooth=0)), 6)  # 1 - 2·0.9 / (0.81 + 0.01 + 1)
        0.010989
        >>> float(soft_dice(torch.zeros(2), torch.zeros(2)))  # empty: 1 - 2·1/1
        -1.0
    """
    fn = "soft_dice"
    check_dtype(fn, "probas", probas, "f", "a float tensor")
    check_dtype(fn, "targets", targets, "fb", "a float tensor")
    check_shapes(fn, [("probas", probas, tuple(f"d{i}" for i in range(probas.dim()))), ("targets", targets, None)])
    check_unit(fn, "targets", targets)
    if not from_logits:
        check_unit(fn, "probas", probas, "probabilities in [0, 1]")
    x = to_acc(probas)
    p = torch.sigmoid(x) if from_logits else x
    t = targets.to(x.dtype)
    den = (p * p).sum() + (t * t).sum() + smooth
    return 1.0 - 2.0 * safe_div((p * t).sum() + smooth, den)


class Dice(LossModule):
    """Module form of :func:`dice`; ``forward(logits (B,C,H,W), labels (B,H,W)) -> scalar``."""

    name = "dice"

    def __init__(
        self, smooth: float = 1.0, ignore_index: int | None = None, squared: bool = False, per_class: bool = False
    ) -> None:
        super().__init__(smooth=float(smooth), ignore_index=ignore_index, squared=squared, per_class=per_class)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return dice(logits, labels, **self._params)


class SoftDice(LossModule):
    """Module form of :func:`soft_dice`; ``forward(probas, targets)`` of equal shapes -> scalar."""

    name = "soft_dice"

    def __init__(self, smooth: float = 1.0, from_logits: bool = False) -> None:
        super().__init__(smooth=float(smooth), from_logits=from_logits)

    def forward(self, probas: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return soft_dice(probas, targets, **self._params)
