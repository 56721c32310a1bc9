"""Reference IoU metrics (Berman's ``iou_binary`` and ``iou``), counted pixel by pixel."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._util import segmentation_inputs


@njit(cache=True)
def _class_counts(pred, labels, num_classes, ignore, use_ignore):
    """pred, labels (N, P) -> intersection, union (N, C): ``y=c ∧ pred=c``, ``y=c ∨ (pred=c ∧ valid)``."""
    n_groups, n_pix = pred.shape
    inter = np.zeros((n_groups, num_classes))
    union = np.zeros((n_groups, num_classes))
    for n in range(n_groups):
        for i in range(n_pix):
            y, q = labels[n, i], pred[n, i]
            valid = not (use_ignore and y == ignore)
            for c in range(num_classes):
                if y == c and q == c:
                    inter[n, c] += 1
                if y == c or (q == c and valid):
                    union[n, c] += 1
    return inter, union


def _ious(pred, lab, num_classes, per_image, ignore_index, empty):
    n = lab.shape[0] if per_image else 1
    ignore = -(2**62) if ignore_index is None else int(ignore_index)
    inter, union = _class_counts(pred.reshape(n, -1), lab.reshape(n, -1), num_classes, ignore, ignore_index is not None)
    return 100.0 * np.where(union > 0, inter / np.maximum(union, 1), empty).mean(0)


def iou_binary(logits, labels, per_image: bool = True, ignore_index: int | None = None, empty: float = 1.0,
               threshold: float = 0.0):
    """Foreground IoU of ``logits > threshold`` in percent; logits, labels (B, H, W)."""
    x, lab, _, _ = segmentation_inputs("iou_binary", "logits", logits, labels, ignore_index, binary=True)
    return float(_ious((x > threshold).astype(np.int64), lab, 2, per_image, ignore_index, empty)[1])


def iou(logits, labels, per_image: bool = False, ignore_index: int | None = None, empty: float = 1.0):
    """Per-class IoU of ``argmax(logits, 1)`` in percent, ``(C,)``; the ignored class id (if in
    ``[0, C)``) reads 0. logits (B, C, H, W), labels (B, H, W)."""
    x, lab, _, c = segmentation_inputs("iou", "logits", logits, labels, ignore_index)
    out = _ious(np.argmax(x, axis=1), lab, c, per_image, ignore_index, empty)
    if ignore_index is not None and 0 <= ignore_index < c:
        out[ignore_index] = 0.0
    return out
