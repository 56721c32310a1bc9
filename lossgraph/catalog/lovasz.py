"""Catalog entries of the Lovász family."""

from __future__ import annotations

import numpy as np

from . import Case, Input, Spec
from ._inputs import labels, logits, probabilities
from ._seg import BINARY_LOGITS_LABELS

IGNORE = 255
BCHW = ("B", "C", "H", "W")
BHW = ("B", "H", "W")

_RUN_SEG = ({"B": 3, "C": 5, "H": 17, "W": 31}, {"B": 1, "C": 2, "H": 1, "W": 1}, {"B": 2, "C": 1, "H": 9, "W": 4},
            {"B": 4, "C": 21, "H": 32, "W": 33})
_RUN_BIN = ({"B": 3, "H": 17, "W": 31}, {"B": 1, "H": 1, "W": 1}, {"B": 5, "H": 2, "W": 64}, {"B": 2, "H": 65, "W": 48})


def _softmax_inputs(d, rng, p):
    shape = (d["B"], d["C"], d["H"], d["W"])
    probas = logits(rng, shape) if p["from_logits"] else probabilities(rng, shape)
    c = d["C"] if d["C"] > 1 else 2
    return {"probas": probas, "labels": labels(rng, (d["B"], d["H"], d["W"]), c, p["ignore_index"])}


def _hinge_inputs(d, rng, p):
    shape = (d["B"], d["H"], d["W"])
    return {"logits": logits(rng, shape), "labels": labels(rng, shape, 2, p["ignore_index"])}


def _softmax_edges(p):
    rng = np.random.default_rng(7)
    d = {"B": 2, "C": 3, "H": 4, "W": 5}
    base = _softmax_inputs(d, rng, p)
    out = {
        "only_class_0": {**base, "labels": np.zeros_like(base["labels"])},
        "one_pixel": _softmax_inputs({"B": 1, "C": 3, "H": 1, "W": 1}, rng, p),
    }
    if p["ignore_index"] is not None:
        out["all_ignored"] = {**base, "labels": np.full_like(base["labels"], p["ignore_index"])}
        one = base["labels"].copy()
        one[0] = p["ignore_index"]  # the first image entirely ignored
        out["first_image_ignored"] = {**base, "labels": one}
    return out


def _hinge_edges(p):
    rng = np.random.default_rng(8)
    base = _hinge_inputs({"B": 2, "H": 4, "W": 5}, rng, p)
    out = {
        "all_background": {**base, "labels": np.zeros_like(base["labels"])},
        "all_foreground": {**base, "labels": np.ones_like(base["labels"])},
    }
    if p["ignore_index"] is not None:
        out["all_ignored"] = {**base, "labels": np.full_like(base["labels"], p["ignore_index"])}
        one = base["labels"].copy()
        one[1] = p["ignore_index"]
        out["second_image_ignored"] = {**base, "labels": one}
    return out


SPECS = [
    Spec(
        name="lovasz_hinge",
        family="lovasz",
        module="lossgraph.lovasz:LovaszHinge",
        params={"per_image": True, "ignore_index": None},
        inputs=BINARY_LOGITS_LABELS,
        make_inputs=_hinge_inputs,
        edges=_hinge_edges,
        cases=(
            Case({}, {"B": 2, "H": 6, "W": 7}, _RUN_BIN),
            Case({"per_image": False, "ignore_index": IGNORE}, {"B": 2, "H": 6, "W": 7}, _RUN_BIN),
        ),
        grid=[{"per_image": pi, "ignore_index": ig} for pi in (True, False) for ig in (None, IGNORE)],
        bench_dims={"B": 8, "H": 256, "W": 256},
        description="Binary Lovász hinge (Berman et al. 2018)",
    ),
    Spec(
        name="lovasz_softmax",
        family="lovasz",
        module="lossgraph.lovasz:LovaszSoftmax",
        params={"classes": "present", "per_image": False, "ignore_index": None, "from_logits": False},
        inputs=lambda p: (Input("probas", BCHW, "float32", "logits" if p["from_logits"] else "probabilities", grad=True),
                          Input("labels", BHW, "int64", "labels", classes="max(C, 2)")),
        make_inputs=_softmax_inputs,
        edges=_softmax_edges,
        cases=(
            Case({}, {"B": 2, "C": 4, "H": 6, "W": 7}, _RUN_SEG),
            Case({"classes": "all", "per_image": True, "ignore_index": IGNORE, "from_logits": True},
                 {"B": 2, "C": 4, "H": 6, "W": 7}, _RUN_SEG),
        ),
        grid=[
            {"classes": cl, "per_image": pi, "ignore_index": ig, "from_logits": fl}
            for cl in ("present", "all", [0])
            for pi in (True, False)
            for ig in (None, IGNORE)
            for fl in (False, True)
        ],
        bench_dims={"B": 8, "C": 21, "H": 256, "W": 256},
        description="Multi-class Lovász-Softmax (Berman et al. 2018); C == 1 is the sigmoid form",
    ),
]
