"""Module form of every catalog loss (thin ``nn.Module`` wrappers that store parameters).

Class names are the catalog name in CapWords, abbreviations in their usual capitals
(``IoU``, ``BCE``, ``CE``, ``L1``, ``FCOS``, ``XLoss``: CONTRIBUTING.md, Style). The names before
that scheme still resolve, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings
from typing import Any

from .boxes import BoxIoU, CIoU, DIoU, GIoU
from .crossentropy import BinaryXLoss, CEDice, CrossEntropy
from .dice import Dice, SoftDice
from .fcos import FCOS
from .focal import Focal, SigmoidFocal
from .lovasz import LovaszHinge, LovaszSoftmax
from .matting import (
    GradientPenalty,
    KnownL1,
    KnownSmoothL1,
    Laplacian,
    MattingBCE,
    MattingFocal,
    MattingSet,
    SegMattingSet,
    SmoothL1,
    UnknownL1,
)
from .metric import ArcFace, CenterLoss
from .segmetrics import Confusion, IoU, IoUBinary

# old name -> new name (lossgraph 0.x); removed in a later release
RENAMED = {"Iou": "IoU", "IouBinary": "IoUBinary", "BinaryXloss": "BinaryXLoss", "CeDice": "CEDice"}


def __getattr__(name: str) -> Any:
    if name in RENAMED:
        warnings.warn(f"lossgraph.{name} is deprecated; use lossgraph.{RENAMED[name]}", DeprecationWarning,
                      stacklevel=2)
        return globals()[RENAMED[name]]
    raise AttributeError(f"module 'lossgraph.modules' has no attribute {name!r}")

__all__ = [
    "ArcFace",
    "BinaryXLoss",
    "BoxIoU",
    "CIoU",
    "CEDice",
    "CenterLoss",
    "Confusion",
    "CrossEntropy",
    "DIoU",
    "Dice",
    "FCOS",
    "Focal",
    "GIoU",
    "GradientPenalty",
    "IoU",
    "IoUBinary",
    "KnownL1",
    "KnownSmoothL1",
    "Laplacian",
    "LovaszHinge",
    "LovaszSoftmax",
    "MattingBCE",
    "MattingFocal",
    "MattingSet",
    "SegMattingSet",
    "SigmoidFocal",
    "SmoothL1",
    "SoftDice",
    "UnknownL1",
]
