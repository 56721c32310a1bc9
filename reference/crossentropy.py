"""Reference cross-entropy losses (binary, multi-class, CE + Dice), float64, with gradients.

The multi-class kernel loops over pixels: log-softmax at the label, optional focal modulation
``(1 - p_y)^γ`` and class weight ``w_y``; ``d(-w (1-p)^γ log p)/d z_c = dℓ · (1[c = y] - p_c)``
with ``dℓ = -w ((1-p)^γ - γ (1-p)^(γ-1) p log p)``. ``focal`` shares it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit, prange

from lossgraph._types import ArrayLike, Reduction, RefResult

from ._util import class_table, power, reduce, segmentation_inputs
from .dice import dice


@njit(cache=True, parallel=True)
def softmax_nll(x, labels, valid, weights, gamma, want_grad):
    """x (B, C, P), labels (B, P) -> (per-pixel loss (B, P), its gradient w.r.t. x (B, C, P)).

    Pixels run in parallel (each writes only its own loss and gradient column). Without
    ``want_grad`` the gradient is an empty (0, 0, 0) array and each logit is read twice, not three
    times.
    """
    b_n, c_n, p_n = x.shape
    loss = np.zeros((b_n, p_n))
    grad = np.zeros((b_n, c_n, p_n) if want_grad else (0, 0, 0))
    for k in prange(b_n * p_n):
        b = k // p_n
        i = k - b * p_n
        if not valid[b, i]:
            continue
        top = x[b, 0, i]
        for c in range(1, c_n):
            top = max(top, x[b, c, i])
        total = 0.0
        for c in range(c_n):
            total += math.exp(x[b, c, i] - top)
        y = labels[b, i]
        logp = x[b, y, i] - top - math.log(total)
        p = math.exp(logp)
        q = 1.0 - p
        w = weights[y]
        # p = 1 (q = 0): the loss is 0 and so is its gradient (log p = 0), for any γ > 0
        mod = 1.0 if gamma == 0.0 else (power(q, gamma) if q > 0.0 else 0.0)
        loss[b, i] = -w * mod * logp
        if want_grad:
            dmod = -gamma * power(q, gamma - 1.0) * p if (gamma != 0.0 and q > 0.0) else 0.0
            dl = -w * (mod + logp * dmod)
            for c in range(c_n):
                pc = math.exp(x[b, c, i] - top) / total
                grad[b, c, i] = dl * ((1.0 if c == y else 0.0) - pc)
    return loss, grad


def pixel_losses(fn, logits, labels, ignore_index, table_name, table, gamma, want_grad, scalar_alpha=False):
    """Validated inputs -> (x, valid, per-pixel loss (B, H, W), per-pixel grad (B, C, H, W), weights).

    The gradient is None unless ``want_grad``.
    """
    x, lab, valid, c = segmentation_inputs(fn, "logits", logits, labels, ignore_index)
    if scalar_alpha and np.isscalar(table):  # focal's scalar alpha: [α, 1-α, 1-α, ...]
        w = np.where(np.arange(c) == 0, float(table), 1.0 - float(table))
    else:
        w = class_table(fn, table_name, table, c)
    b = x.shape[0]
    safe = np.where(valid, lab, 0)
    loss, g = softmax_nll(x.reshape(b, c, -1), safe.reshape(b, -1), valid.reshape(b, -1), w, float(gamma), want_grad)
    return x, valid, loss.reshape(valid.shape), g.reshape(x.shape) if want_grad else None, w[safe] * valid


def cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    ignore_index: int | None = 255,
    weight: Sequence[float] | None = None,
    reduction: Reduction = "mean",
    grad: bool = False,
) -> RefResult:
    """``-w_y log softmax(x)_y`` per pixel; 'mean' is ``Σ w_y nll / Σ w_y`` over valid pixels (0 if none).

    logits (B, C, H, W), labels (B, H, W). Returns the loss, or ``(loss, d/d logits)``.
    """
    fn = "cross_entropy"
    x, valid, loss, g, w = pixel_losses(fn, logits, labels, ignore_index, "weight", weight, 0.0, grad)
    if reduction == "mean":
        total = w.sum()
        value = float(loss.sum() / total) if total > 0 else 0.0
        scale = 1.0 / total if total > 0 else 0.0
    else:
        value, scale = reduce(loss, reduction, fn)
    if grad:
        g *= scale
    return (value, g) if grad else value


def binary_xloss(
    logits: ArrayLike,
    labels: ArrayLike,
    ignore_index: int | None = None,
    grad: bool = False,
) -> RefResult:
    """Mean over valid pixels of ``max(x, 0) - x y + log(1 + exp(-|x|))`` (0 if none).

    logits (B, H, W), labels (B, H, W) in {0, 1} or ignore. Gradient ``(σ(x) - y) / n`` on valid pixels.
    """
    fn = "binary_xloss"
    x, lab, valid, _ = segmentation_inputs(fn, "logits", logits, labels, ignore_index, binary=True)
    n = int(valid.sum())
    total, g = bce_sum(x.reshape(-1), lab.reshape(-1), valid.reshape(-1), 1.0 / max(n, 1), grad)
    value = total / n if n else 0.0
    return (value, g.reshape(x.shape)) if grad else value


@njit(cache=True, parallel=True)
def bce_sum(x, labels, valid, scale, want_grad):
    """Flat x, labels, valid -> (Σ BCE over valid elements, ``scale (σ(x) - y)`` on valid elements).

    The gradient is an empty array unless ``want_grad``.
    """
    n = x.shape[0]
    grad = np.zeros(n if want_grad else 0)
    total = 0.0
    for i in prange(n):
        if valid[i]:
            xi = x[i]
            y = 1.0 if labels[i] == 1 else 0.0
            total += max(xi, 0.0) - xi * y + math.log1p(math.exp(-abs(xi)))
            if want_grad:
                grad[i] = scale * (0.5 * (1.0 + math.tanh(0.5 * xi)) - y)
    return total, grad


def ce_dice(
    logits: ArrayLike,
    labels: ArrayLike,
    smooth: float = 1.0,
    ignore_index: int | None = 255,
    weight: Sequence[float] | None = None,
    grad: bool = False,
) -> RefResult:
    """``cross_entropy(ignore_index, weight) + dice(smooth, ignore_index)``."""
    _, _, _, c = segmentation_inputs("ce_dice", "logits", logits, labels, ignore_index)  # errors name ce_dice
    class_table("ce_dice", "weight", weight, c)
    if not grad:
        return cross_entropy(logits, labels, ignore_index, weight) + dice(logits, labels, smooth, ignore_index)
    v1, g1 = cross_entropy(logits, labels, ignore_index, weight, grad=True)
    v2, g2 = dice(logits, labels, smooth, ignore_index, grad=True)
    return v1 + v2, g1 + g2
