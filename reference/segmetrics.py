"""Reference IoU metrics (Berman's ``iou_binary`` and ``iou``) and confusion counts, pixel by pixel."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lossgraph._types import ArrayLike

from ._util import parallel_chunks, segmentation_inputs


@njit(cache=True, parallel=True)
def _class_counts(pred, labels, num_classes, ignore, use_ignore, chunks):
    """pred, labels (N, P) -> intersection, union (N, C): ``y=c ∧ pred=c``, ``y=c ∨ (pred=c ∧ valid)``.

    Per pixel that is ``inter[y] += pred == y``, ``union[y] += 1`` (for a label in ``[0, C)``) and
    ``union[pred] += 1`` when the pixel is valid and ``pred != y``. ``chunks`` pixel ranges run in
    parallel, each into its own partial counts.
    """
    n_groups, n_pix = pred.shape
    n = n_groups * n_pix
    parts = np.zeros((chunks, 2, n_groups, num_classes))
    for j in prange(chunks):
        for k in range(n * j // chunks, n * (j + 1) // chunks):
            g = k // n_pix
            i = k - g * n_pix
            y, q = labels[g, i], np.int64(pred[g, i])
            if 0 <= y < num_classes:
                parts[j, 1, g, y] += 1.0
                if q == y:
                    parts[j, 0, g, y] += 1.0
            if q != y and not (use_ignore and y == ignore):
                parts[j, 1, g, q] += 1.0
    counts = parts.sum(axis=0)
    return counts[0], counts[1]


def _ious(pred, lab, num_classes, per_image, ignore_index, empty):
    n = lab.shape[0] if per_image else 1
    ignore = -(2**62) if ignore_index is None else int(ignore_index)
    chunks = parallel_chunks(lab.size)
    inter, union = _class_counts(pred.reshape(n, -1), lab.reshape(n, -1), num_classes, ignore,
                                 ignore_index is not None, chunks)
    return 100.0 * np.where(union > 0, inter / np.maximum(union, 1), empty).mean(0)


def iou_binary(
    logits: ArrayLike,
    labels: ArrayLike,
    per_image: bool = True,
    ignore_index: int | None = None,
    empty: float = 1.0,
    threshold: float = 0.0,
) -> float:
    """Foreground IoU of ``logits > threshold`` in percent; logits, labels (B, H, W)."""
    x, lab, _, _ = segmentation_inputs("iou_binary", "logits", logits, labels, ignore_index, binary=True,
                                       float32_ok=True)
    pred = x > np.float64(threshold)  # compared in float64, without a float64 copy of x
    return float(_ious(pred, lab, 2, per_image, ignore_index, empty)[1])


def iou(
    logits: ArrayLike,
    labels: ArrayLike,
    per_image: bool = False,
    ignore_index: int | None = None,
    empty: float = 1.0,
) -> np.ndarray:
    """Per-class IoU of ``argmax(logits, 1)`` in percent, ``(C,)``; the ignored class id (if in
    ``[0, C)``) reads 0. logits (B, C, H, W), labels (B, H, W)."""
    x, lab, _, c = segmentation_inputs("iou", "logits", logits, labels, ignore_index)
    out = _ious(np.argmax(x, axis=1), lab, c, per_image, ignore_index, empty)
    if ignore_index is not None and 0 <= ignore_index < c:
        out[ignore_index] = 0.0
    return out


@njit(cache=True, parallel=True)
def _confusion_counts(x, labels, ignore, use_ignore, chunks):
    """x (B, C, H, W), labels (B, H, W) -> (C, C) float64 counts: ``M[y, argmax_c x[:, c]] += 1`` for
    each counted pixel (first maximum wins); ``chunks`` pixel ranges in parallel, each into its own
    partial counts. Also returns whether a label is out of range or a score NaN or inf."""
    b, c, h, w = x.shape
    hw = h * w
    n = b * hw
    parts = np.zeros((chunks, c, c))
    broken = np.zeros(chunks, dtype=np.bool_)
    for j in prange(chunks):
        for k in range(n * j // chunks, n * (j + 1) // chunks):
            g = k // hw
            i = (k - g * hw) // w
            jj = k - g * hw - i * w
            best = 0
            for q in range(c):
                v = x[g, q, i, jj]
                if not np.isfinite(v):
                    broken[j] = True
                if v > x[g, best, i, jj]:
                    best = q
            y = labels[g, i, jj]
            if use_ignore and y == ignore:
                continue
            if y < 0 or y >= c:
                broken[j] = True
                continue
            parts[j, y, best] += 1.0
    return parts.sum(axis=0), broken.any()


def confusion(logits: ArrayLike, labels: ArrayLike, ignore_index: int | None = None) -> np.ndarray:
    """Confusion counts ``M[i, j]`` = pixels with label i and ``argmax(logits, 1) = j``, float64
    ``(C, C)``; logits (B, C, H, W), labels (B, H, W); pixels labelled ``ignore_index`` not counted."""
    x, lab, _, _ = segmentation_inputs("confusion", "logits", logits, labels, ignore_index, float32_ok=True)
    ignore = -(2**62) if ignore_index is None else int(ignore_index)
    counts, broken = _confusion_counts(np.ascontiguousarray(x), np.ascontiguousarray(lab), ignore,
                                       ignore_index is not None, parallel_chunks(lab.size))
    return np.full_like(counts, np.nan) if broken else counts
