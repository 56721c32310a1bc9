"""Functional form of every catalog loss: ``lossgraph.functional.<name>(*inputs, **params)``."""

from .focal import sigmoid_focal
from .lovasz import lovasz_hinge, lovasz_softmax

__all__ = ["lovasz_hinge", "lovasz_softmax", "sigmoid_focal"]
