"""Seeded example-input makers shared by the catalog entries (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def logits(rng: np.random.Generator, shape: Sequence[int], scale: float = 2.0) -> np.ndarray:
    """Gaussian logits, float32 (continuous, so sorts and subgradients have no ties)."""
    return (scale * rng.standard_normal(tuple(shape))).astype(np.float32)


def probabilities(rng: np.random.Generator, shape: Sequence[int], axis: int = 1) -> np.ndarray:
    """Softmax of Gaussian logits along ``axis``, float32; one channel gives sigmoid probabilities."""
    z = logits(rng, shape).astype(np.float64)
    if shape[axis] == 1:
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def labels(
    rng: np.random.Generator,
    shape: Sequence[int],
    num_classes: int,
    ignore_index: int | None = None,
    ignore_fraction: float = 0.15,
) -> np.ndarray:
    """Integer labels in ``[0, num_classes)``, int64, with a fraction set to ``ignore_index``."""
    out = rng.integers(0, num_classes, size=tuple(shape), dtype=np.int64)
    if ignore_index is not None:
        out[rng.random(tuple(shape)) < ignore_fraction] = ignore_index
    return out


def binary(rng: np.random.Generator, shape: Sequence[int], p: float = 0.4) -> np.ndarray:
    """0/1 targets stored as float32."""
    return (rng.random(tuple(shape)) < p).astype(np.float32)
