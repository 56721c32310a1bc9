"""Module form of every catalog loss (thin ``nn.Module`` wrappers that store parameters)."""

from .boxes import CIoU, DIoU, GIoU, BoxIoU
from .focal import SigmoidFocal
from .lovasz import LovaszHinge, LovaszSoftmax

__all__ = ["BoxIoU", "CIoU", "DIoU", "GIoU", "LovaszHinge", "LovaszSoftmax", "SigmoidFocal"]
