"""Input handling shared by the reference functions: validation and float64 conversion."""

from __future__ import annotations

from typing import Any

import numpy as np

from lossgraph._checks import check_dtype, label_range_message


def as_f64(fn: str, name: str, x: Any) -> np.ndarray:
    """Validate a float (or bool) array and return it as contiguous float64."""
    x = np.asarray(x)
    check_dtype(fn, name, x, "fb", "a float array")
    return np.ascontiguousarray(x, dtype=np.float64)


def as_labels(fn: str, name: str, x: Any) -> np.ndarray:
    """Validate an integer array and return it as contiguous int64."""
    x = np.asarray(x)
    check_dtype(fn, name, x, "i", "an integer array")
    return np.ascontiguousarray(x, dtype=np.int64)


def check_labels(fn: str, name: str, labels: np.ndarray, num_classes: int, ignore_index: int | None) -> None:
    valid = labels if ignore_index is None else labels[labels != ignore_index]
    if valid.size and (valid.min() < 0 or valid.max() >= num_classes):
        raise ValueError(label_range_message(fn, name, int(valid.min()), int(valid.max()), num_classes, ignore_index))


def reduce(loss: np.ndarray, reduction: str, fn: str) -> tuple[Any, float]:
    """Reduce like torch (``'none' | 'mean' | 'sum'``); also return d(value)/d(element) for the grad."""
    if reduction == "mean":
        return float(loss.mean()), 1.0 / max(loss.size, 1)
    if reduction == "sum":
        return float(loss.sum()), 1.0
    if reduction == "none":
        return loss, 1.0
    raise ValueError(f"{fn}: reduction must be one of 'none', 'mean', 'sum'; got {reduction!r}")


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def softmax_backward(p: np.ndarray, grad_p: np.ndarray, axis: int) -> np.ndarray:
    """Chain ``d/dp`` through ``p = softmax(z)``: ``p * (g - Σ p g)``."""
    return p * (grad_p - (p * grad_p).sum(axis=axis, keepdims=True))
