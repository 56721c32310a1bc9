"""Reference focal losses, float64, with analytic gradients."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit, prange

from lossgraph._checks import check_choice, check_shapes, check_unit_interval
from lossgraph._types import ArrayLike, Reduction, RefResult

from ._util import as_f64, power, reduce
from .crossentropy import pixel_losses


@njit(cache=True, parallel=True)
def sigmoid_focal_terms(x, t, alpha, gamma, keep, want_grad):
    """Flat x, t -> (Σ loss, per-element loss if ``keep``, per-element d loss / d x if ``want_grad``)."""
    n = x.shape[0]
    out = np.empty(n if keep else 0)
    grad = np.empty(n if want_grad else 0)
    total = 0.0
    for i in prange(n):
        xi, ti = x[i], t[i]
        p = 0.5 * (1.0 + math.tanh(0.5 * xi))
        bce = max(xi, 0.0) - xi * ti + math.log1p(math.exp(-abs(xi)))
        q = 1.0 - (p * ti + (1.0 - p) * (1.0 - ti))
        a = alpha * ti + (1.0 - alpha) * (1.0 - ti) if alpha >= 0 else 1.0
        mod = power(q, gamma)
        total += a * bce * mod
        if keep:
            out[i] = a * bce * mod
        if want_grad:
            dq = -(2.0 * ti - 1.0) * p * (1.0 - p)
            # γ q^(γ-1) is inf at q = 0 for γ < 1, where bce·dq = 0: the product's limit is 0
            qg1 = gamma * power(q, gamma - 1.0) if (q > 0 and gamma != 0) else 0.0
            grad[i] = a * ((p - ti) * mod + qg1 * bce * dq)
    return total, out, grad


def sigmoid_focal(
    logits: ArrayLike,
    targets: ArrayLike,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
    grad: bool = False,
) -> RefResult:
    """``α_t · BCE(x, t) · (1 - p_t)^γ`` elementwise (torchvision's formula), reduced.

    Gradient: with ``q = 1 - p_t`` and ``dq/dx = -(2t - 1) p (1 - p)``,
    ``d/dx = α_t [(p - t) q^γ + γ q^(γ-1) BCE dq/dx]``. With ``reduction='none'`` the gradient is
    that of the sum. One parallel Numba pass over the elements.
    """
    fn = "sigmoid_focal"
    x = as_f64(fn, "logits", logits)
    t = as_f64(fn, "targets", targets)
    check_shapes(fn, [("logits", x, tuple(f"d{i}" for i in range(x.ndim))), ("targets", t, None)])
    check_unit_interval(fn, "targets", t)
    check_choice(fn, "reduction", reduction, ("none", "mean", "sum"))
    total, out, g = sigmoid_focal_terms(x.reshape(-1), t.reshape(-1), float(alpha), float(gamma),
                                        reduction == "none", grad)
    if reduction == "none":
        value, scale = out.reshape(x.shape), 1.0
    elif reduction == "sum":
        value, scale = total, 1.0
    else:
        value, scale = (total / x.size, 1.0 / x.size) if x.size else (float("nan"), 0.0)
    if not grad:
        return value
    g *= scale
    return value, g.reshape(x.shape)


def focal(
    logits: ArrayLike,
    labels: ArrayLike,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    grad: bool = False,
) -> RefResult:
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
