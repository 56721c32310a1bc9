"""Catalog entries of the focal family."""

from __future__ import annotations

from lossgraph import reference as ref

from . import Case, Input, Spec
from ._inputs import binary, logits

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
        reference=ref.sigmoid_focal,
        cases=(
            Case({}, {"B": 2, "C": 3, "H": 6, "W": 7}, _RUN),
            Case({"alpha": -1.0, "gamma": 0.5, "reduction": "none"}, {"B": 2, "C": 3, "H": 6, "W": 7}, _RUN),
        ),
        grid=[{"alpha": a, "gamma": g, "reduction": r} for a in (0.25, -1.0) for g in (0.0, 2.0) for r in ("none", "mean", "sum")],
        bench_dims={"B": 8, "C": 21, "H": 256, "W": 256},
        description="Sigmoid focal loss (torchvision formula)",
    ),
]
