"""Catalog entries of the cross-entropy family."""

from __future__ import annotations

from . import Case, Spec
from ._seg import (
    BINARY_LOGITS_LABELS,
    CLASS_LIST,
    EXPORT,
    EXPORT_BIN,
    IGNORE,
    LOGITS_LABELS,
    RUN,
    RUN_BIN,
    RUN_FIXED_C,
    binary_inputs,
    edges,
    seg_inputs,
)

SPECS = [
    Spec(
        name="binary_xloss",
        family="crossentropy",
        module="lossgraph.crossentropy:BinaryXLoss",
        params={"ignore_index": None},
        inputs=BINARY_LOGITS_LABELS,
        make_inputs=binary_inputs,
        edges=edges(binary_inputs, {"B": 2, "H": 4, "W": 5}),
        cases=(Case({}, EXPORT_BIN, RUN_BIN), Case({"ignore_index": IGNORE}, EXPORT_BIN, RUN_BIN)),
        grid=[{"ignore_index": None}, {"ignore_index": IGNORE}],
        bench_dims={"B": 8, "H": 512, "W": 512},
        description="Stable binary cross-entropy on logits with ignored pixels (Berman's binary_xloss)",
    ),
    Spec(
        name="cross_entropy",
        family="crossentropy",
        module="lossgraph.crossentropy:CrossEntropy",
        params={"ignore_index": IGNORE, "weight": None, "reduction": "mean"},
        inputs=LOGITS_LABELS,
        make_inputs=seg_inputs,
        edges=edges(seg_inputs, {"B": 2, "C": 4, "H": 4, "W": 5}),
        cases=(
            Case({"weight": CLASS_LIST}, EXPORT, RUN_FIXED_C),
            Case({"ignore_index": None, "reduction": "none"}, EXPORT, RUN),
        ),
        grid=[
            {"ignore_index": ig, "weight": w, "reduction": r}
            for ig in (None, IGNORE)
            for w in (None, CLASS_LIST)
            for r in ("mean", "sum", "none")
        ],
        bench_dims={"B": 8, "C": 21, "H": 256, "W": 256},
        description="Cross-entropy with ignore_index=255 and class weights (LogSoftmax + gather)",
    ),
    Spec(
        name="ce_dice",
        family="crossentropy",
        module="lossgraph.crossentropy:CEDice",
        params={"smooth": 1.0, "ignore_index": IGNORE, "weight": None},
        inputs=LOGITS_LABELS,
        make_inputs=seg_inputs,
        edges=edges(seg_inputs, {"B": 2, "C": 4, "H": 4, "W": 5}),
        cases=(Case({"weight": CLASS_LIST}, EXPORT, RUN_FIXED_C), Case({"ignore_index": None}, EXPORT, RUN)),
        grid=[
            {"smooth": s, "ignore_index": ig, "weight": w}
            for s in (1.0, 0.0)
            for ig in (None, IGNORE)
            for w in (None, CLASS_LIST)
        ],
        bench_dims={"B": 8, "C": 21, "H": 256, "W": 256},
        description="Cross-entropy + Dice (source CE_DiceLoss)",
    ),
]
