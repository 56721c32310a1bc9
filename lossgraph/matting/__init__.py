"""Image-matting losses on alpha mattes, and loss sets that route samples between matting and segmentation.

Inputs are ``pred`` and ``target`` alpha mattes ``(B, 1, H, W)`` in ``[0, 1]`` and the trimap-derived
``mask`` ``(B, 1, H, W)``, 1 on the unknown region. Masked terms are region means,

    loss = Σ l·r · area / (H·W·Σ r)        (0 when Σ r = 0)

with ``r = mask`` (unknown region) or ``1 - mask`` (known region). The default ``area=None`` means
``area = H·W``: the masked mean at any size. ``area=262144`` reproduces the source documents'
normaliser ``B·512²/Σ mask`` exactly (written for 512×512 crops).

The Laplacian term compares 5-level Laplacian pyramids (binomial 5×5 kernel, reflect padding); it is
linear, so the pyramid of ``pred - target`` is built once. Each level is a product with small
per-axis operator matrices (crop, reflect pad, blur, ``[::2]``, zero insertion) built from ``arange``
comparisons: sizes stay symbolic (a graph exported at 64×64 runs at any size >= 64) and the gradient
is plain MatMul. Sobel gradients are sums of shifted slices of a zero-padded image.

Three modules, one concern each: :mod:`~lossgraph.matting.operators` (Sobel, Laplacian pyramid),
:mod:`~lossgraph.matting.terms` (the per-pixel terms, their losses and Modules),
:mod:`~lossgraph.matting.sets` (the loss sets). Every public name is importable from here.
"""

from .operators import BINOMIAL, laplacian_min_size, laplacian_pyramid, sobel
from .sets import ROUTES, TERMS, MattingSet, SegMattingSet, matting_set, seg_matting_set, segmentation_samples
from .terms import (
    MATTE,
    GradientPenalty,
    KnownL1,
    KnownSmoothL1,
    Laplacian,
    MattingBCE,
    MattingFocal,
    SmoothL1,
    UnknownL1,
    gradient_penalty,
    known_l1,
    known_smooth_l1,
    laplacian,
    matting_bce,
    matting_focal,
    smooth_l1,
    unknown_l1,
)

__all__ = [
    "BINOMIAL", "MATTE", "ROUTES", "TERMS",
    "GradientPenalty", "KnownL1", "KnownSmoothL1", "Laplacian", "MattingBCE", "MattingFocal", "MattingSet",
    "SegMattingSet", "SmoothL1", "UnknownL1",
    "gradient_penalty", "known_l1", "known_smooth_l1", "laplacian", "laplacian_min_size", "laplacian_pyramid",
    "matting_bce", "matting_focal", "matting_set", "seg_matting_set", "segmentation_samples", "smooth_l1", "sobel",
    "unknown_l1",
]
