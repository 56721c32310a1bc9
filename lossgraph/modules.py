"""Module form of every catalog loss (thin ``nn.Module`` wrappers that store parameters)."""

from .crossentropy import BinaryXloss, CeDice, CrossEntropy
from .dice import Dice, SoftDice
from .focal import Focal, SigmoidFocal
from .lovasz import LovaszHinge, LovaszSoftmax
from .metric import ArcFace, CenterLoss
from .segmetrics import Iou, IouBinary

__all__ = [
    "ArcFace",
    "BinaryXloss",
    "CeDice",
    "CenterLoss",
    "CrossEntropy",
    "Dice",
    "Focal",
    "Iou",
    "IouBinary",
    "LovaszHinge",
    "LovaszSoftmax",
    "SigmoidFocal",
    "SoftDice",
]
