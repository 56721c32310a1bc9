"""Catalog entries of the matting family: alpha-matte losses and the loss sets."""

from __future__ import annotations

import numpy as np

from . import Case, Input, Spec
from ._inputs import binary, probabilities

MATTE = ("B", 1, "H", "W")
AREA_512 = 512 * 512  # the source's normaliser (lossgraph.matting.AREA_512)
_RUN = ({"B": 3, "H": 17, "W": 31}, {"B": 1, "H": 1, "W": 1}, {"B": 2, "H": 512, "W": 512})
_EXPORT = {"B": 2, "H": 6, "W": 7}
_SET_TERMS = ["unknown_l1", "known_l1", "known_smooth_l1", "smooth_l1", "bce", "sigmoid_focal", "gradient_penalty"]


def alpha_matte(rng: np.random.Generator, shape) -> np.ndarray:
    """Alpha mattes: about 35 % exactly 0, 35 % exactly 1, the rest soft values in (0, 1)."""
    u = rng.random(shape)
    return np.where(u < 0.35, 0.0, np.where(u > 0.65, 1.0, (u - 0.35) / 0.3)).astype(np.float32)


def _inputs(d, rng, p):
    shape = (d["B"], 1, d["H"], d["W"])
    return {"pred": probabilities(rng, shape), "target": alpha_matte(rng, shape), "mask": binary(rng, shape, 0.5)}


def _laplacian_inputs(d, rng, p):
    shape = (d["B"], 1, d["H"], d["W"])
    return {"pred": probabilities(rng, shape), "target": alpha_matte(rng, shape)}


def _mixed_inputs(d, rng, p):
    """Targets by sample: binary masks (b % 3 == 0), soft alphas (1), constant all-0 masks (2)."""
    out = _inputs(d, rng, p)
    t = out["target"]
    for b in range(d["B"]):
        t[b] = (binary(rng, t[b].shape), t[b], np.zeros_like(t[b]))[b % 3]
    return out


def _edges(p):
    rng = np.random.default_rng(11)
    base = _inputs({"B": 2, "H": 5, "W": 6}, rng, p)
    one = base["mask"].copy()
    one[0] = 0
    return {
        "empty_mask": {**base, "mask": np.zeros_like(base["mask"])},
        "full_mask": {**base, "mask": np.ones_like(base["mask"])},
        "first_image_empty": {**base, "mask": one},
        "pred_equals_target": {**base, "pred": base["target"].copy()},
    }


def _mixed_edges(p):
    rng = np.random.default_rng(12)
    base = _mixed_inputs({"B": 3, "H": 5, "W": 6}, rng, p)
    t = base["target"]
    return {
        **_edges(p),
        "all_segmentation": {**base, "target": (t > 0.5).astype(np.float32)},
        "all_matting": {**base, "target": np.full_like(t, 0.5)},
        "all_one_or_zero": {**base, "target": np.stack([np.ones_like(t[0]), np.zeros_like(t[0]), t[0]])},
    }


def _masked(name, cls, description, cases=None, grid=None, params=None):
    params = params or {"area": None}
    return Spec(
        name=name,
        family="matting",
        module=f"lossgraph.matting:{cls}",
        params=params,
        inputs=(Input("pred", MATTE, "float32", "alpha", grad=True), Input("target", MATTE, "float32", "alpha"),
                Input("mask", MATTE, "float32", "mask")),
        make_inputs=_inputs,
        cases=cases or (Case({}, _EXPORT, _RUN),),
        grid=grid if grid is not None else [{"area": None}, {"area": AREA_512}],
        edges=_edges,
        bench_dims={"B": 8, "H": 512, "W": 512},
        description=description,
    )


def _set_min_dims(keys):
    """Minimum H, W of a loss set: the Laplacian's when one of ``p[k] for k in keys`` holds it."""
    def dims(p):
        if any("laplacian" in p[k] for k in keys):
            return {"H": 2 ** (p["levels"] + 1), "W": 2 ** (p["levels"] + 1)}
        return {}

    return dims


def _set_inputs(p):
    return (Input("pred", MATTE, "float32", "alpha", grad=True), Input("target", MATTE, "float32", "alpha"),
            Input("mask", MATTE, "float32", "mask"))


