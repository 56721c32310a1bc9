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

import numpy as np
from numba import njit

from lossgraph._checks import check_choice
from lossgraph._levels import check_levels

from ._util import as_f64, as_labels, check_labels, sigmoid
from .focal import sigmoid_focal


@njit(cache=True)
def _tie(p, q, smaller):
    """d min(p, q)/dp (``smaller``) or d max(p, q)/dp; 0.5 on a tie."""
    if p == q:
        return 0.5
    return 1.0 if (p < q) == smaller else 0.0


@njit(cache=True)
def _ltrb_loss(p, q, giou, g):
    """Regression loss of one location (ltrb pred p, target q); writes d loss / d p into g."""
    lo = np.empty(4)
    hi = np.empty(4)
    dlo = np.empty(4)
    dhi = np.empty(4)
    for k in range(4):
        lo[k], hi[k] = min(p[k], q[k]), max(p[k], q[k])
        dlo[k], dhi[k] = _tie(p[k], q[k], True), _tie(p[k], q[k], False)
    sw, sh = lo[0] + lo[2], lo[1] + lo[3]
    ow, oh = max(sw, 0.0), max(sh, 0.0)
    cw, ch = (1.0 if sw >= 0 else 0.0), (1.0 if sh >= 0 else 0.0)  # clamp's gradient passes at 0
    overlap = ow * oh
    d_over = np.array([oh * cw * dlo[0], ow * ch * dlo[1], oh * cw * dlo[2], ow * ch * dlo[3]])
    pw, ph = p[0] + p[2], p[1] + p[3]
    union = pw * ph + (q[0] + q[2]) * (q[1] + q[3]) - overlap
    d_union = np.array([ph, pw, ph, pw]) - d_over
    iou = 0.0
    d_iou = np.zeros(4)
    if union > 0:
        iou = overlap / union
        d_iou = (d_over * union - overlap * d_union) / union**2
    if not giou:
        if iou >= 1e-6:
            for k in range(4):
                g[k] = -d_iou[k] / iou
            return -math.log(iou)
        g[:] = 0.0
        return -math.log(1e-6)
    gw_, gh_ = hi[0] + hi[2], hi[1] + hi[3]
    gw, gh = max(gw_, 0.0), max(gh_, 0.0)
    ew, eh = (1.0 if gw_ >= 0 else 0.0), (1.0 if gh_ >= 0 else 0.0)
    area = gw * gh
    d_area = np.array([gh * ew * dhi[0], gw * eh * dhi[1], gh * ew * dhi[2], gw * eh * dhi[3]])
    den = max(area, 1e-10)
    d_den = d_area if area >= 1e-10 else np.zeros(4)
    for k in range(4):
        g[k] = -d_iou[k] + ((d_area[k] - d_union[k]) * den - (area - union) * d_den[k]) / den**2
    return 1.0 - iou + (area - union) / den


@njit(cache=True)
def _reg(pred, target, pos, giou):
    """Per-image sums over positives of the regression loss, and d(sum)/d pred: (B,), (B, N, 4)."""
    b_, n_ = pos.shape
    sums = np.zeros(b_)
    grad = np.zeros(pred.shape)
    for b in range(b_):
        for n in range(n_):
            if pos[b, n]:
                sums[b] += _ltrb_loss(pred[b, n], target[b, n], giou, grad[b, n])
    return sums, grad


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


def fcos(*inputs, levels=5, alpha=0.25, gamma=2.0, reg_loss="giou", add_centerness=True, grad=False):
    """FCOS loss of ``3·levels`` level arrays (cls, centerness, regression) and the three targets.

    Returns ``{"cls", "cnt", "reg", "total"}``; with ``grad``: also ``{input name: d total / d input}``
    for every level input.
    """
    fn = "fcos"
    check_choice(fn, "reg_loss", reg_loss, ("giou", "iou"))
    if len(inputs) != 3 * levels + 3:
        raise ValueError(f"{fn}: takes {3 * levels + 3} inputs for {levels} levels; got {len(inputs)}")
    names = [f"{h}_{k}" for h in ("cls", "cnt", "reg") for k in range(levels)]
    arrays = [as_f64(fn, n, x) for n, x in zip(names, inputs)]
    cls_l, cnt_l, reg_l = arrays[:levels], arrays[levels:2 * levels], arrays[2 * levels:]
    y = as_labels(fn, "cls_targets", inputs[-3])
    t = as_f64(fn, "cnt_targets", inputs[-2])
    q = as_f64(fn, "reg_targets", inputs[-1])
    check_levels(fn, cls_l, cnt_l, reg_l, y, t, q)
    c = cls_l[0].shape[1]
    check_labels(fn, "cls_targets", y, c + 1, None)

    x = _flatten(cls_l)  # (B, N, C)
    batch = x.shape[0]
    onehot = (y == np.arange(1, c + 1)).astype(np.float64)  # (B, N, 1) vs (C,) -> (B, N, C)
    pos = t[..., 0] > -1
    inv = 1.0 / np.maximum(pos.sum(1), 1) / batch  # d(batch mean of sum_b / n_b) / d(sum_b)
    focal, d_focal = sigmoid_focal(x, onehot, alpha, gamma, "none", grad=True)
    z = _flatten(cnt_l)[..., 0]
    bce = np.maximum(z, 0) - z * t[..., 0] + np.log1p(np.exp(-np.abs(z)))
    reg_sums, d_reg = _reg(np.ascontiguousarray(_flatten(reg_l)), q, pos, reg_loss == "giou")

    out = {
        "cls": float((focal.sum((1, 2)) * inv).sum()),
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
