"""Reference focal losses, float64, with analytic gradients."""

from __future__ import annotations

import numpy as np

from lossgraph._checks import check_shapes

from ._util import as_f64, reduce, sigmoid
from .crossentropy import pixel_losses


def sigmoid_focal(logits, targets, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean", grad: bool = False):
    """``α_t · BCE(x, t) · (1 - p_t)^γ`` elementwise (torchvision's formula), reduced.

    Gradient: with ``q = 1 - p_t`` and ``dq/dx = -(2t - 1) p (1 - p)``,
    ``d/dx = α_t [(p - t) q^γ + γ q^(γ-1) BCE dq/dx]``. With ``reduction='none'`` the gradient is
    that of the sum.
    """
    fn = "sigmoid_focal"
    x = as_f64(fn, "logits", logits)
    t = as_f64(fn, "targets", targets)
    check_shapes(fn, [("logits", x, tuple(f"d{i}" for i in range(x.ndim))), ("targets", t, None)])
    p = sigmoid(x)
    bce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    q = 1 - (p * t + (1 - p) * (1 - t))
    a = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else np.ones_like(x)
    value, scale = reduce(a * bce * q**gamma, reduction, fn)
    if not grad:
        return value
    dq = -(2 * t - 1) * p * (1 - p)
    # γ q^(γ-1) is inf at q = 0 for γ < 1, where bce·dq = 0: the product's limit is 0
    qg1 = gamma * np.where(q > 0, q, 1.0) ** (gamma - 1) * (q > 0) if gamma != 0 else np.zeros_like(q)
    return value, scale * a * ((p - t) * q**gamma + qg1 * bce * dq)


def focal(logits, labels, gamma: float = 2.0, alpha=None, ignore_index: int | None = None,
          reduction: str = "mean", grad: bool = False):
    """``-α_y (1 - p_y)^γ log p_y`` per pixel, ``p = softmax(logits)``; 'mean' over valid pixels.

    ``alpha``: None, scalar (class weights ``[α, 1-α, ...]``) or a per-class list. logits
    (B, C, H, W), labels (B, H, W). Returns the loss, or ``(loss, d/d logits)``.
    """
    fn = "focal"
    x, valid, loss, g, _ = pixel_losses(fn, logits, labels, ignore_index, "alpha", alpha, gamma, grad,
                                        scalar_alpha=True)
    if reduction == "mean":
        n = valid.sum()
        value, scale = (float(loss.sum() / n), 1.0 / n) if n else (0.0, 0.0)
    else:
        value, scale = reduce(loss, reduction, fn)
    return (value, g * scale) if grad else value