SPECS = [
    _masked("unknown_l1", "UnknownL1", "L1 on the trimap's unknown region (masked mean)",
            cases=(Case({}, _EXPORT, _RUN), Case({"area": AREA_512}, _EXPORT, _RUN))),
    _masked("known_l1", "KnownL1", "L1 on the known region (1 - mask)"),
    _masked("known_smooth_l1", "KnownSmoothL1", "Smooth L1 on the known region"),
    _masked("smooth_l1", "SmoothL1", "Smooth L1 on the unknown region"),
    _masked("matting_bce", "MattingBCE", "BCE of alpha probabilities on the unknown region"),
    _masked("matting_focal", "MattingFocal", "Focal BCE of alpha probabilities, unknown region",
            params={"alpha": 0.25, "gamma": 2.0, "area": None},
            cases=(Case({}, _EXPORT, _RUN), Case({"alpha": -1.0, "gamma": 0.5, "area": AREA_512}, _EXPORT, _RUN)),
            grid=[{"alpha": a, "gamma": g, "area": ar}
                  for a in (0.25, -1.0) for g in (0.0, 2.0) for ar in (None, AREA_512)]),
    _masked("gradient_penalty", "GradientPenalty", "Sobel gradient L1 + 0.01 |grad pred| on the unknown region"),
    Spec(
        name="laplacian",
        family="matting",
        module="lossgraph.matting:Laplacian",
        params={"levels": 5},
        inputs=(Input("pred", MATTE, "float32", "alpha", grad=True), Input("target", MATTE, "float32", "alpha")),
        make_inputs=_laplacian_inputs,
        # one export (slow: ~40-110 s each for the value and the gradient graph), run at three shapes
        cases=(Case({}, {"B": 2, "H": 64, "W": 64}, ({"B": 3, "H": 97, "W": 130}, {"B": 1, "H": 64, "W": 64},
                                                        {"B": 2, "H": 512, "W": 512})),),
        grid=[{"levels": 1}, {"levels": 3}],
        min_dims=lambda p: {"H": 2 ** (p["levels"] + 1), "W": 2 ** (p["levels"] + 1)},
        bench_dims={"B": 8, "H": 512, "W": 512},
        description="Laplacian-pyramid L1 (5 levels, binomial kernel, weights 2^level)",
    ),
    Spec(
        name="matting_set",
        family="matting",
        module="lossgraph.matting:MattingSet",
        params={"losses": ["unknown_l1", "known_l1", "gradient_penalty"], "area": None, "levels": 5},
        inputs=_set_inputs,
        make_inputs=_inputs,
        outputs=lambda p: list(p["losses"]),
        grad_of=None,
        cases=(Case({"losses": _SET_TERMS, "area": AREA_512}, _EXPORT, _RUN),),
        grid=[{"losses": _SET_TERMS}, {"losses": ["known_smooth_l1", "bce"], "area": AREA_512}],
        edges=_edges,
        min_dims=_set_min_dims(["losses"]),
        bench_dims={"B": 8, "H": 512, "W": 512},
        description="Several matting terms at once (dict of named losses)",
    ),
    Spec(
        name="seg_matting_set",
        family="matting",
        module="lossgraph.matting:SegMattingSet",
        params={"seg": ["bce"], "matting": ["unknown_l1", "known_l1"], "route": "binary", "area": None, "levels": 5},
        inputs=_set_inputs,
        make_inputs=_mixed_inputs,
        outputs=lambda p: list(dict.fromkeys([*p["seg"], *p["matting"]])),
        grad_of=None,
        cases=(
            Case({"seg": ["bce", "sigmoid_focal", "unknown_l1"],
                  "matting": ["unknown_l1", "known_l1", "known_smooth_l1", "gradient_penalty"]}, _EXPORT, _RUN),
            Case({"route": "constant", "area": AREA_512}, _EXPORT, _RUN),
        ),
        grid=[{"route": r, "seg": s, "matting": m} for r in ("binary", "constant")
              for s, m in ((["bce"], ["unknown_l1", "smooth_l1"]), (["sigmoid_focal", "smooth_l1"], ["known_l1"]))],
        edges=_mixed_edges,
        min_dims=_set_min_dims(["seg", "matting"]),
        bench_dims={"B": 8, "H": 512, "W": 512},
        description="Per-sample routing: segmentation terms on binary targets, matting terms on soft alphas",
    ),
]
