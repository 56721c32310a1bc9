"""Functional form of every catalog loss: ``lossgraph.functional.<name>(*inputs, **params)``."""

from .boxes import box_iou, ciou, diou, giou
from .fcos import fcos
from .focal import sigmoid_focal
from .lovasz import lovasz_hinge, lovasz_softmax
from .metric import arcface, center_loss

__all__ = ["arcface", "box_iou", "center_loss", "ciou", "diou", "fcos", "giou", "lovasz_hinge", "lovasz_softmax",
           "sigmoid_focal"]
