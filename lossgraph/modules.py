"""Module form of every catalog loss (thin ``nn.Module`` wrappers that store parameters)."""

from .focal import SigmoidFocal
from .lovasz import LovaszHinge, LovaszSoftmax

__all__ = ["LovaszHinge", "LovaszSoftmax", "SigmoidFocal"]
