"""Cross-entropy losses with ignored pixels: stable binary cross-entropy on logits, multi-class
cross-entropy (LogSoftmax + GatherElements + masked mean, not ``F.cross_entropy``), and CE + Dice.

All-ignored inputs give 0 (torch's ``F.cross_entropy`` gives NaN there). Sums run in float32 for
fp16/bf16 input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._functional import (
    LossModule,
    check_class_list,
    check_segmentation,
    class_weights,
    is_tracing,
    log_softmax_at_labels,
    reduce,
    safe_div,
    to_acc,
    valid_mask,
)
from ._types import Reduction
from .dice import dice
from .focal import bce_with_logits


def binary_xloss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """Binary cross-entropy on logits, mean over the non-ignored pixels (Berman's ``binary_xloss``).

    ``max(x, 0) - x·y + log(1 + exp(-|x|))`` per pixel (the stable form: finite for any logit).

    Args:
        logits: ``(B, H, W)`` float logits.
        labels: ``(B, H, W)`` integers, 0 or 1, or ``ignore_index``.
        ignore_index: label value whose pixels are ignored.

    Returns:
        Scalar (float32 for fp16/bf16 input); 0 when every pixel is ignored (Berman's code: NaN).

    Equals ``F.binary_cross_entropy_with_logits(logits[valid], labels[valid].float())``.

    Example:
        >>> round(float(binary_xloss(torch.tensor([[[0.0, 2.0]]]), torch.tensor([[[1, 255]]]), 255)), 6)
        0.693147
    """
    fn = "binary_xloss"
    _, labels = check_segmentation(fn, "logits", logits, labels, ignore_index, num_classes=2, allow_float=True)
    x = to_acc(logits)
    if not is_tracing():  # eager: softplus and a fused sum forward, sigmoid backward (lossgraph/_eager.py)
        from ._eager import BceWithLogitsSum

        if ignore_index is None:  # labels are 0/1 (checked): they are the targets
            return BceWithLogitsSum.apply(x, labels.to(x.dtype), None) / x.new_tensor(float(labels.numel()))
        weight = valid_mask(labels, ignore_index).to(x.dtype)
        return safe_div(BceWithLogitsSum.apply(x, (labels == 1).to(x.dtype), weight), weight.sum())
    # graphs: the stable form as plain ops
    valid = valid_mask(labels, ignore_index)
    loss = bce_with_logits(x, (labels == 1).to(x.dtype))
    total = torch.where(valid, loss, torch.zeros_like(loss)).sum()
    return safe_div(total, valid.sum().to(x.dtype))


def cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int | None = 255,
    weight: Sequence[float] | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Multi-class cross-entropy ``-w_y log softmax(x)_y`` with ignored pixels and class weights.

    Args:
        logits: ``(B, C, H, W)`` float logits.
        labels: ``(B, H, W)`` integers in ``[0, C)`` or ``ignore_index`` (default 255).
        ignore_index: label value whose pixels are ignored (``None``: none).
        weight: optional per-class weights (length C).
        reduction: ``'mean'`` (weighted mean: ``Σ w_y·nll / Σ w_y`` over valid pixels, like torch),
            ``'sum'``, or ``'none'`` (``(B, H, W)``, 0 at ignored pixels).

    Returns:
        Scalar, or ``(B, H, W)``; float32 for fp16/bf16 input. ``'mean'`` with every pixel ignored
        (or a zero total weight) gives 0, where torch gives NaN.

    Equals ``F.cross_entropy(logits, labels, weight, ignore_index=ignore_index, reduction=...)``
    wherever that is finite; with the defaults, Berman's ``xloss``.

    Example:
        >>> x = torch.zeros(1, 4, 1, 2); y = torch.tensor([[[3, 255]]])
        >>> round(float(cross_entropy(x, y)), 6)  # log 4
        1.386294
    """
    fn = "cross_entropy"
    c, labels = check_segmentation(fn, "logits", logits, labels, ignore_index)
    weight = check_class_list(fn, "weight", weight, c)
    x = to_acc(logits)
    valid = valid_mask(labels, ignore_index)
    logpt, safe = log_softmax_at_labels(x, labels, valid)
    w = valid.to(x.dtype)
    if weight is not None:
        w = w * class_weights(weight, safe, x.dtype)
    loss = -w * logpt
    if reduction == "mean":
        return safe_div(loss.sum(), w.sum())
    return reduce(loss, reduction, fn)


def ce_dice(
    logits: torch.Tensor,
    labels: torch.Tensor,
    smooth: float = 1.0,
    ignore_index: int | None = 255,
    weight: Sequence[float] | None = None,
) -> torch.Tensor:
    """Cross-entropy plus Dice: ``cross_entropy(mean, ignore_index, weight) + dice(smooth, ignore_index)``.

    Args:
        logits: ``(B, C, H, W)`` float logits.
        labels: ``(B, H, W)`` integers in ``[0, C)`` or ``ignore_index`` (default 255).
        smooth: Dice smoothing (source default 1).
        ignore_index: ignored label, masked out of both terms.
        weight: optional per-class weights of the cross-entropy term.

    Returns:
        Scalar; 0 when every pixel is ignored.

    Equals the source's ``CE_DiceLoss(smooth, 'mean', ignore_index, weight)`` except that its Dice
    term relabels ignored pixels as the smallest label present; here they are masked out.

    Example:
        >>> x = torch.zeros(1, 2, 1, 1); y = torch.tensor([[[1]]])
        >>> round(float(ce_dice(x, y)), 6)  # log 2 + 1 - (2·0.5 + 1) / (1 + 1 + 1)
        1.02648
    """
    fn = "ce_dice"
    c, labels = check_segmentation(fn, "logits", logits, labels, ignore_index)
    weight = check_class_list(fn, "weight", weight, c)
    return cross_entropy(logits, labels, ignore_index, weight) + dice(logits, labels, smooth, ignore_index)


class BinaryXLoss(LossModule):
    """Module form of :func:`binary_xloss`; ``forward(logits (B,H,W), labels (B,H,W)) -> scalar``."""

    name = "binary_xloss"

    def __init__(self, ignore_index: int | None = None) -> None:
        super().__init__(ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return binary_xloss(logits, labels, **self._params)


class CrossEntropy(LossModule):
    """Module form of :func:`cross_entropy`; ``forward(logits (B,C,H,W), labels (B,H,W))``."""

    name = "cross_entropy"

    def __init__(
        self, ignore_index: int | None = 255, weight: Sequence[float] | None = None, reduction: Reduction = "mean"
    ) -> None:
        weight = None if weight is None else [float(w) for w in weight]
        super().__init__(ignore_index=ignore_index, weight=weight, reduction=reduction)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, labels, **self._params)


class CEDice(LossModule):
    """Module form of :func:`ce_dice`; ``forward(logits (B,C,H,W), labels (B,H,W)) -> scalar``."""

    name = "ce_dice"

    def __init__(
        self, smooth: float = 1.0, ignore_index: int | None = 255, weight: Sequence[float] | None = None
    ) -> None:
        weight = None if weight is None else [float(w) for w in weight]
        super().__init__(smooth=float(smooth), ignore_index=ignore_index, weight=weight)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return ce_dice(logits, labels, **self._params)
