"""Reference IoU / GIoU / DIoU / CIoU of xyxy boxes in float64, with analytic gradients.

Per pair of boxes ``a = (x1, y1, x2, y2)``, ``b = (u1, v1, u2, v2)``:
``I = iw·ih`` if ``iw = min(x2,u2) - max(x1,u1) > 0`` and ``ih > 0`` else 0; ``U = |a| + |b| - I``;
``iou = I / (U + ε)``; ``giou = iou - (C - U) / (C + ε)`` with ``C = cw·ch`` the enclosing box;
``diou = iou - ρ² / (cw² + ch² + ε)``; ``ciou = diou - α v`` with ``v = 4/π² (atan2(w_b, h_b) -
atan2(w_a, h_a))²`` and ``α = v / (1 - iou + v + ε)`` (0 where that denominator is not positive)
a constant for the gradient.

One scalar function gives a pair's value and, by a hand-written reverse pass over those formulas,
its gradients with respect to both boxes. Subgradients follow torch: ``min``/``max`` split the
gradient evenly on ties; the intersection has no gradient where ``iw <= 0`` or ``ih <= 0``; the
aspect term has none for a box with ``w = h = 0``. With ``ε = 0`` a pair with ``U = 0`` gives NaN, as
in NumPy and torch. Pairs run in parallel; only a gradient asked for is computed.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from lossgraph._checks import check_choice, check_shapes
from lossgraph._types import ArrayLike, BoxKind, Output, Reduction, RefResult

from ._util import as_f64, reduce

KINDS = ("iou", "giou", "diou", "ciou")
IOU, GIOU, DIOU, CIOU = range(len(KINDS))
#: rows of boxes1 per parallel block of the pairwise kernel; each block sums its own boxes2 gradient
ROW_BLOCK = 256


@njit(cache=True)
def _dmin(p, q):
    """d min(p, q) / dp (0.5 on a tie)."""
    return 1.0 if p < q else (0.5 if p == q else 0.0)


@njit(cache=True)
def _dmax(p, q):
    """d max(p, q) / dp (0.5 on a tie)."""
    return 1.0 if p > q else (0.5 if p == q else 0.0)


@njit(cache=True, error_model="numpy", inline="always")
def _pair(a, i, b, j, kind, eps, want_grad):
    """``(value, d value / d a[i], d value / d b[j])`` of ``kind`` for boxes a[i], b[j] (rows of xyxy).

    The gradients are 4-tuples, zeros unless ``want_grad``. Each ``g_q`` is d value / d q.
    """
    x1, y1, x2, y2 = a[i, 0], a[i, 1], a[i, 2], a[i, 3]
    u1, v1, u2, v2 = b[j, 0], b[j, 1], b[j, 2], b[j, 3]
    wa, ha, wb, hb = x2 - x1, y2 - y1, u2 - u1, v2 - v1
    iw = min(x2, u2) - max(x1, u1)
    ih = min(y2, v2) - max(y1, v1)
    overlap = iw > 0 and ih > 0
    inter = iw * ih if overlap else 0.0
    union = wa * ha + wb * hb - inter
    den = union + eps
    value = inter / den
    g_inter, g_union = 1.0 / den, -inter / (den * den)
    g_cw = g_ch = g_dx = g_dy = g_wa = g_ha = g_wb = g_hb = 0.0
    cw = max(x2, u2) - min(x1, u1)
    ch = max(y2, v2) - min(y1, v1)
    if kind == GIOU:
        area = cw * ch
        value -= (area - union) / (area + eps)
        g_area = -(union + eps) / (area + eps) ** 2
        g_union += 1.0 / (area + eps)
        g_cw, g_ch = g_area * ch, g_area * cw
    elif kind != IOU:
        dx = (x1 + x2 - u1 - u2) / 2  # centre offsets
        dy = (y1 + y2 - v1 - v2) / 2
        rho2 = dx * dx + dy * dy
        diag = cw * cw + ch * ch + eps
        iou = value
        value -= rho2 / diag
        g_dx, g_dy = -2 * dx / diag, -2 * dy / diag
        g_diag = rho2 / (diag * diag)
        g_cw, g_ch = 2 * cw * g_diag, 2 * ch * g_diag
        if kind == CIOU:
            diff = math.atan2(wb, hb) - math.atan2(wa, ha)
            v = 4 / math.pi**2 * diff * diff
            den_a = 1 - iou + v + eps
            alpha = v / den_a if den_a > 0 else 0.0
            value -= alpha * v
            # d θ / d w = h / r², d θ / d h = -w / r² for θ = atan2(w, h) (0 at the origin)
            g_diff = -alpha * 8 / math.pi**2 * diff
            ra, rb = wa * wa + ha * ha, wb * wb + hb * hb
            if ra > 0:
                g_wa, g_ha = -g_diff * ha / ra, g_diff * wa / ra
            if rb > 0:
                g_wb, g_hb = g_diff * hb / rb, -g_diff * wb / rb
    zero = (0.0, 0.0, 0.0, 0.0)
    if not want_grad:
        return value, zero, zero
    g_wa += g_union * ha
    g_ha += g_union * wa
    g_wb += g_union * hb
    g_hb += g_union * wb
    g_inter -= g_union
    g_iw = g_inter * ih if overlap else 0.0
    g_ih = g_inter * iw if overlap else 0.0
    ga = (
        -g_wa - g_iw * _dmax(x1, u1) - g_cw * _dmin(x1, u1) + g_dx / 2,
        -g_ha - g_ih * _dmax(y1, v1) - g_ch * _dmin(y1, v1) + g_dy / 2,
        g_wa + g_iw * _dmin(x2, u2) + g_cw * _dmax(x2, u2) + g_dx / 2,
        g_ha + g_ih * _dmin(y2, v2) + g_ch * _dmax(y2, v2) + g_dy / 2,
    )
    gb = (
        -g_wb - g_iw * _dmax(u1, x1) - g_cw * _dmin(u1, x1) - g_dx / 2,
        -g_hb - g_ih * _dmax(v1, y1) - g_ch * _dmin(v1, y1) - g_dy / 2,
        g_wb + g_iw * _dmin(u2, x2) + g_cw * _dmax(u2, x2) - g_dx / 2,
        g_hb + g_ih * _dmin(v2, y2) + g_ch * _dmax(v2, y2) - g_dy / 2,
    )
    return value, ga, gb


@njit(cache=True, parallel=True, error_model="numpy")
def _aligned(a, b, kind, eps, want_grad):
    """Values (N,) of pairs ``(a[i], b[i])`` and their gradients (empty (0, 4) unless ``want_grad``)."""
    n = a.shape[0]
    out = np.empty(n)
    ga = np.zeros((n if want_grad else 0, 4))
    gb = np.zeros((n if want_grad else 0, 4))
    for i in prange(n):
        out[i], da, db = _pair(a, i, b, i, kind, eps, want_grad)
        if want_grad:
            for k in range(4):
                ga[i, k] = da[k]
                gb[i, k] = db[k]
    return out, ga, gb


@njit(cache=True, parallel=True, error_model="numpy")
def _pairwise(a, b, kind, eps, want_grad):
    """Values (N, M) and the gradients of their sum w.r.t. a and b (empty unless ``want_grad``).

    Blocks of rows run in parallel; each writes its rows of the values and of the a-gradient, and
    its own partial b-gradient, summed at the end.
    """
    n, m = a.shape[0], b.shape[0]
    out = np.empty((n, m))
    blocks = (n + ROW_BLOCK - 1) // ROW_BLOCK
    ga = np.zeros((n if want_grad else 0, 4))
    gb_part = np.zeros((blocks if want_grad else 0, m, 4))
    for blk in prange(blocks):
        for i in range(blk * ROW_BLOCK, min(n, (blk + 1) * ROW_BLOCK)):
            for j in range(m):
                out[i, j], da, db = _pair(a, i, b, j, kind, eps, want_grad)
                if want_grad:
                    for k in range(4):
                        ga[i, k] += da[k]
                        gb_part[blk, j, k] += db[k]
    return out, ga, gb_part.sum(axis=0)


def box_loss(
    kind: BoxKind,
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    pairwise: bool = False,
    output: Output = "loss",
    reduction: Reduction = "none",
    eps: float = 1e-7,
    grad: bool = False,
    fn: str | None = None,
) -> RefResult:
    """Value or loss (``1 - value``) of ``kind`` for aligned ``(N,4)+(N,4)`` or pairwise ``(N,4)x(M,4)``
    boxes, reduced; with ``grad``: ``(value, {"boxes1": ..., "boxes2": ...})`` of the (summed) result."""
    fn = fn or kind
    check_choice(fn, "output", output, ("loss", "value"))
    a = as_f64(fn, "boxes1", boxes1)
    b = as_f64(fn, "boxes2", boxes2)
    check_shapes(fn, [("boxes1", a, ("N", 4)), ("boxes2", b, ("M" if pairwise else "N", 4))], allow_empty=("N", "M"))
    kernel = _pairwise if pairwise else _aligned
    values, ga, gb = kernel(a, b, KINDS.index(kind), eps, bool(grad))
    result, scale = reduce(1 - values if output == "loss" else values, reduction, fn)
    if not grad:
        return result
    scale = -scale if output == "loss" else scale
    return result, {"boxes1": scale * ga, "boxes2": scale * gb}


def box_iou(
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    pairwise: bool = False,
    output: Output = "loss",
    reduction: Reduction = "none",
    eps: float = 1e-7,
    grad: bool = False,
) -> RefResult:
    """IoU ``I / (U + ε)`` or ``1 - IoU``; see :func:`box_loss`."""
    return box_loss("iou", boxes1, boxes2, pairwise, output, reduction, eps, grad, fn="box_iou")


def giou(
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    pairwise: bool = False,
    output: Output = "loss",
    reduction: Reduction = "none",
    eps: float = 1e-7,
    grad: bool = False,
) -> RefResult:
    """Generalized IoU or ``1 - GIoU``; see :func:`box_loss`."""
    return box_loss("giou", boxes1, boxes2, pairwise, output, reduction, eps, grad)


def diou(
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    pairwise: bool = False,
    output: Output = "loss",
    reduction: Reduction = "none",
    eps: float = 1e-7,
    grad: bool = False,
) -> RefResult:
    """Distance IoU or ``1 - DIoU``; see :func:`box_loss`."""
    return box_loss("diou", boxes1, boxes2, pairwise, output, reduction, eps, grad)


def ciou(
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    pairwise: bool = False,
    output: Output = "loss",
    reduction: Reduction = "none",
    eps: float = 1e-7,
    grad: bool = False,
) -> RefResult:
    """Complete IoU or ``1 - CIoU``; see :func:`box_loss`."""
    return box_loss("ciou", boxes1, boxes2, pairwise, output, reduction, eps, grad)
