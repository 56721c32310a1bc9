"""Module form of every catalog loss (thin ``nn.Module`` wrappers that store parameters)."""

from .boxes import BoxIoU, CIoU, DIoU, GIoU
from .crossentropy import BinaryXloss, CeDice, CrossEntropy
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
from .segmetrics import Confusion, Iou, IouBinary

__all__ = [
    "ArcFace",
    "BinaryXloss",
    "BoxIoU",
    "CIoU",
    "CeDice",
    "CenterLoss",
    "Confusion",
    "CrossEntropy",
    "DIoU",
    "Dice",
    "FCOS",
    "Focal",
    "GIoU",
    "GradientPenalty",
    "Iou",
    "IouBinary",
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
