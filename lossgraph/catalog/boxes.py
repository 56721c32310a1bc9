"""Catalog entries of the box-loss family: ``box_iou``, ``giou``, ``diou``, ``ciou`` on xyxy boxes.

(``iou`` is the segmentation family's per-class IoU metric, hence ``box_iou``.)
"""

from __future__ import annotations

import numpy as np

from . import Case, Input, Spec

_ALIGNED_RUN = ({"N": 7, "M": 3}, {"N": 1, "M": 2}, {"N": 40, "M": 1})  # M: for the grid's pairwise sets
_PAIRWISE_RUN = ({"N": 7, "M": 3}, {"N": 1, "M": 1}, {"N": 33, "M": 50})


def random_boxes(rng: np.random.Generator, n: int, spread: float = 20.0) -> np.ndarray:
    """``n`` valid xyxy boxes, float32: centers in [0, spread)², sides log-normal around 4."""
    c = rng.random((n, 2)) * spread
    wh = 4.0 * np.exp(0.6 * rng.standard_normal((n, 2)))
    return np.concatenate([c - wh / 2, c + wh / 2], axis=1).astype(np.float32)


def _inputs_for(pairwise: bool):
    def make(d, rng, p):
        a = random_boxes(rng, d["N"])
        if pairwise:
            return {"boxes1": a, "boxes2": random_boxes(rng, d["M"])}
        # mostly overlapping pairs (jittered copies), some far apart
        b = a + rng.standard_normal(a.shape).astype(np.float32) * 1.5
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.1)
        far = rng.random(d["N"]) < 0.2
        b[far] += 30.0
        return {"boxes1": a, "boxes2": b}

    return make


def _inputs(d, rng, p):
    return _inputs_for(p["pairwise"])(d, rng, p)


def _boxes(p):
    return (
        Input("boxes1", ("N", 4), "float32", "boxes", grad=True),
        Input("boxes2", ("M" if p["pairwise"] else "N", 4), "float32", "boxes", grad=True),
    )


#: degenerate pairs: (boxes1 row, boxes2 row, what it is)
_DEGENERATE = [
    ([0, 0, 2, 3], [0, 0, 2, 3], "identical"),
    ([0, 0, 2, 3], [5, 6, 7, 8], "disjoint"),
    ([0, 0, 2, 2], [2, 0, 4, 2], "touching"),
    ([0, 0, 0, 3], [0, 0, 2, 3], "zero width"),
    ([0, 1, 2, 1], [0, 0, 2, 3], "zero height"),
    ([1, 1, 1, 1], [0, 0, 2, 3], "point inside"),
    ([0, 0, 4, 4], [1, 1, 2, 3], "nested"),
    ([0, 0, 0, 2], [0, 0, 3, 0], "zero width vs zero height"),
]


def _edges(p):
    a = np.array([r[0] for r in _DEGENERATE], dtype=np.float32)
    b = np.array([r[1] for r in _DEGENERATE], dtype=np.float32)
    point = np.array([[1, 1, 1, 1]], dtype=np.float32)
    # identical point boxes: U = C = 0, so the value is 0 - 0/ε and gradients are O(1/ε): kept apart so
    # their size does not set the gradient tolerance of the other degenerate pairs
    out = {"degenerate": {"boxes1": a, "boxes2": b}, "identical_points": {"boxes1": point, "boxes2": point}}
    if p["pairwise"]:
        out["one_vs_many"] = {"boxes1": a[:1], "boxes2": b}
    return out


def _spec(name: str, cls: str, title: str) -> Spec:
    return Spec(
        name=name,
        family="boxes",
        module=f"lossgraph.boxes:{cls}",
        params={"pairwise": False, "output": "loss", "reduction": "none", "eps": 1e-7},
        empty_dims=("N", "M"),
        inputs=_boxes,
        make_inputs=_inputs,
        edges=_edges,
        grad_of="loss",
        cases=(
            Case({}, {"N": 6}, _ALIGNED_RUN),
            Case({"pairwise": True, "output": "value", "reduction": "mean"}, {"N": 6, "M": 5}, _PAIRWISE_RUN),
        ),
        grid=[{"pairwise": pw, "output": o, "reduction": r} for pw in (False, True) for o in ("loss", "value")
              for r in ("none", "sum")],
        bench_dims={"N": 100_000, "M": 64},
        description=title,
    )


SPECS = [
    _spec("box_iou", "BoxIoU", "IoU of xyxy boxes, aligned or pairwise; loss 1 - IoU"),
    _spec("giou", "GIoU", "Generalized IoU (torchvision generalized_box_iou_loss)"),
    _spec("diou", "DIoU", "Distance IoU (torchvision distance_box_iou_loss)"),
    _spec("ciou", "CIoU", "Complete IoU (torchvision complete_box_iou_loss), no Atan node"),
]
