"""Box overlap losses: IoU, GIoU, DIoU, CIoU on xyxy boxes, and -log IoU / GIoU on FCOS ltrb distances.

For boxes ``a = (x1, y1, x2, y2)`` and ``b`` (torchvision's loss formulas, ``eps`` as there):

* ``iou  = I / (U + eps)`` with the intersection ``I`` (0 unless both overlaps are > 0) and union ``U``;
* ``giou = iou - (C - U) / (C + eps)``, ``C`` the area of the smallest enclosing box;
* ``diou = iou - ρ² / (c² + eps)``, ``ρ`` the distance of the centers, ``c`` the enclosing diagonal;
* ``ciou = diou - α v``, ``v = 4/π² (θ_b - θ_a)²`` with ``θ = atan2(w, h)`` (= ``atan(w / h)`` for
  h > 0), ``α = v / (1 - iou + v + eps)`` (0 where that is 0) held constant in the gradient
  (torchvision's ``no_grad``).

The losses are ``1 - value``. Degenerate boxes give finite values and gradients: zero width or
height (``θ = π/2``, or 0 for a point box), identical boxes, disjoint boxes. No Atan node: ``θ``
comes from :func:`atan2` (range reduction + series), which onnxruntime runs on every provider.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ._checks import check_choice, check_dtype, check_shapes
from ._functional import LossModule, reduce, safe_div, to_acc
from ._types import BoxKind, Output, Reduction

KINDS = ("iou", "giou", "diou", "ciou")
OUTPUTS = ("loss", "value")

_PI = math.pi
Coords = tuple[torch.Tensor, ...]  # (x1, y1, x2, y2), broadcastable
#: odd Taylor coefficients of atan on |z| <= tan(π/16) ≈ 0.199: the z^23 term is below 1e-17
_ATAN_TERMS = 11


def atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``atan2(y, x)`` in [-π, π] from elementary ops (numpy's conventions; ``atan2(0, 0) = 0``).

    ``a = min(|x|,|y|) / max(|x|,|y|) ∈ [0, 1]``; two half-angle steps ``a ← a / (1 + √(1 + a²))``
    bring it below tan(π/16), where 11 Taylor terms are exact to float64 rounding; the octant and
    quadrant are restored with ``where``. Its autograd gradient is finite everywhere (0 at the origin).
    """
    # selections by ``where`` (not abs/min/max) keep the gradient exact on the axes and diagonals
    ax, ay = torch.where(x < 0, -x, x), torch.where(y < 0, -y, y)
    steep = ay > ax
    a = safe_div(torch.where(steep, ax, ay), torch.where(steep, ay, ax))
    for _ in range(2):
        a = a / (1 + torch.sqrt(1 + a * a))
    a2 = a * a
    series = torch.zeros_like(a)
    for k in reversed(range(_ATAN_TERMS)):
        series = series * a2 + (-1) ** k / (2 * k + 1)
    t = 4 * a * series  # atan(lo / hi) in [0, π/4]
    t = torch.where(steep, _PI / 2 - t, t)
    t = torch.where(x < 0, _PI - t, t)
    return torch.where(y < 0, -t, t)


