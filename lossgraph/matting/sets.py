"""Matting loss sets: several terms at once (``matting_set``), and per-sample routing between
segmentation and matting terms (``seg_matting_set``); one named output per term in a graph."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import torch

from .._checks import check_choice
from .._functional import LossModule
from .._types import Route
from .terms import (
    GradientPenalty,
    KnownL1,
    KnownSmoothL1,
    Laplacian,
    MattingBCE,
    MattingFocal,
    SmoothL1,
    UnknownL1,
    _check,
    _MaskedTerm,
)

ROUTES = ("binary", "constant")


#: loss-set term key -> its module class (keys are the source's loss names)
TERMS: Mapping[str, type] = {
    "unknown_l1": UnknownL1,
    "known_l1": KnownL1,
    "known_smooth_l1": KnownSmoothL1,
    "smooth_l1": SmoothL1,
    "bce": MattingBCE,
    "sigmoid_focal": MattingFocal,
    "gradient_penalty": GradientPenalty,
    "laplacian": Laplacian,
}


def _build_terms(fn: str, keys: Sequence[str], area: float | None, levels: int) -> dict[str, LossModule]:
    out = {}
    for k in keys:
        check_choice(fn, "loss", k, tuple(TERMS))
        cls = TERMS[k]
        out[k] = cls(levels=levels) if cls is Laplacian else cls(area=area)
    return out


class MattingSet(LossModule):
    """Several matting terms at once: ``forward(pred, target, mask) -> {key: loss}``.

    Args:
        losses: term keys, from :data:`TERMS` (``unknown_l1``, ``known_l1``, ``known_smooth_l1``,
            ``smooth_l1``, ``bce``, ``sigmoid_focal``, ``gradient_penalty``, ``laplacian``).
        area: the masked terms' ``area``; levels: the Laplacian's.

    Each value equals the term's own loss on the batch; the ONNX graph has one output per key.
    """

    name = "matting_set"

    def __init__(self, losses: Sequence[str] = ("unknown_l1", "known_l1", "gradient_penalty"),
                 area: float | None = None, levels: int = 5) -> None:
        super().__init__(losses=list(losses), area=area, levels=int(levels))
        self.terms = torch.nn.ModuleDict(_build_terms(self.name, losses, area, levels))

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        _check(self.name, pred, target, mask)
        return {k: (t(pred, target) if isinstance(t, Laplacian) else t(pred, target, mask))
                for k, t in self.terms.items()}


def segmentation_samples(target: torch.Tensor, route: Route = "binary") -> torch.Tensor:
    """Per-sample bool ``(B,)``: which samples are segmentation samples.

    ``route='binary'``: every target value is 0 or 1 (the source comment's intent, "only 0 and 1");
    ``route='constant'``: the target is all 0 or all 1 (the source's code ``all(t==0) or all(t==1)``).
    """
    t = target.flatten(1)
    if route == "binary":
        return ((t == 0) | (t == 1)).all(dim=1)
    return (t == 0).all(dim=1) | (t == 1).all(dim=1)


class SegMattingSet(LossModule):
    """Per-sample routing between segmentation and matting terms: ``forward(pred, target, mask) -> {key: loss}``.

    Each sample is a segmentation sample (see :func:`segmentation_samples`) or a matting sample;
    term ``k`` is the sum over the samples routed to a set containing ``k`` of the term's value on
    that sample alone (batch of 1), like the source's per-sample loop. Keys: ``seg`` then the new
    ones of ``matting``; every key is always output, 0 when no sample took it.
    """

    name = "seg_matting_set"

    def __init__(self, seg: Sequence[str] = ("bce",), matting: Sequence[str] = ("unknown_l1", "known_l1"),
                 route: Route = "binary", area: float | None = None, levels: int = 5) -> None:
        check_choice(self.name, "route", route, ROUTES)
        super().__init__(seg=list(seg), matting=list(matting), route=route, area=area, levels=int(levels))
        keys = list(dict.fromkeys([*seg, *matting]))
        self.terms = torch.nn.ModuleDict(_build_terms(self.name, keys, area, levels))
        self._in_seg = {k: k in seg for k in keys}
        self._in_matting = {k: k in matting for k in keys}

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        _check(self.name, pred, target, mask)
        is_seg = segmentation_samples(target, self._params["route"])
        out = {}
        for k, term in self.terms.items():
            values = cast("_MaskedTerm | Laplacian", term).per_sample(pred, target, mask)
            take = (is_seg if self._in_seg[k] else torch.zeros_like(is_seg)) | (
                ~is_seg if self._in_matting[k] else torch.zeros_like(is_seg)
            )
            out[k] = torch.where(take, values, torch.zeros_like(values)).sum()
        return out


def matting_set(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                losses: Sequence[str] = ("unknown_l1", "known_l1", "gradient_penalty"),
                area: float | None = None, levels: int = 5) -> dict[str, torch.Tensor]:
    """Functional form of :class:`MattingSet`: ``{key: loss}`` for each key of ``losses``."""
    return MattingSet(losses, area, levels)(pred, target, mask)


def seg_matting_set(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                    seg: Sequence[str] = ("bce",), matting: Sequence[str] = ("unknown_l1", "known_l1"),
                    route: Route = "binary", area: float | None = None, levels: int = 5) -> dict[str, torch.Tensor]:
    """Functional form of :class:`SegMattingSet` (per-sample routing, summed over samples)."""
    return SegMattingSet(seg, matting, route, area, levels)(pred, target, mask)
