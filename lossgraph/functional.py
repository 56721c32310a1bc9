"""Functional form of every catalog loss: ``lossgraph.functional.<name>(*inputs, **params)``."""

from .focal import sigmoid_focal
from .lovasz import lovasz_hinge, lovasz_softmax
from .metric import arcface, center_loss

__all__ = ["arcface", "center_loss", "lovasz_hinge", "lovasz_softmax", "sigmoid_focal"]
