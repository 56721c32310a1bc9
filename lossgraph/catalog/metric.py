"""Catalog entries of the metric-learning family (center loss, ArcFace).

Each has two modes: the ``(C, D)`` class tensor is a seeded parameter of the module (an ONNX
initializer; inputs ``features (N, feat_dim)``, ``labels (N,)``; C and D fixed by the parameters),
or a graph input (``centers`` / ``weight`` ``(C, D)``, differentiable; N, C, D all dynamic).
"""

from __future__ import annotations

import numpy as np

from lossgraph import reference as ref
from lossgraph._seeded import seeded_normal

from . import Case, Input, Spec
from ._inputs import labels

_RUN_CENTER = ({"N": 7, "C": 3, "D": 5}, {"N": 1, "C": 1, "D": 1}, {"N": 40, "C": 9, "D": 16}, {"N": 5, "C": 3, "D": 1})
# D >= 2: at D = 1 every cos θ is ±1 and the ArcFace gradient is 0 in exact arithmetic, while float32
# leaves ~1e-6 of rounding against a max |grad| of 0 (the fuzzer draws D within the run dims' range);
# ArcFace's D = 1 test, with that bound, is in test_metric.py
_RUN_ARCFACE = ({"N": 7, "C": 3, "D": 5}, {"N": 1, "C": 1, "D": 2}, {"N": 40, "C": 9, "D": 16})
_RUN_PARAM = ({"N": 7}, {"N": 1}, {"N": 33})
_EXPORT_INPUT = {"N": 6, "C": 4, "D": 5}
_EXPORT_PARAM = {"N": 6}


def _spec_inputs(what: str, source_key: str):
    def inputs(p):
        if p[source_key] == "input":
            return (
                Input("features", ("N", "D"), "float32", "features", grad=True),
                Input("labels", ("N",), "int64", "labels", classes="C"),
                Input(what, ("C", "D"), "float32", "parameters", grad=True),
            )
        return (
            Input("features", ("N", p["feat_dim"]), "float32", "features", grad=True),
            Input("labels", ("N",), "int64", "labels", classes=p["num_classes"]),
        )

    return inputs


def _class_tensor(what: str, source_key: str, p, rng, c: int, d: int) -> dict[str, np.ndarray]:
    """The class tensor as an input (random), or {} when it is the module's seeded parameter."""
    if p[source_key] == "input":
        return {what: rng.standard_normal((c, d)).astype(np.float32)}
    return {}


def _sizes(d, p, source_key: str) -> tuple[int, int]:
    """(C, D): the parameter's shape, or the dims for an input class tensor (default: the same)."""
    if p[source_key] == "input":
        return d.get("C", p["num_classes"]), d.get("D", p["feat_dim"])
    return p["num_classes"], p["feat_dim"]


def _make(what: str, source_key: str):
    def make(d, rng, p):
        c, dim = _sizes(d, p, source_key)
        out = {
            "features": rng.standard_normal((d["N"], dim)).astype(np.float32),
            "labels": labels(rng, (d["N"],), c),
        }
        return {**out, **_class_tensor(what, source_key, p, rng, c, dim)}

    return make


def _current(what: str, source_key: str, p, inputs) -> np.ndarray:
    """The class tensor the loss sees: the input, or the module's seeded parameter."""
    if p[source_key] == "input":
        return inputs[what]
    return seeded_normal(p["seed"], (p["num_classes"], p["feat_dim"]))


def _common_edges(what: str, source_key: str, rng, p) -> dict[str, dict[str, np.ndarray]]:
    make = _make(what, source_key)
    base = make({"N": 6, "C": 5, "D": 4}, rng, p)
    y = base["labels"]
    one_class = np.full_like(y, 2)
    y_absent = y % 2  # only classes 0 and 1: every other class absent from the batch
    return {
        "one_class_present": {**base, "labels": one_class},
        "classes_absent": {**base, "labels": y_absent},
        "one_sample": make({"N": 1, "C": 5, "D": 4}, rng, p),
    }


