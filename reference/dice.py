"""Reference Dice losses, float64, with analytic gradients.

A Dice score ``D = N / M`` with ``N = 2 Σ p t + s`` and ``M = Σ p + Σ t + s`` (``Σ p² + Σ t²``
squared) has ``dD/dp = (2 t M - N dM/dp) / M²``, ``dM/dp = 1`` (``2p`` squared); masked pixels
are left out of the sums, and the softmax is chained at the end. The multi-class sums and the
gradient are Numba kernels over pixels (one softmax per pixel, no one-hot or probability arrays).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from lossgraph._checks import check_shapes, check_unit_interval

from ._util import as_float, parallel_chunks, segmentation_inputs, sigmoid


def _dice_score(p, t, smooth, squared, axes):
    """Score ``N / M`` over ``axes`` (0 where ``M == 0``) and its gradient w.r.t. ``p``."""
    num = 2.0 * (p * t).sum(axes, keepdims=True) + smooth
    den = ((p * p) if squared else p).sum(axes, keepdims=True) + t.sum(axes, keepdims=True) + smooth
    ok = den != 0
    safe = np.where(ok, den, 1.0)
    score = np.where(ok, num / safe, 0.0)
    d_den = 2.0 * p if squared else 1.0
    grad = np.where(ok, (2.0 * t * safe - num * d_den) / safe**2, 0.0)
    return score, grad


@njit(cache=True)
def _softmax_at(x, b, i, out):
    """``out[c] = softmax(x[b, :, i])_c``."""
    c_n = x.shape[1]
    top = x[b, 0, i]
    for c in range(1, c_n):
        top = max(top, x[b, c, i])
    total = 0.0
    for c in range(c_n):
        out[c] = math.exp(x[b, c, i] - top)
        total += out[c]
    for c in range(c_n):
        out[c] /= total


@njit(cache=True, parallel=True)
def softmax_class_sums(x, labels, valid, squared, chunks):
    """x (B, C, P), labels/valid (B, P) -> (3, C): ``Σ p t``, ``Σ p`` (``Σ p²`` squared), ``Σ t``.

    Sums run over valid pixels, ``p = softmax(x)`` over C, ``t`` one-hot; ``chunks`` pixel ranges
    run in parallel, each into its own row of partial sums.
    """
    b_n, c_n, p_n = x.shape
    n = b_n * p_n
    parts = np.zeros((chunks, 3, c_n))
    for j in prange(chunks):
        p = np.empty(c_n)
        for k in range(n * j // chunks, n * (j + 1) // chunks):
            b = k // p_n
            i = k - b * p_n
            if not valid[b, i]:
                continue
            _softmax_at(x, b, i, p)
            y = labels[b, i]
            for c in range(c_n):
                parts[j, 1, c] += p[c] * p[c] if squared else p[c]
            parts[j, 0, y] += p[y]
            parts[j, 2, y] += 1.0
    return parts.sum(axis=0)


@njit(cache=True, parallel=True)
def softmax_dice_grad(x, labels, valid, coef_t, coef_m, squared):
    """Chain ``dL/dp_c = coef_t[c] t_c + coef_m[c] dM/dp_c`` through the softmax, per valid pixel."""
    b_n, c_n, p_n = x.shape
    grad = np.zeros(x.shape)
    for k in prange(b_n * p_n):
        b = k // p_n
        i = k - b * p_n
        if not valid[b, i]:
            continue
        p = grad[b, :, i]  # the softmax is kept in the output column, then overwritten
        _softmax_at(x, b, i, p)
        y = labels[b, i]
        dot = 0.0
        for c in range(c_n):
            g = coef_m[c] * (2.0 * p[c] if squared else 1.0) + (coef_t[c] if c == y else 0.0)
            dot += p[c] * g
        for c in range(c_n):
            g = coef_m[c] * (2.0 * p[c] if squared else 1.0) + (coef_t[c] if c == y else 0.0)
            p[c] = p[c] * (g - dot)
    return grad


def dice(logits, labels, smooth: float = 1.0, ignore_index: int | None = None, squared: bool = False,
         per_class: bool = False, grad: bool = False):
    """Multi-class Dice loss of ``softmax(logits)`` against one-hot labels, over the whole batch.

    Global: ``1 - D`` with every class and pixel pooled (0 when no pixel is valid). ``per_class``:
    mean over the C classes of ``1 - D_c``, 0 for classes absent from the valid labels.
    logits (B, C, H, W), labels (B, H, W). Returns the loss, or ``(loss, d/d logits)``.

    Per group (a class, or everything pooled) ``D = N / M``, ``N = 2 Σ p t + s``,
    ``M = Σ p + Σ t + s``; ``dD/dp = 2 t / M - N / M² dM/dp``.
    """
    fn = "dice"
    x, lab, valid, c = segmentation_inputs(fn, "logits", logits, labels, ignore_index)
    b = x.shape[0]
    x3, lab2, valid2 = x.reshape(b, c, -1), np.where(valid, lab, 0).reshape(b, -1), valid.reshape(b, -1)
    chunks = parallel_chunks(lab2.size)
    pt, pm, t = softmax_class_sums(x3, lab2, valid2, squared, chunks)
    if not per_class:
        pt, pm, t = pt.sum(keepdims=True), pm.sum(keepdims=True), t.sum(keepdims=True)
    num = 2.0 * pt + smooth
    den = pm + t + smooth
    ok = den != 0
    safe = np.where(ok, den, 1.0)
    score = np.where(ok, num / safe, 0.0)
    if per_class:
        weight = (t > 0) / c  # absent classes count 0 and have no gradient
        value = float((weight * (1.0 - score)).sum())
    else:
        weight = np.ones(1) * valid.any()
        value = float(1.0 - score[0]) if valid.any() else 0.0
    if not grad:
        return value
    coef_t = np.where(ok, -2.0 * weight / safe, 0.0) * np.ones(c)
    coef_m = np.where(ok, weight * num / safe**2, 0.0) * np.ones(c)
    return value, softmax_dice_grad(x3, lab2, valid2, coef_t, coef_m, squared).reshape(x.shape)


@njit(cache=True, parallel=True)
def soft_dice_sums(x, t, from_logits, chunks):
    """Flat x, t (float32 or float64) -> ``(Σ p t, Σ p², Σ t²)`` in float64, ``p = σ(x)`` with
    ``from_logits``; ``chunks`` ranges run in parallel, each into its own partial sums."""
    n = x.shape[0]
    parts = np.zeros((chunks, 3))
    for j in prange(chunks):
        for k in range(n * j // chunks, n * (j + 1) // chunks):
            p = np.float64(x[k])
            if from_logits:
                p = 0.5 * (1.0 + math.tanh(0.5 * p))
            tk = np.float64(t[k])
            parts[j, 0] += p * tk
            parts[j, 1] += p * p
            parts[j, 2] += tk * tk
    return parts.sum(axis=0)


def soft_dice(probas, targets, smooth: float = 1.0, from_logits: bool = False, grad: bool = False):
    """``1 - 2 (Σ p t + s) / (Σ p² + Σ t² + s)`` over all elements (the source's formula).

    The term ``(Σ p t + s) / (Σ p² + Σ t² + s)`` is taken as 0 when its denominator is 0.
    Returns the loss, or ``(loss, d/d probas)`` (d/d logits with ``from_logits``).
    """
    fn = "soft_dice"
    x = as_float(fn, "probas", probas)
    t = as_float(fn, "targets", targets)
    check_shapes(fn, [("probas", x, tuple(f"d{i}" for i in range(x.ndim))), ("targets", t, None)])
    check_unit_interval(fn, "targets", t)
    if not from_logits:
        check_unit_interval(fn, "probas", x, "probabilities in [0, 1]")
    chunks = parallel_chunks(x.size)
    pt, pp, tt = soft_dice_sums(x.reshape(-1), t.reshape(-1), from_logits, chunks)
    num = pt + smooth
    den = pp + tt + smooth
    if den == 0:
        return (1.0, np.zeros(x.shape)) if grad else 1.0
    value = float(1.0 - 2.0 * num / den)
    if not grad:
        return value
    x, t = x.astype(np.float64), t.astype(np.float64)
    p = sigmoid(x) if from_logits else x
    g = -2.0 * (t * den - num * 2.0 * p) / den**2
    return value, (g * p * (1.0 - p) if from_logits else g)
