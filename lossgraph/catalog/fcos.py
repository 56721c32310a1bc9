"""Catalog entry of the FCOS loss: L levels as separate named inputs, N = Σ H_l W_l derived."""

from __future__ import annotations

import numpy as np

from lossgraph._levels import level_names, locations_expr

from . import Case, Derived, Input, Spec
from ._inputs import logits


def _inputs_spec(p):
    n = p["levels"]
    hw = [(f"H{k}", f"W{k}") for k in range(n)]
    big_n = Derived("N", locations_expr(n))
    return (
        *(Input(name, ("B", "C", h, w), "float32", "logits", grad=True)
          for name, (h, w) in zip(level_names("cls", n), hw)),
        *(Input(name, ("B", 1, h, w), "float32", "logits", grad=True)
          for name, (h, w) in zip(level_names("cnt", n), hw)),
        *(Input(name, ("B", 4, h, w), "float32", "ltrb", grad=True) for name, (h, w) in zip(level_names("reg", n), hw)),
        Input("cls_targets", ("B", big_n, 1), "int64", "labels", classes="C + 1", floats=True),
        Input("cnt_targets", ("B", big_n, 1), "float32", "centerness"),
        Input("reg_targets", ("B", big_n, 4), "float32", "ltrb"),
    )


def level_dims(b: int, c: int, sizes) -> dict[str, int]:
    """``{"B", "C", "H0", "W0", ...}`` from per-level ``(h, w)`` sizes."""
    dims = {"B": b, "C": c}
    for k, (h, w) in enumerate(sizes):
        dims[f"H{k}"], dims[f"W{k}"] = h, w
    return dims


def make_targets(rng: np.random.Generator, b: int, n: int, c: int, pos_fraction: float = 0.3) -> dict[str, np.ndarray]:
    """FCOS-encoded targets: positives get a class in 1..C, centerness in (0, 1], ltrb > 0; negatives
    class 0, centerness -1 and ltrb -1 (what the notebook's target encoder writes)."""
    pos = rng.random((b, n, 1)) < pos_fraction
    cls = np.where(pos, rng.integers(1, c + 1, size=(b, n, 1)), 0).astype(np.int64)
    cnt = np.where(pos, rng.uniform(0.05, 1.0, size=(b, n, 1)), -1.0).astype(np.float32)
    reg = np.where(pos, rng.uniform(0.5, 12.0, size=(b, n, 4)), -1.0).astype(np.float32)
    return {"cls_targets": cls, "cnt_targets": cnt, "reg_targets": reg}


def _make(d, rng, p):
    n_lev = p["levels"]
    b, c = d["B"], d["C"]
    sizes = [(d[f"H{k}"], d[f"W{k}"]) for k in range(n_lev)]
    out = {}
    for k, (h, w) in enumerate(sizes):
        out[f"cls_{k}"] = logits(rng, (b, c, h, w))
    for k, (h, w) in enumerate(sizes):
        out[f"cnt_{k}"] = logits(rng, (b, 1, h, w))
    for k, (h, w) in enumerate(sizes):
        out[f"reg_{k}"] = rng.uniform(0.5, 12.0, size=(b, 4, h, w)).astype(np.float32)
    out.update(make_targets(rng, b, sum(h * w for h, w in sizes), c))
    return out


def _edges(p):
    n_lev = p["levels"]
    rng = np.random.default_rng(11)
    base = _make(level_dims(3, 4, [(2 + k, 3) for k in range(n_lev)]), rng, p)
    none = {**base, "cnt_targets": np.full_like(base["cnt_targets"], -1.0),
            "cls_targets": np.zeros_like(base["cls_targets"])}
    first = {k: v.copy() for k, v in base.items()}
    first["cnt_targets"][0] = -1.0
    first["cls_targets"][0] = 0
    every = _make(level_dims(2, 3, [(1, 1)] * n_lev), rng, p)
    every["cnt_targets"] = np.clip(np.abs(every["cnt_targets"]) + 0.1, 0.0, 1.0)  # centerness stays in (0, 1]
    every["cls_targets"] = np.maximum(every["cls_targets"], 1)
    every["reg_targets"] = np.abs(every["reg_targets"]) + 0.5
    exact = {**base}  # predictions equal to the targets at positives (ties of min/max, IoU = 1)
    pos = base["cnt_targets"] > -1
    flat_reg = np.where(pos, base["reg_targets"], 3.0).astype(np.float32)
    start = 0
    for k in range(n_lev):
        x = base[f"reg_{k}"]
        h, w = x.shape[2:]
        exact[f"reg_{k}"] = np.ascontiguousarray(flat_reg[:, start:start + h * w].transpose(0, 2, 1).reshape(x.shape))
        start += h * w
    return {"no_positives": none, "first_image_no_positives": first, "all_positive_1x1_levels": every,
            "perfect_boxes": exact}


# export sizes all distinct and none equal to 1 or 4: the gradient trace (make_fx, duck sizing) would
# tie a level size to B, C or the fixed 4 of the ltrb channels and specialise it
_EXPORT5 = level_dims(2, 3, [(14, 13), (12, 11), (10, 9), (8, 7), (6, 5)])
_RUN5 = (level_dims(3, 5, [(16, 12), (8, 6), (4, 3), (2, 2), (1, 1)]), level_dims(1, 2, [(1, 1)] * 5),
         level_dims(2, 20, [(32, 24), (16, 12), (8, 6), (4, 3), (2, 2)]))
_EXPORT3 = level_dims(2, 3, [(10, 9), (8, 7), (6, 5)])
_RUN3 = (level_dims(4, 7, [(10, 13), (5, 7), (3, 4)]), level_dims(1, 1, [(1, 2), (1, 1), (1, 1)]))

SPECS = [
    Spec(
        name="fcos",
        family="fcos",
        module="lossgraph.fcos:FCOS",
        params={"levels": 5, "alpha": 0.25, "gamma": 2.0, "reg_loss": "giou", "add_centerness": True},
        inputs=_inputs_spec,
        make_inputs=_make,
        edges=_edges,
        outputs=("cls", "cnt", "reg", "total"),
        grad_of="total",
        cases=(
            Case({}, _EXPORT5, _RUN5),
            Case({"levels": 3, "reg_loss": "iou", "add_centerness": False}, _EXPORT3, _RUN3),
        ),
        grid=[{"reg_loss": r, "add_centerness": a, "gamma": g} for r in ("giou", "iou") for a in (True, False)
              for g in (0.0, 2.0)],
        bench_dims=level_dims(8, 80, [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]),
        description="FCOS loss: focal cls, centerness BCE, IoU/GIoU regression on positives",
    ),
]
