"""Catalog entries of the Dice family."""

from __future__ import annotations

import numpy as np

from . import Case, Input, Spec
from ._inputs import binary, logits
from ._seg import BCHW, EXPORT, IGNORE, LOGITS_LABELS, RUN, edges, seg_inputs

_RUN_SOFT = ({"B": 3, "C": 1, "H": 17, "W": 31}, {"B": 1, "C": 1, "H": 1, "W": 1}, {"B": 2, "C": 3, "H": 32, "W": 33})


def _soft_inputs(d, rng, p):
    shape = (d["B"], d["C"], d["H"], d["W"])
    z = logits(rng, shape)
    probas = z if p["from_logits"] else (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)
    return {"probas": probas, "targets": binary(rng, shape)}


def _soft_edges(p):
    base = _soft_inputs({"B": 2, "C": 1, "H": 4, "W": 5}, np.random.default_rng(9), p)
    zero = np.full_like(base["probas"], -20.0 if p["from_logits"] else 0.0)
    return {
        "empty_target": {**base, "targets": np.zeros_like(base["targets"])},
        "empty_target_zero_prediction": {"probas": zero, "targets": np.zeros_like(base["targets"])},
        "full_target": {**base, "targets": np.ones_like(base["targets"])},
    }


def _soft_inputs_spec(p):
    domain = "logits" if p["from_logits"] else "probabilities"
    return (Input("probas", BCHW, "float32", domain, grad=True), Input("targets", BCHW, "float32", "binary"))


SPECS = [
    Spec(
        name="dice",
        family="dice",
        module="lossgraph.dice:Dice",
        params={"smooth": 1.0, "ignore_index": None, "squared": False, "per_class": False},
        inputs=LOGITS_LABELS,
        make_inputs=seg_inputs,
        edges=edges(seg_inputs, {"B": 2, "C": 3, "H": 4, "W": 5}),
        cases=(
            Case({}, EXPORT, RUN),
            Case({"smooth": 0.0, "ignore_index": IGNORE, "squared": True, "per_class": True}, EXPORT, RUN),
        ),
        grid=[
            {"smooth": s, "ignore_index": ig, "squared": sq, "per_class": pc}
            for s in (1.0, 0.0)
            for ig in (None, IGNORE)
            for sq in (False, True)
            for pc in (False, True)
        ],
        bench_dims={"B": 8, "C": 21, "H": 256, "W": 256},
        description="Multi-class Dice on softmax (source DiceLoss; smp defaults with per_class, smooth=0)",
    ),
    Spec(
        name="soft_dice",
        family="dice",
        module="lossgraph.dice:SoftDice",
        params={"smooth": 1.0, "from_logits": False},
        inputs=_soft_inputs_spec,
        make_inputs=_soft_inputs,
        edges=_soft_edges,
        cases=(
            Case({}, {"B": 2, "C": 1, "H": 6, "W": 7}, _RUN_SOFT),
            Case({"smooth": 0.0, "from_logits": True}, {"B": 2, "C": 1, "H": 6, "W": 7}, _RUN_SOFT),
        ),
        grid=[{"smooth": s, "from_logits": f} for s in (1.0, 0.0, 0.5) for f in (False, True)],
        bench_dims={"B": 8, "C": 1, "H": 512, "W": 512},
        description="Binary soft Dice, 1 - 2(ΣI+s)/(Σp²+Σt²+s) as in the source",
    ),
]
