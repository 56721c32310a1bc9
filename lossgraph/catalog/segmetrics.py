"""Catalog entries of the segmentation metrics (graphs with the threshold / argmax inside) and the
confusion counts that dataset-level metrics are summed from."""

from __future__ import annotations

from . import Case, Input, Spec
from ._seg import (
    BCHW,
    BHW,
    BINARY_LABELS,
    EXPORT,
    EXPORT_BIN,
    IGNORE,
    LABELS,
    RUN,
    RUN_BIN,
    binary_inputs,
    edges,
    seg_inputs,
)

SPECS = [
    Spec(
        name="iou_binary",
        family="segmetrics",
        module="lossgraph.segmetrics:IoUBinary",
        params={"per_image": True, "ignore_index": None, "empty": 1.0, "threshold": 0.0},
        inputs=(Input("logits", BHW, "float32", "logits"), BINARY_LABELS),
        make_inputs=binary_inputs,
        edges=edges(binary_inputs, {"B": 2, "H": 4, "W": 5}),
        cases=(
            Case({}, EXPORT_BIN, RUN_BIN),
            Case({"per_image": False, "ignore_index": IGNORE, "empty": 0.0, "threshold": 0.5}, EXPORT_BIN, RUN_BIN),
        ),
        grid=[
            {"per_image": pi, "ignore_index": ig, "empty": e}
            for pi in (True, False)
            for ig in (None, IGNORE)
            for e in (1.0, 0.0)
        ],
        bench_dims={"B": 8, "H": 512, "W": 512},
        description="Binary foreground IoU in percent (Berman's iou_binary), threshold inside the graph",
    ),
    Spec(
        name="iou",
        family="segmetrics",
        module="lossgraph.segmetrics:IoU",
        params={"per_image": False, "ignore_index": None, "empty": 1.0},
        inputs=(Input("logits", BCHW, "float32", "logits"), LABELS),
        make_inputs=seg_inputs,
        edges=edges(seg_inputs, {"B": 2, "C": 3, "H": 4, "W": 5}),
        cases=(Case({}, EXPORT, RUN), Case({"per_image": True, "ignore_index": IGNORE}, EXPORT, RUN)),
        grid=[
            {"per_image": pi, "ignore_index": ig, "empty": e}
            for pi in (True, False)
            for ig in (None, IGNORE, 0)
            for e in (1.0, 0.0)
        ],
        bench_dims={"B": 8, "C": 21, "H": 256, "W": 256},
        description="Per-class IoU in percent (Berman's iou), argmax inside the graph",
    ),
    Spec(
        name="confusion",
        family="segmetrics",
        module="lossgraph.segmetrics:Confusion",
        params={"ignore_index": None},
        inputs=(Input("logits", BCHW, "float32", "logits"), LABELS),
        outputs=("confusion",),
        grad_of=None,
        make_inputs=seg_inputs,
        edges=edges(seg_inputs, {"B": 2, "C": 3, "H": 4, "W": 5}),
        cases=(Case({}, EXPORT, RUN), Case({"ignore_index": IGNORE}, EXPORT, RUN), Case({"ignore_index": 0}, EXPORT, RUN)),
        grid=[{"ignore_index": ig} for ig in (None, IGNORE, 0)],
        bench_dims={"B": 8, "C": 21, "H": 256, "W": 256},
        rtol=0.0,
        atol=0.0,
        note="counts are exact: compared with no tolerance",
        aggregation={"confusion": "confusion"},
        description="Confusion counts (C, C) of the argmax prediction, float64, summed over files for dataset mIoU",
    ),
]
