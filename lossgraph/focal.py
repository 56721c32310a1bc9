"""Focal losses (Lin et al., "Focal Loss for Dense Object Detection", 2017)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_dtype, check_shapes
from ._functional import (
    REDUCTIONS,
    LossModule,
    check_class_list,
    check_segmentation,
    check_unit,
    class_weights,
    is_tracing,
    log_softmax_at_labels,
    reduce,
    safe_div,
    to_acc,
    valid_mask,
)
from ._types import Reduction


def bce_with_logits(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Elementwise stable BCE on logits: ``max(x, 0) - x t + log(1 + exp(-|x|))``; finite for any x."""
    return torch.clamp(x, min=0) - x * t + torch.log1p(torch.exp(-x.abs()))


def sigmoid_focal(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Sigmoid focal loss, torchvision's ``sigmoid_focal_loss`` formula.

    ``FL = α_t · BCE(x, t) · (1 - p_t)^γ`` with ``p = σ(x)``, ``p_t = p t + (1-p)(1-t)``,
    ``α_t = α t + (1-α)(1-t)``; ``alpha < 0`` disables the weighting. The BCE term is the stable
    log-sum-exp form, so logits of ±1e4 give finite values and gradients.

    Args:
        logits: float tensor of any shape, typically ``(B, C, H, W)``.
        targets: float tensor of the same shape, values in ``[0, 1]`` (binary labels as floats).
        alpha: weight of the positives, ``1 - alpha`` of the negatives; ``< 0`` disables it (torchvision: 0.25).
        gamma: focusing exponent (torchvision default 2).
        reduction: ``'none'`` (same shape as logits) | ``'mean'`` | ``'sum'``.

    Equivalences: torchvision's ``sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)``
    (its published formula; ``tests/test_focal.py``). On 0/1 targets, kornia's
    ``binary_focal_loss_with_logits(logits, targets, alpha, gamma, reduction)`` (``alpha=None`` for
    ``alpha < 0``) and MONAI's ``FocalLoss(use_softmax=False, gamma=gamma, alpha=alpha)`` with
    ``reduction`` ``'mean'`` or ``'none'``. Differences: for soft targets kornia computes
    ``t · FL(x, 1) + (1 - t) · FL(x, 0)``; MONAI's ``'sum'`` is the sum over ``(B, C)`` of the spatial
    means. Tested: ``tests/test_anchors_kornia.py``, ``tests/test_anchors_monai.py``.

    Example:
        >>> x = torch.tensor([[-2.0, 3.0]]); t = torch.tensor([[0.0, 1.0]])
        >>> round(float(sigmoid_focal(x, t, reduction="sum")), 6)
        0.00138
    """
    fn = "sigmoid_focal"
    check_dtype(fn, "logits", logits, "f", "a float tensor")
    check_dtype(fn, "targets", targets, "fb", "a float tensor")
    check_shapes(fn, [("logits", logits, tuple(f"d{i}" for i in range(logits.dim()))), ("targets", targets, None)])
    check_unit(fn, "targets", targets)
    x = to_acc(logits)
    t = targets.to(x.dtype)
    p = torch.sigmoid(x)
    if not is_tracing():
        # eager, fewer passes for autograd: ATen's fused BCE, 1 - p_t = p (1 - 2t) + t in one addcmul,
        # and pow directly for γ >= 1 (its backward γ·q^(γ-1) is finite at q = 0)
        q = torch.addcmul(t, p, 1.0 - 2.0 * t)
        mod = q**gamma if gamma >= 1 else torch.where(q > 0, torch.where(q > 0, q, 1.0) ** gamma, 0.0**gamma)
        loss = F.binary_cross_entropy_with_logits(x, t, reduction="none") * mod
        if alpha >= 0:
            loss = loss * ((1 - alpha) + (2 * alpha - 1) * t)
        return reduce(loss, reduction, fn)
    q = 1 - (p * t + (1 - p) * (1 - t))  # 1 - p_t
    # (1 - p_t)^γ with q = 0 (saturated logits) kept out of pow: its backward γ·q^(γ-1) is inf for γ < 1
    loss = bce_with_logits(x, t) * torch.where(q > 0, torch.where(q > 0, q, 1.0) ** gamma, 0.0**gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return reduce(loss, reduction, fn)


class SigmoidFocal(LossModule):
    """Module form of :func:`sigmoid_focal`; ``forward(logits, targets)`` of equal shapes."""

    name = "sigmoid_focal"

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: Reduction = "mean") -> None:
        super().__init__(alpha=float(alpha), gamma=float(gamma), reduction=reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return sigmoid_focal(logits, targets, **self._params)


def focal(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Multi-class softmax focal loss ``-α_y (1 - p_y)^γ log p_y`` with ``p = softmax(logits)``.

    Args:
        logits: ``(B, C, H, W)`` float logits.
        labels: ``(B, H, W)`` integers in ``[0, C)`` or ``ignore_index``.
        gamma: focusing parameter (``γ = 0`` is cross-entropy). The gradient flows through
            ``(1 - p_y)^γ`` too (the common code's ``pt.data`` detaches it; that is not the loss's gradient).
            Where ``p_y == 1`` exactly (saturated logits) the term and its gradient are 0 for any ``γ > 0``.
        alpha: ``None`` (no weighting), a scalar ``α`` meaning the class weights
            ``[α, 1-α, 1-α, ...]`` (class 0 against the rest), or a per-class list of length C.
        ignore_index: label value whose pixels are ignored.
        reduction: ``'mean'`` over the valid pixels (plain mean, not weighted by α), ``'sum'``, or
            ``'none'`` (``(B, H, W)``, 0 at ignored pixels).

    Returns:
        Scalar or ``(B, H, W)``, float32 for fp16/bf16 input; ``'mean'`` with every pixel ignored gives 0.

    Equivalences: ``alpha=None`` is the common ``FocalLoss(gamma, alpha=None, size_average=True)``
    (clcarwin) value; a scalar ``alpha`` there builds ``[α, 1-α]`` (C = 2), here ``[α, 1-α, ...]``
    for any C. With ``gamma=0, alpha=None`` it equals ``cross_entropy(..., reduction)``.
    kornia's ``focal_loss(logits, labels, alpha=a, gamma, reduction, ignore_index=i)`` and MONAI's
    ``FocalLoss(use_softmax=True, to_onehot_y=True, gamma, alpha=a, ignore_index=i)`` (labels as
    ``(B, 1, H, W)``) weight class 0 by ``1 - a`` and the others by ``a``: they are ``alpha=1 - a``
    here, for ``'sum'`` (kornia), ``'none'`` summed over their class axis (both) and ``'mean'``
    (MONAI with ``ignore_index``). Differences: kornia's ``'mean'`` and MONAI's ``'mean'`` without
    ``ignore_index`` divide by ``B·C·H·W`` (``C`` times the pixels); MONAI's ``'sum'`` is the sum over
    images of each image's mean. Tested: ``tests/test_anchors_kornia.py``, ``tests/test_anchors_monai.py``.

    Example:
        >>> x = torch.zeros(1, 2, 1, 1); y = torch.tensor([[[1]]])
        >>> round(float(focal(x, y, gamma=2.0)), 6)  # 0.5² · log 2
        0.173287
    """
    fn = "focal"
    c, labels = check_segmentation(fn, "logits", logits, labels, ignore_index)
    check_choice(fn, "reduction", reduction, REDUCTIONS)
    if alpha is not None and not isinstance(alpha, (int, float)):
        alpha = check_class_list(fn, "alpha", alpha, c)
    x = to_acc(logits)
    valid = valid_mask(labels, ignore_index)
    logpt, safe = log_softmax_at_labels(x, labels, valid)
    q = 1.0 - torch.exp(logpt)
    eager = not is_tracing()
    if gamma == 0:
        mod = torch.ones_like(q)
    elif eager and gamma >= 1:  # eager: q**γ has a finite gradient at q = 0 when γ >= 1 (4 fewer passes)
        mod = q.pow(gamma)
    else:  # q = 0 (p_y = 1 exactly) gives 0 and a zero gradient, also for 0 < γ < 1 (no inf · 0)
        pos = q > 0
        mod = torch.where(pos, torch.where(pos, q, torch.ones_like(q)) ** gamma, torch.zeros_like(q))
    loss = -mod * logpt
    if isinstance(alpha, (int, float)):
        loss = loss * torch.where(safe == 0, torch.full_like(loss, alpha), torch.full_like(loss, 1.0 - alpha))
    elif alpha is not None:
        loss = loss * class_weights(alpha, safe, x.dtype)
    if ignore_index is not None or not eager:  # eager without an ignore label: every pixel counts
        loss = torch.where(valid, loss, torch.zeros_like(loss))
    if reduction == "mean":
        return safe_div(loss.sum(), valid.sum().to(x.dtype))
    return reduce(loss, reduction, fn)


class Focal(LossModule):
    """Module form of :func:`focal`; ``forward(logits (B,C,H,W), labels (B,H,W))``."""

    name = "focal"

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        ignore_index: int | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        if alpha is not None:
            alpha = float(alpha) if isinstance(alpha, (int, float)) else [float(a) for a in alpha]
        super().__init__(gamma=float(gamma), alpha=alpha, ignore_index=ignore_index, reduction=reduction)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return focal(logits, labels, **self._params)
