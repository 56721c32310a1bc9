"""Seeded inputs, run shapes and edge inputs shared by the segmentation catalog entries (numpy only)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import Input
from ._inputs import labels, logits

IGNORE = 255
BCHW = ("B", "C", "H", "W")
BHW = ("B", "H", "W")
#: the fixed class count of cases with per-class parameter lists (``weight``, ``alpha``)
C_LIST = 4
CLASS_LIST = [0.4, 1.0, 2.5, 0.7]

EXPORT = {"B": 2, "C": 4, "H": 6, "W": 7}
EXPORT_BIN = {"B": 2, "H": 6, "W": 7}
#: other shapes than the export one: odd sizes, one pixel, many classes
RUN = ({"B": 3, "C": 5, "H": 17, "W": 31}, {"B": 1, "C": 2, "H": 1, "W": 1}, {"B": 2, "C": 21, "H": 32, "W": 33})
#: the same with C fixed, for cases with per-class lists
RUN_FIXED_C = ({"B": 3, "C": C_LIST, "H": 17, "W": 31}, {"B": 1, "C": C_LIST, "H": 1, "W": 1},
               {"B": 2, "C": C_LIST, "H": 32, "W": 9})
RUN_BIN = ({"B": 3, "H": 17, "W": 31}, {"B": 1, "H": 1, "W": 1}, {"B": 2, "H": 65, "W": 48})

LABELS = Input("labels", BHW, "int64", "labels", classes="C")
#: 0/1 labels of the binary losses (whole-valued floats accepted)
BINARY_LABELS = Input("labels", BHW, "int64", "labels", classes=2, floats=True)
LOGITS_LABELS = (Input("logits", BCHW, "float32", "logits", grad=True), LABELS)
BINARY_LOGITS_LABELS = (Input("logits", BHW, "float32", "logits", grad=True), BINARY_LABELS)


def seg_inputs(d: Mapping[str, int], rng: np.random.Generator, p: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """logits (B, C, H, W) and labels (B, H, W) in [0, C), 15% ``ignore_index`` when the params set one."""
    return {
        "logits": logits(rng, (d["B"], d["C"], d["H"], d["W"])),
        "labels": labels(rng, (d["B"], d["H"], d["W"]), d["C"], p.get("ignore_index")),
    }


def binary_inputs(d: Mapping[str, int], rng: np.random.Generator, p: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """logits (B, H, W) and labels (B, H, W) in {0, 1} (or ``ignore_index``)."""
    shape = (d["B"], d["H"], d["W"])
    return {"logits": logits(rng, shape), "labels": labels(rng, shape, 2, p.get("ignore_index"))}


def edges(make: Callable[..., dict[str, np.ndarray]], dims: Mapping[str, int], seed: int = 7):
    """Edge inputs for a ``(logits, labels)`` entry: one class only (absent classes), one pixel,
    and with an ``ignore_index``: every pixel ignored, the first image ignored."""

    def build(p: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        rng = np.random.default_rng(seed)
        base = make(dims, rng, p)
        lab = base["labels"]
        top = dims.get("C", 2) - 1
        out = {
            "only_class_0": {**base, "labels": np.zeros_like(lab)},
            "only_last_class": {**base, "labels": np.full_like(lab, top)},
            "one_pixel": make({**dims, "B": 1, "H": 1, "W": 1}, rng, p),
        }
        if p.get("ignore_index") is not None:
            out["all_ignored"] = {**base, "labels": np.full_like(lab, p["ignore_index"])}
            first = lab.copy()
            first[0] = p["ignore_index"]
            out["first_image_ignored"] = {**base, "labels": first}
        return out

    return build
