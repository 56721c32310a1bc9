"""Focal losses (Lin et al., "Focal Loss for Dense Object Detection", 2017)."""

from __future__ import annotations

import torch

from ._checks import check_dtype, check_shapes
from ._functional import LossModule, reduce, to_acc


def bce_with_logits(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Elementwise stable BCE on logits: ``max(x, 0) - x t + log(1 + exp(-|x|))``; finite for any x."""
    return torch.clamp(x, min=0) - x * t + torch.log1p(torch.exp(-x.abs()))


def sigmoid_focal(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Sigmoid focal loss, torchvision's ``sigmoid_focal_loss`` formula.

    ``FL = α_t · BCE(x, t) · (1 - p_t)^γ`` with ``p = σ(x)``, ``p_t = p t + (1-p)(1-t)``,
    ``α_t = α t + (1-α)(1-t)``; ``alpha < 0`` disables the weighting. The BCE term is the stable
    log-sum-exp form, so logits of ±1e4 give finite values and gradients.

    Args:
        logits: float tensor of any shape, typically ``(B, C, H, W)``.
        targets: float tensor of the same shape, values in ``[0, 1]`` (binary labels as floats).
        alpha, gamma: focal parameters (torchvision defaults 0.25, 2).
        reduction: ``'none'`` (same shape as logits) | ``'mean'`` | ``'sum'``.

    Equals ``torchvision.ops.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)``.

    Example:
        >>> x = torch.tensor([[-2.0, 3.0]]); t = torch.tensor([[0.0, 1.0]])
        >>> round(float(sigmoid_focal(x, t, reduction="sum")), 6)
        0.00138
    """
    fn = "sigmoid_focal"
    check_dtype(fn, "logits", logits, "f", "a float tensor")
    check_dtype(fn, "targets", targets, "fb", "a float tensor")
    check_shapes(fn, [("logits", logits, tuple(f"d{i}" for i in range(logits.dim()))), ("targets", targets, None)])
    x = to_acc(logits)
    t = targets.to(x.dtype)
    p = torch.sigmoid(x)
    q = 1 - (p * t + (1 - p) * (1 - t))  # 1 - p_t
    # (1 - p_t)^γ with q = 0 (saturated logits) kept out of pow: its backward γ·q^(γ-1) is inf for γ < 1
    loss = bce_with_logits(x, t) * torch.where(q > 0, torch.where(q > 0, q, 1.0) ** gamma, 0.0**gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return reduce(loss, reduction, fn)


class SigmoidFocal(LossModule):
    """Module form of :func:`sigmoid_focal`; ``forward(logits, targets)`` of equal shapes."""

    name = "sigmoid_focal"

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean") -> None:
        super().__init__(alpha=float(alpha), gamma=float(gamma), reduction=reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return sigmoid_focal(logits, targets, **self._params)
