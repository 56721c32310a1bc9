"""Input handling shared by the reference functions: validation and float64 conversion."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from lossgraph._checks import InputError, InputTypeError, check_dtype, check_label_dtype, check_shapes, check_whole, to_numpy
from lossgraph._checks import check_labels as shared_check_labels
from lossgraph._types import Reduction


def as_f64(fn: str, name: str, x: Any) -> np.ndarray:
    """Validate a float (or bool) array (numpy, torch tensor or list) and return it as contiguous float64."""
    x = to_numpy(x)
    check_dtype(fn, name, x, "fb", "a float array")
    return np.ascontiguousarray(x, dtype=np.float64)


def as_float(fn: str, name: str, x: Any) -> np.ndarray:
    """Validate a float (or bool) array; float32 and float64 come back as they are (contiguous),
    anything else as float64. For kernels that read each element as float64 and compute in float64,
    so a float32 input needs no float64 copy."""
    x = to_numpy(x)
    check_dtype(fn, name, x, "fb", "a float array")
    if x.dtype in (np.float32, np.float64):
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(x, dtype=np.float64)


def as_labels(fn: str, name: str, x: Any, allow_float: bool = False) -> np.ndarray:
    """Validate class ids (any integer dtype; with ``allow_float`` whole-valued floats, for binary
    targets) and return them as contiguous int64. The range is checked by :func:`check_labels`."""
    x = to_numpy(x)
    check_label_dtype(fn, name, x, allow_float, noun="array")
    if x.dtype.kind == "f":
        check_whole(fn, name, x)
    return np.ascontiguousarray(x, dtype=np.int64)


def check_labels(fn: str, name: str, labels: np.ndarray, num_classes: int, ignore_index: int | None) -> None:
    """Labels in ``[0, num_classes)`` or ``ignore_index`` (the message shared with torch and the runner)."""
    shared_check_labels(fn, name, labels, num_classes, ignore_index)


def reduce(loss: np.ndarray, reduction: Reduction, fn: str) -> tuple[Any, float]:
    """Reduce like torch (``'none' | 'mean' | 'sum'``); also return d(value)/d(element) for the grad."""
    if reduction == "mean":  # the mean of no elements is 0 (torchvision's box losses)
        return float(loss.sum()) / max(loss.size, 1), 1.0 / max(loss.size, 1)
    if reduction == "sum":
        return float(loss.sum()), 1.0
    if reduction == "none":
        return loss, 1.0
    raise InputError(f"{fn}: reduction must be one of 'none', 'mean', 'sum'; got {reduction!r}")


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def softmax_backward(p: np.ndarray, grad_p: np.ndarray, axis: int) -> np.ndarray:
    """Chain ``d/dp`` through ``p = softmax(z)``: ``p * (g - Σ p g)``."""
    return p * (grad_p - (p * grad_p).sum(axis=axis, keepdims=True))


def segmentation_inputs(fn: str, name: str, pred: Any, labels: Any, ignore_index: int | None, binary: bool = False,
                        float32_ok: bool = False):
    """Validate ``pred (B, C, H, W)`` (``(B, H, W)`` when ``binary``) and ``labels (B, H, W)``.

    Returns ``(pred float64, labels int64, valid bool (B, H, W), number of classes)``; with
    ``float32_ok`` a float32 ``pred`` is returned as it is (:func:`as_float`).
    """
    x = (as_float if float32_ok else as_f64)(fn, name, pred)
    lab = as_labels(fn, "labels", labels, allow_float=binary)
    if binary:
        check_shapes(fn, [(name, x, ("B", "H", "W")), ("labels", lab, ("B", "H", "W"))])
        c = 2
    else:
        check_shapes(fn, [(name, x, ("B", "C", "H", "W")), ("labels", lab, ("B", "H", "W"))])
        c = x.shape[1]
    check_labels(fn, "labels", lab, c, ignore_index)
    valid = np.ones(lab.shape, dtype=bool) if ignore_index is None else lab != ignore_index
    return x, lab, valid, c


def class_table(fn: str, name: str, values: Any, num_classes: int, default: float = 1.0) -> np.ndarray:
    """A per-class parameter as a float64 ``(C,)`` array (``default`` everywhere when ``values`` is None)."""
    if values is None:
        return np.full(num_classes, default)
    if np.isscalar(values):
        raise InputTypeError(f"{fn}: {name} must be a list of per-class values; got {values!r}")
    table = np.asarray([float(v) for v in values], dtype=np.float64)
    if table.shape[0] != num_classes:
        raise InputError(f"{fn}: {name} must have one value per class (C = {num_classes}); got {table.shape[0]}")
    return table


def parallel_chunks(n: int) -> int:
    """How many pixel ranges a partial-sums kernel splits ``n`` elements into: one per 4096, at most
    64 (each chunk sums into its own row, so the result does not depend on the thread count)."""
    return max(1, min(64, n // 4096))


@njit(cache=True, inline="always")
def power(x, y):
    """``x**y`` in a kernel, with plain products for the common ``y`` = 1 and 2 (a libm ``pow`` call
    costs ~20 ns, which dominated the focal kernels)."""
    return x * x if y == 2.0 else (x if y == 1.0 else x**y)
