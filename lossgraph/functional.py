"""Functional form of every catalog loss: ``lossgraph.functional.<name>(*inputs, **params)``."""

from lossgraph._params import checked as _checked

from .boxes import box_iou, ciou, diou, giou
from .crossentropy import binary_xloss, ce_dice, cross_entropy
from .dice import dice, soft_dice
from .fcos import fcos
from .focal import focal, sigmoid_focal
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
from .metric import arcface, center_loss
from .segmetrics import confusion, iou, iou_binary

__all__ = [
    "arcface",
    "binary_xloss",
    "box_iou",
    "ce_dice",
    "center_loss",
    "ciou",
    "confusion",
    "cross_entropy",
    "dice",
    "diou",
    "fcos",
    "focal",
    "giou",
    "gradient_penalty",
    "iou",
    "iou_binary",
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
    "soft_dice",
    "unknown_l1",
]

# every loss checks its parameters on each call, with the messages of spec.build() (lossgraph._params)
for _name in __all__:
    globals()[_name] = _checked(globals()[_name])
del _name
