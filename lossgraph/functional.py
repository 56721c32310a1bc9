"""Functional form of every catalog loss: ``lossgraph.functional.<name>(*inputs, **params)``."""

from .focal import sigmoid_focal
from .lovasz import lovasz_hinge, lovasz_softmax
from .matting import (
    gradient_penalty,
    known_l1,
    known_smooth_l1,
    laplacian,
    matting_bce,
    matting_focal,
    matting_set,
    seg_matting_set,
    smooth_l1,
    unknown_l1,
)

__all__ = [
    "gradient_penalty",
    "known_l1",
    "known_smooth_l1",
    "laplacian",
    "lovasz_hinge",
    "lovasz_softmax",
    "matting_bce",
    "matting_focal",
    "matting_set",
    "seg_matting_set",
    "sigmoid_focal",
    "smooth_l1",
    "unknown_l1",
]
