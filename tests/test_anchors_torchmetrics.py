"""Equivalences with the installed torchmetrics (the ``test`` extra pins ``torchmetrics>=1.9,<1.10``):
``iou`` and ``iou_binary`` against its Jaccard metrics, one batch and accumulated over several batches
(a dataset), with ``ignore_index``, empty unions and classes never predicted. torchmetrics computes
its ratios in float32, as the graphs do; the tolerance is float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

tm = pytest.importorskip("torchmetrics", reason="the test extra installs torchmetrics")

import lossgraph as lg  # noqa: E402
from _anchors import seg_inputs  # noqa: E402
from torchmetrics.classification import BinaryJaccardIndex, MulticlassJaccardIndex  # noqa: E402
from torchmetrics.segmentation import MeanIoU  # noqa: E402

F = lg.functional
SHAPES = [(2, 4, 5, 6), (3, 3, 1, 7), (1, 5, 4, 4), (1, 2, 1, 1)]
FP32 = 1e-6  # both sides divide in float32


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=FP32, atol=FP32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ignore", [None, 255])
@pytest.mark.parametrize("empty", [0.0, 1.0])
def test_iou_equals_multiclass_jaccard(shape, ignore, empty):
    """``iou(per_image=False, empty=e, ignore_index=i) / 100`` is ``MulticlassJaccardIndex(C,
    average='none', ignore_index=i, zero_division=e)`` of the logits (both take the argmax; the last
    class is never in the labels, so its union is empty where it is never predicted either)."""
    x, y = seg_inputs(shape, seed=sum(shape), ignore=ignore, classes=max(shape[1] - 1, 1), dtype=torch.float32)
    x = x.detach()
    want = MulticlassJaccardIndex(shape[1], average="none", ignore_index=ignore, zero_division=empty)(x, y)
    _close(F.iou(x, y, ignore_index=ignore, empty=empty) / 100, want)


def test_iou_over_batches_equals_jaccard_accumulated():
    """A dataset in three batches: torchmetrics' ``update`` per batch then ``compute`` equals ``iou`` of
    the whole dataset at once (Σ intersections / Σ unions per class, not a mean of batch ratios)."""
    metric = MulticlassJaccardIndex(4, average="none", ignore_index=255, zero_division=1.0)
    xs, ys = [], []
    for seed in range(3):
        x, y = seg_inputs((2, 4, 3, 5), seed=seed, ignore=255, dtype=torch.float32)
        metric.update(x.detach(), y)
        xs.append(x.detach())
        ys.append(y)
    x, y = torch.cat(xs), torch.cat(ys)
    _close(F.iou(x, y, ignore_index=255) / 100, metric.compute())
    batch_mean = torch.stack([F.iou(a, b, ignore_index=255) for a, b in zip(xs, ys)]).mean(0) / 100
    assert (batch_mean - metric.compute()).abs().max() > 1e-3  # the mean of batch ratios is another number


def test_iou_per_image_and_meaniou():
    """``MeanIoU(per_class=True)`` averages each class over the images where its union is not empty;
    ``iou(per_image=True)`` over all images, an empty union counting ``empty``. With ``u = iou(empty=1)``
    and ``z = iou(empty=0)`` (fractions), the share of images with an empty union is ``u - z``, so
    MeanIoU is ``z / (1 - (u - z))``."""
    x, y = seg_inputs((4, 3, 2, 3), seed=5, classes=2, dtype=torch.float32)
    x = x.detach()
    x[:, 2] = -10.0  # class 2 never predicted ...
    x[0, 2, 0, 0] = 10.0  # ... but in image 0
    u = F.iou(x, y, per_image=True, empty=1.0) / 100
    z = F.iou(x, y, per_image=True, empty=0.0) / 100
    want = MeanIoU(num_classes=3, per_class=True, input_format="index")(x.argmax(1), y)
    _close(z / (1 - (u - z)), want)
    assert u[2] > z[2]  # class 2: some images have an empty union, so the two conventions differ


@pytest.mark.parametrize("shape", [(2, 5, 6), (3, 1, 7), (1, 1, 1)])
@pytest.mark.parametrize("ignore", [None, 255])
@pytest.mark.parametrize("empty", [0.0, 1.0])
def test_iou_binary_equals_binary_jaccard(shape, ignore, empty):
    """``iou_binary(per_image=False, threshold=t) / 100`` is ``BinaryJaccardIndex(threshold=t)`` of
    probabilities; of logits it is ``threshold=0`` here and torchmetrics' default ``0.5``, which applies
    the sigmoid itself to values outside [0, 1]."""
    rng = np.random.default_rng(7 + sum(shape))
    logits = torch.tensor(rng.standard_normal(shape) * 2, dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 2, size=shape))
    if ignore is not None:
        y[torch.tensor(rng.random(shape) < 0.3)] = ignore
    kw = dict(ignore_index=ignore, zero_division=empty)
    want = BinaryJaccardIndex(threshold=0.5, **kw)(logits, y)
    _close(F.iou_binary(logits, y, per_image=False, ignore_index=ignore, empty=empty) / 100, want)
    probas = torch.sigmoid(logits)
    for t in (0.3, 0.5):
        want = BinaryJaccardIndex(threshold=t, **kw)(probas, y)
        got = F.iou_binary(probas, y, per_image=False, ignore_index=ignore, empty=empty, threshold=t)
        _close(got / 100, want)


def test_iou_binary_empty_union():
    """Nothing labelled or predicted foreground: both give ``empty`` / ``zero_division``."""
    x = -torch.ones(2, 3, 4)
    y = torch.zeros(2, 3, 4, dtype=torch.int64)
    for empty in (0.0, 1.0):
        want = BinaryJaccardIndex(zero_division=empty)(x, y)
        _close(F.iou_binary(x, y, per_image=False, empty=empty) / 100, want)
        assert float(want) == empty
