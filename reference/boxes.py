"""Reference IoU / GIoU / DIoU / CIoU of xyxy boxes in float64, with analytic gradients.

Per pair of boxes ``a = (x1, y1, x2, y2)``, ``b = (u1, v1, u2, v2)``:
``I = iw·ih`` if ``iw = min(x2,u2) - max(x1,u1) > 0`` and ``ih > 0`` else 0; ``U = |a| + |b| - I``;
``iou = I / (U + ε)``; ``giou = iou - (C - U) / (C + ε)`` with ``C = cw·ch`` the enclosing box;
``diou = iou - ρ² / (cw² + ch² + ε)``; ``ciou = diou - α v`` with ``v = 4/π² (atan2(w_b, h_b) -
atan2(w_a, h_a))²`` and ``α = v / (1 - iou + v + ε)`` a constant for the gradient.

Every value is symmetric in ``(a, b)``, so the gradient with respect to ``b`` is the kernel's gradient
with the boxes swapped. Subgradients follow torch: ``min``/``max`` split the gradient evenly on ties.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from lossgraph._checks import check_choice, check_shapes

from ._util import as_f64, reduce

KINDS = ("iou", "giou", "diou", "ciou")


@njit(cache=True)
def _dmin(p, q):
    """d min(p, q) / dp (0.5 on a tie)."""
    return 1.0 if p < q else (0.5 if p == q else 0.0)


@njit(cache=True)
def _dmax(p, q):
    """d max(p, q) / dp (0.5 on a tie)."""
    return 1.0 if p > q else (0.5 if p == q else 0.0)


@njit(cache=True)
def _pair(a, b, kind, eps, g):
    """Value of ``kind`` (0 iou, 1 giou, 2 diou, 3 ciou) for boxes a, b; writes d value / d a into g."""
    x1, y1, x2, y2 = a[0], a[1], a[2], a[3]
    u1, v1, u2, v2 = b[0], b[1], b[2], b[3]
    # intersection: d iw / d (x1, x2), d ih / d (y1, y2)
    iw = min(x2, u2) - max(x1, u1)
    ih = min(y2, v2) - max(y1, v1)
    diw_x1, diw_x2 = -_dmax(x1, u1), _dmin(x2, u2)
    dih_y1, dih_y2 = -_dmax(y1, v1), _dmin(y2, v2)
    inter = 0.0
    dI = np.zeros(4)
    if iw > 0 and ih > 0:
        inter = iw * ih
        dI[0], dI[2] = ih * diw_x1, ih * diw_x2
        dI[1], dI[3] = iw * dih_y1, iw * dih_y2
    wa, ha = x2 - x1, y2 - y1
    union = wa * ha + (u2 - u1) * (v2 - v1) - inter
    dU = np.array([-ha, -wa, ha, wa]) - dI
    den = union + eps
    iou = inter / den
    for k in range(4):
        g[k] = dI[k] / den - inter / den**2 * dU[k]
    if kind == 0:
        return iou
    cw = max(x2, u2) - min(x1, u1)
    ch = max(y2, v2) - min(y1, v1)
    dcw = np.array([-_dmin(x1, u1), 0.0, _dmax(x2, u2), 0.0])
    dch = np.array([0.0, -_dmin(y1, v1), 0.0, _dmax(y2, v2)])
    if kind == 1:
        area = cw * ch
        dA = ch * dcw + cw * dch
        value = iou - (area - union) / (area + eps)
        for k in range(4):
            g[k] -= ((dA[k] - dU[k]) * (area + eps) - (area - union) * dA[k]) / (area + eps) ** 2
        return value
    dx = (x1 + x2 - u1 - u2) / 2
    dy = (y1 + y2 - v1 - v2) / 2
    rho2 = dx * dx + dy * dy
    diag = cw * cw + ch * ch + eps
    drho = np.array([dx, dy, dx, dy])
    ddiag = 2 * cw * dcw + 2 * ch * dch
    value = iou - rho2 / diag
    for k in range(4):
        g[k] -= drho[k] / diag - rho2 / diag**2 * ddiag[k]
    if kind == 2:
        return value
    wb, hb = u2 - u1, v2 - v1
    diff = math.atan2(wb, hb) - math.atan2(wa, ha)
    v = 4 / math.pi**2 * diff * diff
    den = 1 - iou + v + eps
    alpha = v / den if den > 0 else 0.0
    # d v / d θ_a = -8/π² diff;  d θ_a / d w_a = h_a / r², d θ_a / d h_a = -w_a / r²  (0 at the origin)
    r2 = wa * wa + ha * ha
    if r2 > 0:
        dv = -8 / math.pi**2 * diff
        dw, dh = dv * ha / r2, -dv * wa / r2
        g[0] += alpha * dw
        g[2] -= alpha * dw
        g[1] += alpha * dh
        g[3] -= alpha * dh
    return value - alpha * v


@njit(cache=True)
def _aligned(a, b, kind, eps):
    n = a.shape[0]
    out = np.zeros(n)
    ga = np.zeros((n, 4))
    gb = np.zeros((n, 4))
    for i in range(n):
        out[i] = _pair(a[i], b[i], kind, eps, ga[i])
        _pair(b[i], a[i], kind, eps, gb[i])
    return out, ga, gb


@njit(cache=True)
def _pairwise(a, b, kind, eps, weights):
    """Values (N, M) and the gradients of ``Σ weights · values`` w.r.t. a and b."""
    n, m = a.shape[0], b.shape[0]
    out = np.zeros((n, m))
    ga = np.zeros((n, 4))
    gb = np.zeros((m, 4))
    g = np.zeros(4)
    for i in range(n):
        for j in range(m):
            out[i, j] = _pair(a[i], b[j], kind, eps, g)
            ga[i] += weights[i, j] * g
            _pair(b[j], a[i], kind, eps, g)
            gb[j] += weights[i, j] * g
    return out, ga, gb


def box_loss(kind, boxes1, boxes2, pairwise=False, output="loss", reduction="none", eps=1e-7, grad=False, fn=None):
    """Value or loss (``1 - value``) of ``kind`` for aligned ``(N,4)+(N,4)`` or pairwise ``(N,4)x(M,4)``
    boxes, reduced; with ``grad``: ``(value, {"boxes1": ..., "boxes2": ...})`` of the (summed) result."""
    fn = fn or kind
    check_choice(fn, "output", output, ("loss", "value"))
    a = as_f64(fn, "boxes1", boxes1)
    b = as_f64(fn, "boxes2", boxes2)
    check_shapes(fn, [("boxes1", a, ("N", 4)), ("boxes2", b, ("M" if pairwise else "N", 4))])
    k = KINDS.index(kind)
    sign = -1.0 if output == "loss" else 1.0
    if pairwise:
        values, _, _ = _pairwise(a, b, k, eps, np.zeros((a.shape[0], b.shape[0])))
    else:
        values, ga, gb = _aligned(a, b, k, eps)
    result, scale = reduce(1 - values if output == "loss" else values, reduction, fn)
    if not grad:
        return result
    if pairwise:
        _, ga, gb = _pairwise(a, b, k, eps, np.full(values.shape, sign * scale))
    else:
        ga, gb = sign * scale * ga, sign * scale * gb
    return result, {"boxes1": ga, "boxes2": gb}


def box_iou(boxes1, boxes2, pairwise=False, output="loss", reduction="none", eps=1e-7, grad=False):
    """IoU ``I / (U + ε)`` or ``1 - IoU``; see :func:`box_loss`."""
    return box_loss("iou", boxes1, boxes2, pairwise, output, reduction, eps, grad, fn="box_iou")


def giou(boxes1, boxes2, pairwise=False, output="loss", reduction="none", eps=1e-7, grad=False):
    """Generalized IoU or ``1 - GIoU``; see :func:`box_loss`."""
    return box_loss("giou", boxes1, boxes2, pairwise, output, reduction, eps, grad)


def diou(boxes1, boxes2, pairwise=False, output="loss", reduction="none", eps=1e-7, grad=False):
    """Distance IoU or ``1 - DIoU``; see :func:`box_loss`."""
    return box_loss("diou", boxes1, boxes2, pairwise, output, reduction, eps, grad)


def ciou(boxes1, boxes2, pairwise=False, output="loss", reduction="none", eps=1e-7, grad=False):
    """Complete IoU or ``1 - CIoU``; see :func:`box_loss`."""
    return box_loss("ciou", boxes1, boxes2, pairwise, output, reduction, eps, grad)