def _center_edges(p):
    rng = np.random.default_rng(11)
    out = _common_edges("centers", "centers_from", rng, p)
    base = out["classes_absent"]
    c = _current("centers", "centers_from", p, base)
    out["features_equal_centers"] = {**base, "features": c[base["labels"]].astype(np.float32)}
    return out


def _arcface_edges(p):
    """cos θ = ±1 exactly for the target class: features along (or against) their class weight."""
    rng = np.random.default_rng(12)
    out = _common_edges("weight", "weight_from", rng, p)
    base = out["classes_absent"]
    y = base["labels"]
    if p["weight_from"] == "input":
        w = 2.0 * np.eye(5, 4, dtype=np.float32)  # class j < 4 along axis j, class 4 along (1, 1, 1, 1)
        w[4] = 1.0
        along = 3.0 * np.eye(5, 4, dtype=np.float32)[y]  # exactly representable: cos = 1 in float32
        out["target_cos_plus_1"] = {**base, "features": along, "weight": w}
        out["target_cos_minus_1"] = {**base, "features": -0.5 * along, "weight": w}
    else:  # the seeded weights: cos = 1 up to float32 rounding, inside the sin² floor
        w = _current("weight", "weight_from", p, base)
        out["target_cos_plus_1"] = {**base, "features": (2.5 * w[y]).astype(np.float32)}
        out["target_cos_minus_1"] = {**base, "features": (-w[y]).astype(np.float32)}
    return out


SPECS = [
    Spec(
        name="center_loss",
        family="metric",
        module="lossgraph.metric:CenterLoss",
        params={"num_classes": 10, "feat_dim": 8, "lambda_c": 1.0, "centers_from": "parameter", "seed": 0,
                "reduction": "mean"},
        inputs=_spec_inputs("centers", "centers_from"),
        make_inputs=_make("centers", "centers_from"),
        reference=ref.center_loss,
        cases=(
            Case({"centers_from": "input"}, _EXPORT_INPUT, _RUN_CENTER),
            Case({"lambda_c": 0.5, "reduction": "none"}, _EXPORT_PARAM, _RUN_PARAM),
        ),
        grid=[
            {"lambda_c": lam, "reduction": r, "centers_from": src}
            for lam in (1.0, 0.003)
            for r in ("none", "mean", "sum")
            for src in ("parameter", "input")
        ],
        edges=_center_edges,
        bench_dims={"N": 4096},  # C, D: the parameter (num_classes, feat_dim); input mode: pass dims
        description="Center loss (Wen et al. 2016), per-class batch counts; centers a parameter or an input",
    ),
    Spec(
        name="arcface",
        family="metric",
        module="lossgraph.metric:ArcFace",
        params={"num_classes": 10, "feat_dim": 8, "s": 64.0, "m": 0.5, "easy_margin": False,
                "weight_from": "parameter", "seed": 0, "reduction": "mean"},
        inputs=_spec_inputs("weight", "weight_from"),
        make_inputs=_make("weight", "weight_from"),
        reference=ref.arcface,
        cases=(
            Case({"weight_from": "input"}, _EXPORT_INPUT, _RUN_ARCFACE),
            Case({"s": 30.0, "m": 0.35, "easy_margin": True, "reduction": "none"}, _EXPORT_PARAM, _RUN_PARAM),
        ),
        grid=[
            {"s": s, "m": m, "easy_margin": e, "reduction": r, "weight_from": src}
            for (s, m), r in (((64.0, 0.5), "mean"), ((30.0, 0.2), "none"), ((1.0, 0.0), "sum"))
            for e in (False, True)
            for src in ("parameter", "input")
        ],
        edges=_arcface_edges,
        bench_dims={"N": 512},  # C, D: the parameter (num_classes, feat_dim); input mode: pass dims
        description="ArcFace additive angular margin cross-entropy (Deng et al. 2019); s=64, m=0.5",
    ),
]
