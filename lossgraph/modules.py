"""Module form of every catalog loss (thin ``nn.Module`` wrappers that store parameters)."""

from .focal import SigmoidFocal
from .lovasz import LovaszHinge, LovaszSoftmax
from .matting import GradientPenalty, KnownL1, KnownSmoothL1, Laplacian, MattingBCE, MattingFocal, MattingSet, SegMattingSet, SmoothL1, UnknownL1

__all__ = [
    "GradientPenalty",
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
    "UnknownL1",
]
