"""Catalog entries of the focal family."""

from __future__ import annotations

from . import Case, Input, Spec
from ._inputs import binary, logits
from ._seg import CLASS_LIST, EXPORT, IGNORE, LOGITS_LABELS, RUN, RUN_FIXED_C, edges, seg_inputs

BCHW = ("B", "C", "H", "W")
_RUN = ({"B": 3, "C": 5, "H": 17, "W": 31}, {"B": 1, "C": 1, "H": 1, "W": 1}, {"B": 2, "C": 80, "H": 16, "W": 9})


def _inputs(d, rng, p):
    shape = (d["B"], d["C"], d["H"], d["W"])
    return {"logits": logits(rng, shape), "targets": binary(rng, shape)}


SPECS = [
    Spec(
        name="sigmoid_focal",
        family="focal",
        module="lossgraph.focal:SigmoidFocal",
        params={"alpha": 0.25, "gamma": 2.0, "reduction": "mean"},
        inputs=(Input("logits", BCHW, "float32", "logits", grad=True), Input("targets", BCHW, "float32", "binary")),
        make_inputs=_inputs,
        cases=(
            Case({}, {"B": 2, "C": 3, "H": 6, "W": 7}, _RUN),
            Case({"alpha": -1.0, "gamma": 0.5, "reduction": "none"}, {"B": 2, "C": 3, "H": 6, "W": 7}, _RUN),
        ),
        grid=[{"alpha": a, "gamma": g, "reduction": r}
              for a in (0.25, -1.0) for g in (0.0, 2.0) for r in ("none", "mean", "sum")],
        bench_dims={"B": 8, "C": 21, "H": 256, "W": 256},
        description="Sigmoid focal loss (torchvision formula)",
    ),
    Spec(
        name="focal",
        family="focal",
        module="lossgraph.focal:Focal",
        params={"gamma": 2.0, "alpha": None, "ignore_index": None, "reduction": "mean"},
        inputs=LOGITS_LABELS,
        make_inputs=seg_inputs,
        edges=edges(seg_inputs, {"B": 2, "C": 4, "H": 4, "W": 5}),
        cases=(
            # case 0 holds C fixed: its per-class alpha list, and the grid below, need C = 4
            Case({"alpha": CLASS_LIST, "gamma": 1.5, "ignore_index": IGNORE}, EXPORT, RUN_FIXED_C),
            Case({"alpha": 0.25, "reduction": "none"}, EXPORT, RUN),
        ),
        grid=[
            {"gamma": g, "alpha": a, "ignore_index": ig, "reduction": r}
            for g in (0.0, 2.0)
            for a in (None, 0.25, CLASS_LIST)
            for ig in (None, IGNORE)
            for r in ("mean", "sum", "none")
        ],
        bench_dims={"B": 8, "C": 21, "H": 256, "W": 256},
        description="Multi-class softmax focal loss; scalar alpha = [a, 1-a, ...] or per-class list",
    ),
]
