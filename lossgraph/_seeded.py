"""Seeded initial values of learned loss parameters (class centers, class weights), numpy only.

The torch module and the reference both call :func:`seeded_normal`, so a loss built with a
parameter (``centers_from="parameter"``) and its float64 reference see exactly the same values
without the reference importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def seeded_normal(seed: int, shape: Sequence[int]) -> np.ndarray:
    """Standard-normal float32 array of ``shape`` from ``numpy.random.default_rng(seed)``."""
    return np.random.default_rng(seed).standard_normal(tuple(int(d) for d in shape)).astype(np.float32)
