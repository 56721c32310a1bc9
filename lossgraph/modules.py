"""Module form of every catalog loss (thin ``nn.Module`` wrappers that store parameters)."""

from .boxes import BoxIoU, CIoU, DIoU, GIoU
from .fcos import FCOS
from .focal import SigmoidFocal
from .lovasz import LovaszHinge, LovaszSoftmax
from .metric import ArcFace, CenterLoss

__all__ = ["ArcFace", "BoxIoU", "CenterLoss", "CIoU", "DIoU", "FCOS", "GIoU", "LovaszHinge", "LovaszSoftmax",
           "SigmoidFocal"]