def _overlap_terms(a: Coords, b: Coords, eps: float) -> dict[str, torch.Tensor]:
    """Intersection, union, IoU and enclosing-box widths of broadcast xyxy boxes."""
    x1, y1, x2, y2 = a
    u1, v1, u2, v2 = b
    iw = torch.minimum(x2, u2) - torch.maximum(x1, u1)
    ih = torch.minimum(y2, v2) - torch.maximum(y1, v1)
    inter = torch.where((iw > 0) & (ih > 0), iw * ih, torch.zeros_like(iw))
    union = (x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - inter
    cw = torch.maximum(x2, u2) - torch.minimum(x1, u1)
    ch = torch.maximum(y2, v2) - torch.minimum(y1, v1)
    return {"union": union, "iou": inter / (union + eps), "cw": cw, "ch": ch}


def _value(kind: BoxKind, a: Coords, b: Coords, eps: float) -> torch.Tensor:
    """IoU / GIoU / DIoU / CIoU of boxes given as broadcastable coordinate tensors ``(x1, y1, x2, y2)``."""
    t = _overlap_terms(a, b, eps)
    iou = t["iou"]
    if kind == "iou":
        return iou
    if kind == "giou":
        area_c = t["cw"] * t["ch"]
        return iou - (area_c - t["union"]) / (area_c + eps)
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    diou = iou - (dx * dx + dy * dy) / (t["cw"] * t["cw"] + t["ch"] * t["ch"] + eps)
    if kind == "diou":
        return diou
    theta_a = atan2(a[2] - a[0], a[3] - a[1])
    theta_b = atan2(b[2] - b[0], b[3] - b[1])
    v = (4 / _PI**2) * (theta_b - theta_a) ** 2
    alpha = safe_div(v, 1 - iou + v + eps).detach()  # 0 for identical boxes even with eps = 0
    return diou - alpha * v


def _coords(boxes: torch.Tensor) -> Coords:
    """``(N, 4)`` -> four contiguous ``(N,)`` coordinate tensors: one transpose, not four strided
    column slices (onnxruntime's Slice on the last axis of (N, 4) took half the graph's time)."""
    return tuple(boxes.t().contiguous().unbind(0))


def box_loss(
    kind: BoxKind,
    boxes1: torch.Tensor,
    boxes2: torch.Tensor,
    pairwise: bool = False,
    output: Output = "loss",
    reduction: Reduction = "none",
    eps: float = 1e-7,
    fn: str | None = None,
) -> torch.Tensor:
    """IoU-family value or loss (``1 - value``) of xyxy boxes; the functions below fix ``kind``.

    Args:
        kind: ``'iou' | 'giou' | 'diou' | 'ciou'`` (module docstring).
        boxes1: ``(N, 4)`` float boxes ``(x1, y1, x2, y2)`` with ``x1 <= x2``, ``y1 <= y2``.
        boxes2: ``(N, 4)`` aligned with ``boxes1``, or ``(M, 4)`` with ``pairwise=True``.
        pairwise: every pair: ``(N, M)`` values (torchvision ``box_iou`` style) instead of ``(N,)``.
        output: ``'loss'`` (``1 - value``, torchvision's ``*_box_iou_loss``) or ``'value'``.
        reduction: ``'none' | 'mean' | 'sum'`` over the ``(N,)`` or ``(N, M)`` result.
        eps: added to the denominators, as in torchvision.
        fn: the name error messages give (default: ``kind``).

    Returns ``(N,)`` / ``(N, M)`` for ``reduction='none'``, else a scalar; empty ``N`` gives an empty
    tensor (``'mean'`` of nothing is NaN, as in torch).
    """
    fn = fn or kind
    check_choice(fn, "output", output, OUTPUTS)
    check_dtype(fn, "boxes1", boxes1, "f", "a float tensor")
    check_dtype(fn, "boxes2", boxes2, "f", "a float tensor")
    check_shapes(fn, [("boxes1", boxes1, ("N", 4)), ("boxes2", boxes2, ("M" if pairwise else "N", 4))], allow_empty=("N", "M"))
    a = to_acc(boxes1)
    ca, cb = _coords(a), _coords(boxes2.to(a.dtype))
    if pairwise:
        ca, cb = tuple(c[:, None] for c in ca), tuple(c[None, :] for c in cb)
    value = _value(kind, ca, cb, eps)
    return reduce(1 - value if output == "loss" else value, reduction, fn)


def box_iou(
    boxes1: torch.Tensor,
    boxes2: torch.Tensor,
    pairwise: bool = False,
    output: Output = "loss",
    reduction: Reduction = "none",
    eps: float = 1e-7,
) -> torch.Tensor:
    """IoU ``I / (U + eps)`` of xyxy boxes, or ``1 - IoU``; see :func:`box_loss`.

    ``output='value', pairwise=True`` equals ``torchvision.ops.box_iou`` up to ``eps``.

    Example:
        >>> a = torch.tensor([[0.0, 0, 2, 2]]); b = torch.tensor([[1.0, 1, 3, 3]])
        >>> round(float(box_iou(a, b, output="value", eps=0.0)), 6)  # 1 / 7
        0.142857
    """
    return box_loss("iou", boxes1, boxes2, pairwise, output, reduction, eps, fn="box_iou")


def giou(
    boxes1: torch.Tensor,
    boxes2: torch.Tensor,
    pairwise: bool = False,
    output: Output = "loss",
    reduction: Reduction = "none",
    eps: float = 1e-7,
) -> torch.Tensor:
    """Generalized IoU (Rezatofighi et al. 2019); loss equals ``torchvision.ops.generalized_box_iou_loss``."""
    return box_loss("giou", boxes1, boxes2, pairwise, output, reduction, eps)


def diou(
    boxes1: torch.Tensor,
    boxes2: torch.Tensor,
    pairwise: bool = False,
    output: Output = "loss",
    reduction: Reduction = "none",
    eps: float = 1e-7,
) -> torch.Tensor:
    """Distance IoU (Zheng et al. 2020); loss equals ``torchvision.ops.distance_box_iou_loss``."""
    return box_loss("diou", boxes1, boxes2, pairwise, output, reduction, eps)


def ciou(
    boxes1: torch.Tensor,
    boxes2: torch.Tensor,
    pairwise: bool = False,
    output: Output = "loss",
    reduction: Reduction = "none",
    eps: float = 1e-7,
) -> torch.Tensor:
    """Complete IoU (Zheng et al. 2020); loss equals ``torchvision.ops.complete_box_iou_loss``
    (value and gradient: ``α`` is constant there too) wherever torchvision's is finite.

    The torchvision claims of this module are tested against its published formulas
    (``tests/test_boxes.py``): torchvision cannot be imported beside the pinned CPU torch."""
    return box_loss("ciou", boxes1, boxes2, pairwise, output, reduction, eps)


# --- FCOS regression on ltrb distances ------------------------------------------------------------


def ltrb_iou_terms(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IoU, union and enclosing area of boxes given as ``(l, t, r, b)`` distances from one point.

    ``(..., 4)`` inputs; the overlap is ``(min l + min r)⁺ (min t + min b)⁺``, the enclosing box
    ``(max l + max r)⁺ (max t + max b)⁺`` (the FCOS notebook's formulas); IoU is 0 for an empty union.
    """
    lo = torch.minimum(pred, target)
    hi = torch.maximum(pred, target)
    overlap = torch.clamp(lo[..., 0] + lo[..., 2], min=0) * torch.clamp(lo[..., 1] + lo[..., 3], min=0)
    area_p = (pred[..., 0] + pred[..., 2]) * (pred[..., 1] + pred[..., 3])
    area_t = (target[..., 0] + target[..., 2]) * (target[..., 1] + target[..., 3])
    union = area_p + area_t - overlap
    enclosing = torch.clamp(hi[..., 0] + hi[..., 2], min=0) * torch.clamp(hi[..., 1] + hi[..., 3], min=0)
    return safe_div(overlap, union), union, enclosing


def ltrb_iou_loss(pred: torch.Tensor, target: torch.Tensor, mode: Literal["iou", "giou"] = "giou") -> torch.Tensor:
    """Elementwise FCOS regression loss on ``(..., 4)`` ltrb distances: ``(...)``.

    ``mode='iou'``: ``-log(max(IoU, 1e-6))`` (UnitBox); ``mode='giou'``: ``1 - GIoU`` with
    ``GIoU = IoU - (G - U) / max(G, 1e-10)`` (G the enclosing area), as the FCOS notebook's
    ``iou_loss`` / ``giou_loss`` per location.
    """
    iou, union, enclosing = ltrb_iou_terms(pred, target)
    if mode == "iou":
        return -torch.log(torch.clamp(iou, min=1e-6))
    return 1 - (iou - (enclosing - union) / torch.clamp(enclosing, min=1e-10))


# --- modules --------------------------------------------------------------------------------------


class _BoxLoss(LossModule):
    kind: BoxKind

    def __init__(
        self, pairwise: bool = False, output: Output = "loss", reduction: Reduction = "none", eps: float = 1e-7
    ) -> None:
        super().__init__(pairwise=bool(pairwise), output=output, reduction=reduction, eps=float(eps))

    def forward(self, boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
        return box_loss(self.kind, boxes1, boxes2, **self._params, fn=self.name)


class BoxIoU(_BoxLoss):
    """Module form of :func:`box_iou`: ``forward(boxes1, boxes2)``."""

    name, kind = "box_iou", "iou"


class GIoU(_BoxLoss):
    """Module form of :func:`giou`: ``forward(boxes1, boxes2)``."""

    name, kind = "giou", "giou"


class DIoU(_BoxLoss):
    """Module form of :func:`diou`: ``forward(boxes1, boxes2)``."""

    name, kind = "diou", "diou"


class CIoU(_BoxLoss):
    """Module form of :func:`ciou`: ``forward(boxes1, boxes2)``."""

    name, kind = "ciou", "ciou"
