"""IoU metrics: equal to Berman's loop code (written out here), hand-computed values, the empty and
all-ignored conventions, and graphs that take raw scores (threshold / argmax inside)."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
import torch

import lossgraph as lg
from lossgraph import reference as ref
from lossgraph.export import OnnxLoss, to_onnx

F = lg.functional


def _mean(values):
    values = list(values)
    return sum(values) / len(values)


def berman_iou_binary(preds, labels, EMPTY=1.0, ignore=None, per_image=True):
    """lovasz_losses.iou_binary, as published."""
    if not per_image:
        preds, labels = (preds,), (labels,)
    ious = []
    for pred, label in zip(preds, labels):
        intersection = ((label == 1) & (pred == 1)).sum()
        union = ((label == 1) | ((pred == 1) & (label != ignore))).sum()
        iou = EMPTY if not union else float(intersection) / float(union)
        ious.append(iou)
    return 100 * _mean(ious)


def berman_iou(preds, labels, C, EMPTY=1.0, ignore=None, per_image=False):
    """lovasz_losses.iou, as published."""
    if not per_image:
        preds, labels = (preds,), (labels,)
    ious = []
    for pred, label in zip(preds, labels):
        iou = []
        for i in range(C):
            if i != ignore:
                intersection = ((label == i) & (pred == i)).sum()
                union = ((label == i) | ((pred == i) & (label != ignore))).sum()
                iou.append(EMPTY if not union else float(intersection) / float(union))
        ious.append(iou)
    ious = [_mean(iou) for iou in zip(*ious)]
    return 100 * np.array(ious)


def _data(shape, c, ignore, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, c, size=(shape[0], *shape[-2:]))
    if ignore is not None:
        y[rng.random(y.shape) < 0.2] = ignore
    if x.ndim == 3:  # binary: the last image is empty (no foreground label, nothing predicted)
        x[-1] = -np.abs(x[-1])
        y[-1] = np.where(y[-1] == 1, 0, y[-1])
    else:  # per class: class C-1 neither labelled nor predicted in the last image
        x[-1, -1] = x[-1].min(0) - 1
        y[-1] = np.where(y[-1] == c - 1, 0, y[-1])
    return x, y


OPTIONS = list(itertools.product([True, False], [None, 255], [1.0, 0.0]))


@pytest.mark.parametrize("per_image,ignore,empty", OPTIONS)
def test_iou_binary_equals_source(per_image, ignore, empty):
    x, y = _data((4, 6, 7), 2, ignore, seed=1)
    want = berman_iou_binary((x > 0).astype(int), y, EMPTY=empty, ignore=ignore, per_image=per_image)
    kw = dict(per_image=per_image, ignore_index=ignore, empty=empty)
    assert F.iou_binary(torch.tensor(x), torch.tensor(y), **kw).item() == pytest.approx(want, rel=1e-6)
    assert ref.iou_binary(x, y, **kw) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("per_image,ignore,empty", OPTIONS + [(True, 0, 1.0), (False, 2, 0.0)])
def test_iou_equals_source(per_image, ignore, empty):
    x, y = _data((3, 4, 5, 6), 4, ignore, seed=2)
    want = berman_iou(x.argmax(1), y, 4, EMPTY=empty, ignore=ignore, per_image=per_image)
    if ignore is not None and ignore < 4:  # the source drops the ignored class; we report 0 there
        want = np.insert(want, ignore, 0.0)
    kw = dict(per_image=per_image, ignore_index=ignore, empty=empty)
    np.testing.assert_allclose(F.iou(torch.tensor(x), torch.tensor(y), **kw).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(ref.iou(x, y, **kw), want, rtol=1e-12)


def test_hand_computed_ious():
    # image 0: pred 1 1 0 / label 1 0 1 -> 1/3 ; image 1: empty (no label 1, nothing predicted) -> EMPTY
    x = torch.tensor([[[2.0, 1.0, -1.0]], [[-1.0, -2.0, -3.0]]])
    y = torch.tensor([[[1, 0, 1]], [[0, 0, 0]]])
    assert F.iou_binary(x, y).item() == pytest.approx(100 * (1 / 3 + 1) / 2, rel=1e-6)
    assert F.iou_binary(x, y, empty=0.0).item() == pytest.approx(100 / 6, rel=1e-6)
    assert F.iou_binary(x, y, per_image=False).item() == pytest.approx(100 / 3, rel=1e-6)
    assert F.iou_binary(x, y, threshold=1.5).item() == pytest.approx(100 * (1 / 2 + 1) / 2, rel=1e-6)
    # a predicted pixel on an ignored label is not counted
    y_ign = torch.tensor([[[1, 255, 1]], [[0, 0, 0]]])
    assert F.iou_binary(x, y_ign, ignore_index=255, per_image=False).item() == pytest.approx(50.0, rel=1e-6)
    # per class: argmax 0 1 2 2 against labels 0 1 1 2 -> class IoUs 1, 1/2, 1/2 ; class 3 empty
    s = torch.zeros(1, 4, 1, 4)
    s[0, [0, 1, 2, 2], 0, [0, 1, 2, 3]] = 1.0
    lab = torch.tensor([[[0, 1, 1, 2]]])
    np.testing.assert_allclose(F.iou(s, lab).numpy(), [100.0, 50.0, 50.0, 100.0], rtol=1e-6)
    np.testing.assert_allclose(F.iou(s, lab, empty=0.0).numpy(), [100.0, 50.0, 50.0, 0.0], rtol=1e-6)


def test_perfect_prediction_and_all_ignored():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=(2, 5, 4))
    scores = np.eye(3, dtype=np.float32)[y].transpose(0, 3, 1, 2)
    np.testing.assert_allclose(F.iou(torch.tensor(scores), torch.tensor(y)).numpy(), [100.0] * 3)
    ignored = np.full_like(y, 255)
    # all ignored: only predicted pixels could count, and they sit on ignored labels -> empty unions
    np.testing.assert_allclose(F.iou(torch.tensor(scores), torch.tensor(ignored), ignore_index=255, empty=0.5).numpy(), [50.0] * 3)
    np.testing.assert_allclose(ref.iou(scores, ignored, ignore_index=255, empty=0.5), [50.0] * 3)
    assert F.iou_binary(torch.tensor(scores[:, 1]), torch.tensor(ignored), ignore_index=255).item() == 100.0


def test_metric_graph_takes_raw_scores_and_has_no_gradient_outputs(tmp_path):
    """with_grad on a metric gives its value graph; the argmax runs inside it, at any shape."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    y = rng.integers(0, 3, size=(2, 6, 7))
    model = to_onnx(lg.IoU(per_image=True), [x, y], tmp_path / "iou.onnx", with_grad=True)
    assert [o.name for o in model.graph.output] == ["loss"]
    assert "ArgMax" in {n.op_type for n in model.graph.node}
    onnx.checker.check_model(model, full_check=True)
    run = OnnxLoss(tmp_path / "iou.onnx", providers="cpu")
    x2 = rng.standard_normal((3, 5, 9, 4)).astype(np.float32)
    y2 = rng.integers(0, 5, size=(3, 9, 4))
    want = berman_iou(x2.argmax(1), y2, 5, per_image=True)
    np.testing.assert_allclose(run(x2, y2), want, rtol=1e-6)
