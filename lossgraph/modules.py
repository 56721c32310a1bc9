"""Module form of every catalog loss (thin ``nn.Module`` wrappers that store parameters)."""

from .crossentropy import BinaryXloss, CeDice, CrossEntropy
from .dice import Dice, SoftDice
from .focal import Focal, SigmoidFocal
from .lovasz import LovaszHinge, LovaszSoftmax
from .metrics import Iou, IouBinary

__all__ = [
    "BinaryXloss",
    "CeDice",
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
