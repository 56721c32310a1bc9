"""The choice arguments' types, shared by the torch losses and the reference (torch-free).

A type checker flags ``reduction="avg"``; at run time the functions still check the value and raise
:class:`~lossgraph.InputError` naming the choices.
"""

from __future__ import annotations

from typing import Literal, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike

Reduction = Literal["none", "mean", "sum"]
"""``reduction``: ``'none'`` keeps the elementwise losses, ``'mean'`` / ``'sum'`` reduce them."""

ClassChoice = Literal["present", "all"]
Classes = Union[ClassChoice, Sequence[int]]
"""Lovász-Softmax ``classes``: the classes present in the labels, all of them, or a list of ids."""

Route = Literal["binary", "constant"]
"""``seg_matting_set`` routing: a sample goes to the segmentation terms when its target is binary
(``'binary'``) or constant (``'constant'``, the source's code)."""

Output = Literal["loss", "value"]
"""Box losses' ``output``: ``1 - value`` or the value (IoU, GIoU, ...)."""

BoxKind = Literal["iou", "giou", "diou", "ciou"]
"""Which box overlap."""

RefValue = Union[float, np.ndarray, dict[str, float]]
"""A reference value: a float, an array (``reduction='none'``, per-class metrics), a dict (loss sets)."""

RefResult = Union[RefValue, tuple[RefValue, Union[np.ndarray, dict[str, np.ndarray]]]]
"""A reference result: the value, or ``(value, gradient)`` with ``grad=True``."""

__all__ = ["ArrayLike", "BoxKind", "ClassChoice", "Classes", "Output", "RefResult", "RefValue", "Reduction", "Route"]
