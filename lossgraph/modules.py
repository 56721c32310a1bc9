"""Module form of every catalog loss (thin ``nn.Module`` wrappers that store parameters)."""

from .focal import SigmoidFocal
from .lovasz import LovaszHinge, LovaszSoftmax
from .metric import ArcFace, CenterLoss

__all__ = ["ArcFace", "CenterLoss", "LovaszHinge", "LovaszSoftmax", "SigmoidFocal"]
