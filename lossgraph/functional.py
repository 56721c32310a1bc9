"""Functional form of every catalog loss: ``lossgraph.functional.<name>(*inputs, **params)``."""

from .crossentropy import binary_xloss, ce_dice, cross_entropy
from .dice import dice, soft_dice
from .focal import focal, sigmoid_focal
from .lovasz import lovasz_hinge, lovasz_softmax
from .metric import arcface, center_loss
from .segmetrics import iou, iou_binary

__all__ = [
    "arcface",
    "binary_xloss",
    "ce_dice",
    "center_loss",
    "cross_entropy",
    "dice",
    "focal",
    "iou",
    "iou_binary",
    "lovasz_hinge",
    "lovasz_softmax",
    "sigmoid_focal",
    "soft_dice",
]
