"""Module form of every catalog loss (thin ``nn.Module`` wrappers that store parameters)."""

from .boxes import BoxIoU, CIoU, DIoU, GIoU
from .crossentropy import BinaryXloss, CeDice, CrossEntropy
from .dice import Dice, SoftDice
from .fcos import FCOS
from .focal import Focal, SigmoidFocal
from .lovasz import LovaszHinge, LovaszSoftmax
from .metric import ArcFace, CenterLoss
from .segmetrics import Iou, IouBinary

__all__ = [
    "ArcFace",
    "BinaryXloss",
    "BoxIoU",
    "CIoU",
    "CeDice",
    "CenterLoss",
    "CrossEntropy",
    "DIoU",
    "Dice",
    "FCOS",
    "Focal",
    "GIoU",
    "Iou",
    "IouBinary",
    "LovaszHinge",
    "LovaszSoftmax",
    "SigmoidFocal",
    "SoftDice",
]
