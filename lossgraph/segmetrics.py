"""Segmentation metrics as graphs: binary and per-class IoU (in percent), Berman's ``iou_binary``/``iou``,
and the confusion counts that dataset-level metrics (mIoU over a whole dataset) are summed from.

The prediction is made inside the graph (threshold / argmax), so an exported metric takes the raw
network output. Counts are integer sums; no gradient (a metric has no differentiable input).
"""

from __future__ import annotations

import torch

from ._functional import LossModule, check_segmentation, is_tracing, one_hot, valid_mask


def _count(mask: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """int64 number of True entries of ``mask`` over ``dims``, which end with the last axis.

    Rows along the last axis are counted in float32 (exact below 2**24 per row) and the row counts
    added in int64, so the count is exact at any size; onnxruntime reduces float32 about 3x faster
    than the int64 a bool sum would be counted in (benchmarks/RESULTS.md).
    """
    if not is_tracing():  # eager: ATen counts bools directly
        return torch.count_nonzero(mask, dim=dims)
    rows = mask.to(torch.float32).sum(-1).to(torch.int64)
    return rows.sum(dims[:-1]) if len(dims) > 1 else rows


def _iou_percent(inter: torch.Tensor, union: torch.Tensor, empty: float) -> torch.Tensor:
    """``100 · inter / union``, ``100 · empty`` where the union is empty."""
    ok = union > 0
    ratio = inter.to(torch.float32) / torch.where(ok, union, torch.ones_like(union)).to(torch.float32)
    return 100.0 * torch.where(ok, ratio, torch.full_like(ratio, empty))


def iou_binary(
    logits: torch.Tensor,
    labels: torch.Tensor,
    per_image: bool = True,
    ignore_index: int | None = None,
    empty: float = 1.0,
    threshold: float = 0.0,
) -> torch.Tensor:
    """Foreground IoU of the thresholded prediction, in percent (Berman's ``iou_binary``).

    ``pred = logits > threshold``; ``IoU = |y=1 ∧ pred| / |y=1 ∨ (pred ∧ valid)|``; an empty union
    counts as ``empty``; per image then averaged, or over the whole batch; times 100.

    Args:
        logits: ``(B, H, W)`` float scores (use ``threshold=0.5`` for probabilities).
        labels: ``(B, H, W)`` integers, 0 or 1, or ``ignore_index``.
        per_image: mean of per-image IoUs (source default True), else one IoU over the batch.
        ignore_index: label value whose pixels are ignored.
        empty: IoU of an image with an empty union (source ``EMPTY=1.``).
        threshold: a pixel is predicted foreground when ``logits > threshold``.

    Returns:
        float32 scalar in ``[0, 100]``. All pixels ignored gives ``100 · empty``.

    Equals ``iou_binary(logits > threshold, labels, EMPTY=empty, ignore=ignore_index, per_image)``
    of Berman's ``lovasz_losses.py``. With ``per_image=False``, ``iou_binary(...) / 100`` of
    probabilities is torchmetrics' ``BinaryJaccardIndex(threshold, ignore_index, zero_division=empty)``
    (of logits: ``threshold=0`` here, torchmetrics' 0.5, which applies the sigmoid itself).
    Tested: ``tests/test_anchors_torchmetrics.py``.

    Example:
        >>> round(float(iou_binary(torch.tensor([[[1.0, 1.0, -1.0]]]), torch.tensor([[[1, 0, 1]]]))), 4)
        33.3333
    """
    fn = "iou_binary"
    _, labels = check_segmentation(fn, "logits", logits, labels, ignore_index, num_classes=2, allow_float=True)
    pred = logits > threshold
    fg = labels == 1
    inter = fg & pred
    union = fg | (pred & valid_mask(labels, ignore_index))
    dims = (1, 2) if per_image else (0, 1, 2)
    return _iou_percent(_count(inter, dims), _count(union, dims), empty).mean()


def iou(
    logits: torch.Tensor,
    labels: torch.Tensor,
    per_image: bool = False,
    ignore_index: int | None = None,
    empty: float = 1.0,
) -> torch.Tensor:
    """Per-class IoU of the argmax prediction, in percent (Berman's ``iou``).

    ``pred = argmax_C logits``; for each class ``c``:
    ``IoU_c = |y=c ∧ pred=c| / |y=c ∨ (pred=c ∧ valid)|``, ``empty`` for an empty union; per image
    then averaged over images, or over the whole batch; times 100.

    Args:
        logits: ``(B, C, H, W)`` float scores (logits or probabilities: only the argmax counts; ties
            go to the lowest class, like ``argmax``).
        labels: ``(B, H, W)`` integers in ``[0, C)`` or ``ignore_index``.
        per_image: average per-image IoUs (source default False: one IoU over the batch).
        ignore_index: label value whose pixels are ignored.
        empty: IoU of a class with an empty union (source ``EMPTY=1.``).

    Returns:
        float32 ``(C,)`` in ``[0, 100]``. All pixels ignored gives ``100 · empty`` for classes never
        predicted. When ``ignore_index`` is a class id in ``[0, C)`` the source drops that class from
        its output; here its entry is 0, so the output keeps shape ``(C,)``.

    Equals ``iou(argmax(logits, 1), labels, C, EMPTY=empty, ignore=ignore_index, per_image)`` of
    Berman's ``lovasz_losses.py`` (for ``ignore_index`` outside ``[0, C)``). With ``per_image=False``,
    ``iou(...) / 100`` is torchmetrics' ``MulticlassJaccardIndex(C, average="none", ignore_index,
    zero_division=empty)``, also accumulated over batches (``update`` per batch: the dataset IoU).
    torchmetrics' ``MeanIoU(per_class=True)`` averages each class over the images where its union is
    not empty, ``per_image=True`` over all images (an empty union counts ``empty``).
    Tested: ``tests/test_anchors_torchmetrics.py``.

    Example:
        >>> x = torch.tensor([[[[2.0, 0.0]], [[0.0, 2.0]]]]); y = torch.tensor([[[0, 0]]])
        >>> iou(x, y).tolist()
        [50.0, 0.0]
    """
    fn = "iou"
    c, labels = check_segmentation(fn, "logits", logits, labels, ignore_index)
    if not is_tracing():
        inter_n, union_n = _confusion_counts(argmax_c(logits), labels, c, ignore_index, per_image)
        ious = _iou_percent(inter_n, union_n, empty)
        return _drop_ignored_class(ious.mean(0) if per_image else ious, ignore_index)
    pred = one_hot(argmax_c(logits), c)  # (B, C, H, W)
    truth = one_hot(labels, c)
    inter = truth & pred
    union = truth | (pred & valid_mask(labels, ignore_index).unsqueeze(1))
    if per_image:
        ious = _iou_percent(_count(inter, (2, 3)), _count(union, (2, 3)), empty).mean(0)
    else:
        ious = _iou_percent(_count(inter, (0, 2, 3)), _count(union, (0, 2, 3)), empty)
    return _drop_ignored_class(ious, ignore_index)


def argmax_c(logits: torch.Tensor) -> torch.Tensor:
    """``argmax`` over the class axis 1 of ``(B, C, H, W)`` scores: ``(B, H, W)`` int64, ties to the lowest class.

    Eager mode takes the indices of ``max(1)``: ATen's max-with-indices kernel over a strided axis runs
    2x faster than its ``argmax`` (45 vs 92 ms at 8x21x256x256, one thread), with the same first-index
    ties. Graphs keep ``ArgMax``.
    """
    if is_tracing():
        return torch.argmax(logits, dim=1)
    return logits.max(1).indices


def _drop_ignored_class(ious: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """``ious (C,)`` with the entry of ``ignore_index`` set to 0 where it is a class id."""
    if ignore_index is None:
        return ious
    classes = torch.arange(ious.shape[-1], device=ious.device)
    return torch.where(classes == ignore_index, torch.zeros_like(ious), ious)


def _confusion_counts(
    pred: torch.Tensor, labels: torch.Tensor, c: int, ignore_index: int | None, per_image: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager form of the per-class counts: ``(inter, union)`` int64, ``(B, C)`` or ``(C,)``.

    One ``bincount`` of ``(image,) label, prediction`` codes over the valid pixels gives the
    confusion matrix (ignored pixels count in a spare bin), instead of two ``(B, C, H, W)`` one-hot
    tensors. ``inter`` is its diagonal and ``union = |y = c| + |pred = c, valid| - inter``, which
    equals the graph's ``|y = c ∨ (pred = c ∧ valid)|`` for every class but ``ignore_index``
    (whose entry the caller zeroes).
    """
    b = labels.shape[0] if per_image else 1
    code = labels * c + pred
    if per_image:
        code = code + torch.arange(b, device=labels.device).reshape(-1, 1, 1) * (c * c)
    spare = b * c * c
    if ignore_index is not None:
        code = torch.where(labels == ignore_index, spare, code)
    conf = torch.bincount(code.reshape(-1), minlength=spare + 1)[:spare].reshape(b, c, c)
    inter = torch.diagonal(conf, dim1=1, dim2=2)
    union = conf.sum(2) + conf.sum(1) - inter
    return (inter, union) if per_image else (inter[0], union[0])


def confusion(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """Confusion counts of the argmax prediction: ``M[i, j] = #{pixels: label = i, argmax_C logits = j}``.

    The per-file sufficient statistic of dataset-level IoU / Dice / accuracy: summed over files,
    ``IoU_c = M[c, c] / (Σ_j M[c, j] + Σ_i M[i, c] - M[c, c])`` is the dataset IoU of mmsegmentation and
    torchmetrics' ``MulticlassJaccardIndex`` (``lossgraph summarize`` does that sum).

    Counted exactly: each counted pixel adds 1.0 to bin ``label · C + prediction`` of a float64 vector
    (``scatter_add``; integers are exact in float64 up to 2**53 pixels), no one-hot tensors.

    Args:
        logits: ``(B, C, H, W)`` float scores (logits or probabilities: only the argmax counts; ties go
            to the lowest class, like ``argmax``).
        labels: ``(B, H, W)`` integers in ``[0, C)`` or ``ignore_index``.
        ignore_index: label value whose pixels are not counted.

    Returns:
        float64 ``(C, C)``, rows: ground truth, columns: prediction. All pixels ignored gives zeros.
        A NaN or inf in ``logits`` makes every entry NaN, and in a graph so does a label outside
        ``[0, C)`` other than ``ignore_index`` (which eager mode refuses): never a believable count.

    Equals ``torchmetrics.functional.multiclass_confusion_matrix(argmax(logits, 1), labels, C,
    ignore_index=ignore_index)`` (as float64).

    Example:
        >>> x = torch.tensor([[[[2.0, 0.0, 1.0]], [[0.0, 2.0, 0.0]]]]); y = torch.tensor([[[0, 0, 1]]])
        >>> confusion(x, y).tolist()
        [[1.0, 1.0], [1.0, 0.0]]
    """
    fn = "confusion"
    c, labels = check_segmentation(fn, "logits", logits, labels, ignore_index)
    counted = valid_mask(labels, ignore_index) & (labels >= 0) & (labels < c)
    pred = argmax_c(logits)
    bins = torch.where(counted, labels * c + pred, c * c).reshape(-1)  # bin C·C: not counted
    ones = torch.ones_like(bins, dtype=torch.float64)
    counts = torch.zeros(c * c + 1, dtype=torch.float64, device=logits.device).scatter_add(0, bins, ones)
    # a NaN or inf score gives NaN everywhere, not a plausible count (x * 0 is NaN exactly for NaN and
    # inf, 0 otherwise; its sum cannot overflow); the export's InputGuard does the same for labels
    return counts[: c * c].reshape(c, c) + (logits * 0).sum().to(torch.float64)


class IoUBinary(LossModule):
    """Module form of :func:`iou_binary`; ``forward(logits (B,H,W), labels (B,H,W)) -> scalar``."""

    name = "iou_binary"

    def __init__(
        self, per_image: bool = True, ignore_index: int | None = None, empty: float = 1.0, threshold: float = 0.0
    ) -> None:
        super().__init__(per_image=per_image, ignore_index=ignore_index, empty=float(empty), threshold=float(threshold))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return iou_binary(logits, labels, **self._params)


class IoU(LossModule):
    """Module form of :func:`iou`; ``forward(logits (B,C,H,W), labels (B,H,W)) -> (C,)``."""

    name = "iou"

    def __init__(self, per_image: bool = False, ignore_index: int | None = None, empty: float = 1.0) -> None:
        super().__init__(per_image=per_image, ignore_index=ignore_index, empty=float(empty))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return iou(logits, labels, **self._params)


class Confusion(LossModule):
    """Module form of :func:`confusion`; ``forward(logits (B,C,H,W), labels (B,H,W)) -> (C, C)`` float64."""

    name = "confusion"

    def __init__(self, ignore_index: int | None = None) -> None:
        super().__init__(ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return confusion(logits, labels, **self._params)
