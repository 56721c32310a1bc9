"""Reference Dice losses, float64, with analytic gradients.

A Dice score ``D = N / M`` with ``N = 2 Σ p t + s`` and ``M = Σ p + Σ t + s`` (``Σ p² + Σ t²``
squared) has ``dD/dp = (2 t M - N dM/dp) / M²``, ``dM/dp = 1`` (``2p`` squared); masked pixels
are left out of the sums, and the softmax is chained at the end.
"""

from __future__ import annotations

import numpy as np

from lossgraph._checks import check_shapes

from ._util import as_f64, one_hot, segmentation_inputs, sigmoid, softmax, softmax_backward


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


def dice(logits, labels, smooth: float = 1.0, ignore_index: int | None = None, squared: bool = False,
         per_class: bool = False, grad: bool = False):
    """Multi-class Dice loss of ``softmax(logits)`` against one-hot labels, over the whole batch.

    Global: ``1 - D`` with every class and pixel pooled (0 when no pixel is valid). ``per_class``:
    mean over the C classes of ``1 - D_c``, 0 for classes absent from the valid labels.
    logits (B, C, H, W), labels (B, H, W). Returns the loss, or ``(loss, d/d logits)``.
    """
    fn = "dice"
    x, lab, valid, c = segmentation_inputs(fn, "logits", logits, labels, ignore_index)
    m = valid[:, None].astype(np.float64)
    soft = softmax(x, 1)
    p = soft * m
    t = one_hot(lab, c) * m
    axes = (0, 2, 3) if per_class else (0, 1, 2, 3)
    score, g = _dice_score(p, t, smooth, squared, axes)
    if per_class:
        present = t.sum(axes, keepdims=True) > 0
        value = float(np.where(present, 1.0 - score, 0.0).sum() / c)
        g = -np.where(present, g, 0.0) / c
    elif valid.any():
        value = float(1.0 - score.item())
        g = -g
    else:
        value, g = 0.0, np.zeros_like(g)
    if not grad:
        return value
    return value, softmax_backward(soft, g * m, 1)


def soft_dice(probas, targets, smooth: float = 1.0, from_logits: bool = False, grad: bool = False):
    """``1 - 2 (Σ p t + s) / (Σ p² + Σ t² + s)`` over all elements (the source's formula).

    The term ``(Σ p t + s) / (Σ p² + Σ t² + s)`` is taken as 0 when its denominator is 0.
    Returns the loss, or ``(loss, d/d probas)`` (d/d logits with ``from_logits``).
    """
    fn = "soft_dice"
    x = as_f64(fn, "probas", probas)
    t = as_f64(fn, "targets", targets)
    check_shapes(fn, [("probas", x, tuple(f"d{i}" for i in range(x.ndim))), ("targets", t, None)])
    p = sigmoid(x) if from_logits else x
    num = (p * t).sum() + smooth
    den = (p * p).sum() + (t * t).sum() + smooth
    if den == 0:
        return (1.0, np.zeros_like(x)) if grad else 1.0
    value = float(1.0 - 2.0 * num / den)
    if not grad:
        return value
    g = -2.0 * (t * den - num * 2.0 * p) / den**2
    return value, (g * p * (1.0 - p) if from_logits else g)
