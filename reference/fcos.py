"""Reference FCOS loss in float64 with analytic gradients, from the formulas (no torch).

Per image ``b`` with positives ``P_b = {cnt_target > -1}`` and ``n_b = max(|P_b|, 1)``:
``cls_b = Σ_{n,c} FL(x_nc, [y_n = c + 1]) / n_b`` (sigmoid focal, every location),
``cnt_b = Σ_{P_b} BCE(z_n, t_n) / n_b``, ``reg_b = Σ_{P_b} L(p_n, q_n) / n_b`` with, on ltrb distances,
overlap ``(min l + min r)⁺ (min t + min b)⁺``, union ``U = |p| + |q| - overlap``, ``IoU = overlap / U``
(0 if U <= 0) and ``L = -log max(IoU, 1e-6)`` or ``1 - IoU + (G - U) / max(G, 1e-10)`` with the
enclosing area ``G = (max l + max r)⁺ (max t + max b)⁺``. Outputs are batch means;
``total = cls + reg (+ cnt)``. Gradients are those of ``total`` with respect to every level input;
subgradients follow torch (``min``/``max`` ties split evenly, ``clamp`` passes at the bound).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numba import njit, prange

from lossgraph._checks import InputError, check_choice, check_unit_interval
from lossgraph._levels import check_levels
from lossgraph._types import ArrayLike, RefResult

from ._util import as_f64, as_labels, check_labels, sigmoid
from .focal import sigmoid_focal


@njit(cache=True)
def _tie(p, q, smaller):
    """d min(p, q)/dp (``smaller``) or d max(p, q)/dp; 0.5 on a tie."""
    if p == q:
        return 0.5
    return 1.0 if (p < q) == smaller else 0.0


@njit(cache=True, inline="always")
def _ltrb_loss(pred, target, b, n, giou, want_grad, grad):
    """Regression loss of location ``(b, n)`` (ltrb rows of 4); with ``want_grad`` writes d loss / d
    pred into ``grad[b, n]``. Scalars only: no arrays per location."""
    p, q = pred[b, n], target[b, n]
    sw = min(p[0], q[0]) + min(p[2], q[2])
    sh = min(p[1], q[1]) + min(p[3], q[3])
    ow, oh = max(sw, 0.0), max(sh, 0.0)
    overlap = ow * oh
    pw, ph = p[0] + p[2], p[1] + p[3]
    union = pw * ph + (q[0] + q[2]) * (q[1] + q[3]) - overlap
    iou = overlap / union if union > 0 else 0.0
    gw_ = max(p[0], q[0]) + max(p[2], q[2])
    gh_ = max(p[1], q[1]) + max(p[3], q[3])
    gw, gh = max(gw_, 0.0), max(gh_, 0.0)
    area = gw * gh
    den = max(area, 1e-10)
    value = 1.0 - iou + (area - union) / den if giou else -math.log(max(iou, 1e-6))
    if not want_grad:
        return value
    cw, ch = (1.0 if sw >= 0 else 0.0), (1.0 if sh >= 0 else 0.0)  # clamp's gradient passes at 0
    ew, eh = (1.0 if gw_ >= 0 else 0.0), (1.0 if gh_ >= 0 else 0.0)
    for k in range(4):
        horizontal = k % 2 == 0  # l, r: the width; t, b: the height
        d_over = (oh * cw if horizontal else ow * ch) * _tie(p[k], q[k], True)
        d_union = (ph if horizontal else pw) - d_over
        d_iou = (d_over * union - overlap * d_union) / union**2 if union > 0 else 0.0
        if not giou:
            grad[b, n, k] = -d_iou / iou if iou >= 1e-6 else 0.0
        else:
            d_area = (gh * ew if horizontal else gw * eh) * _tie(p[k], q[k], False)
            d_den = d_area if area >= 1e-10 else 0.0
            grad[b, n, k] = -d_iou + ((d_area - d_union) * den - (area - union) * d_den) / den**2
    return value


@njit(cache=True, parallel=True)
def _reg(pred, target, pos, giou, want_grad):
    """Per-image sums over positives of the regression loss, and d(sum)/d pred (B, N, 4) (empty
    unless ``want_grad``); locations run in parallel, each writing its own gradient row."""
    b_, n_ = pos.shape
    values = np.zeros((b_, n_))
    grad = np.zeros(pred.shape if want_grad else (0, 0, 4))
    for k in prange(b_ * n_):
        b = k // n_
        n = k - b * n_
        if pos[b, n]:
            values[b, n] = _ltrb_loss(pred, target, b, n, giou, want_grad, grad)
    return values.sum(axis=1), grad


def _flatten(levels):
    """L arrays (B, K, h, w) -> (B, Σ h w, K)."""
    return np.concatenate([x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1) for x in levels], axis=1)


def _unflatten(flat, levels):
    """Inverse of :func:`_flatten`: split (B, N, K) back into arrays shaped like ``levels``."""
    out, start = [], 0
    for x in levels:
        b, k, h, w = x.shape
        out.append(np.ascontiguousarray(flat[:, start:start + h * w].transpose(0, 2, 1).reshape(b, k, h, w)))
        start += h * w
    return out


def fcos(
    *inputs: ArrayLike,
    levels: int = 5,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reg_loss: Literal["iou", "giou"] = "giou",
    add_centerness: bool = True,
    grad: bool = False,
) -> RefResult:
    """FCOS loss of ``3·levels`` level arrays (cls, centerness, regression) and the three targets.

    Returns ``{"cls", "cnt", "reg", "total"}``; with ``grad``: also ``{input name: d total / d input}``
    for every level input.
    """
    fn = "fcos"
    check_choice(fn, "reg_loss", reg_loss, ("giou", "iou"))
    if len(inputs) != 3 * levels + 3:
        raise InputError(f"{fn}: takes {3 * levels + 3} inputs for {levels} levels; got {len(inputs)}")
    names = [f"{h}_{k}" for h in ("cls", "cnt", "reg") for k in range(levels)]
    arrays = [as_f64(fn, n, x) for n, x in zip(names, inputs)]
    cls_l, cnt_l, reg_l = arrays[:levels], arrays[levels:2 * levels], arrays[2 * levels:]
    y = as_labels(fn, "cls_targets", inputs[-3], allow_float=True)
    t = as_f64(fn, "cnt_targets", inputs[-2])
    q = as_f64(fn, "reg_targets", inputs[-1])
    check_levels(fn, cls_l, cnt_l, reg_l, y, t, q)
    c = cls_l[0].shape[1]
    check_labels(fn, "cls_targets", y, c + 1, None)
    check_unit_interval(fn, "cnt_targets", t, extra=-1.0)

    x = _flatten(cls_l)  # (B, N, C)
    batch = x.shape[0]
    onehot = (y == np.arange(1, c + 1)).astype(np.float64)  # (B, N, 1) vs (C,) -> (B, N, C)
    pos = t[..., 0] > -1
    inv = 1.0 / np.maximum(pos.sum(1), 1) / batch  # d(batch mean of sum_b / n_b) / d(sum_b)
    if grad:
        focal, d_focal = sigmoid_focal(x, onehot, alpha, gamma, "none", grad=True)
        cls_sums = focal.sum((1, 2))
    else:  # per-image sums only: no per-element loss or gradient arrays
        cls_sums = np.array([sigmoid_focal(xb, ob, alpha, gamma, "sum") for xb, ob in zip(x, onehot)])
    z = _flatten(cnt_l)[..., 0]
    bce = np.maximum(z, 0) - z * t[..., 0] + np.log1p(np.exp(-np.abs(z)))
    reg_sums, d_reg = _reg(np.ascontiguousarray(_flatten(reg_l)), q, pos, reg_loss == "giou", grad)

    out = {
        "cls": float((cls_sums * inv).sum()),
        "cnt": float(((bce * pos).sum(1) * inv).sum()),
        "reg": float((reg_sums * inv).sum()),
    }
    out["total"] = out["cls"] + out["reg"] + (out["cnt"] if add_centerness else 0.0)
    if not grad:
        return out
    w = inv[:, None, None]
    d_cnt = (sigmoid(z) - t[..., 0]) * pos * (1.0 if add_centerness else 0.0)
    grads = [*_unflatten(d_focal * w, cls_l), *_unflatten(d_cnt[..., None] * w, cnt_l), *_unflatten(d_reg * w, reg_l)]
    return out, dict(zip(names, grads))
