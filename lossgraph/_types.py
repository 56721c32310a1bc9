"""The choice arguments' types, shared by the torch losses and the reference (torch-free).

A type checker flags ``reduction="avg"``; at run time the functions still check the value and raise
:class:`~lossgraph.InputError` naming the choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from numpy.typing import ArrayLike

Reduction = Literal["none", "mean", "sum"]
"""``reduction``: ``'none'`` keeps the elementwise losses, ``'mean'`` / ``'sum'`` reduce them."""

ClassChoice = Literal["present", "all"]
Classes = ClassChoice | Sequence[int]
"""Lovász-Softmax ``classes``: the classes present in the labels, all of them, or a list of ids."""

Route = Literal["binary", "constant"]
"""``seg_matting_set`` routing: a sample goes to the segmentation terms when its target is binary
(``'binary'``) or constant (``'constant'``, the source's code)."""

Output = Literal["loss", "value"]
"""Box losses' ``output``: ``1 - value`` or the value (IoU, GIoU, ...)."""

BoxKind = Literal["iou", "giou", "diou", "ciou"]
"""Which box overlap."""

RefResult = Any
"""A reference result: a float, an array (``reduction='none'``, per-class metrics) or a dict (loss
sets); with ``grad=True`` the pair ``(value, gradient)``. ``Any``, because which one depends on the
arguments' values (typing it exactly would take an overload per ``grad`` and ``reduction``)."""

__all__ = ["ArrayLike", "BoxKind", "ClassChoice", "Classes", "Output", "RefResult", "Reduction", "Route"]
