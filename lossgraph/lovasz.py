"""Lovász hinge (binary) and Lovász-Softmax (multi-class) losses, vectorised and export-friendly.

Berman, Rannen Triki, Blaschko, "The Lovász-Softmax loss", CVPR 2018. Semantics equal the authors'
reference code (per-image / per-class loops, ignored pixels removed), computed here for all images
and classes at once: the pixel axis of a ``(N, K, P)`` error tensor is sorted in one call, ignored
pixels sort last and get zero weight, and the Jaccard increments come in closed form from the
cumulative counts (exact in float32, unlike ``1 - I/U`` differences).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ._checks import check_dtype, check_shapes
from ._functional import LossModule, check_label_values, safe_div, softmax_c, to_acc, valid_mask

CLASSES = ("present", "all")


def lovasz_weights(fg_sorted: torch.Tensor, total: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Jaccard-loss increments ``g_k = J_k - J_{k-1}`` along the last (sorted) axis, but ``g_1`` of
    groups without foreground (see below).

    ``fg_sorted``: bool foreground flags in sorted order, valid pixels first; ``total``: the number
    ``G`` of valid foreground pixels, shape ``(..., 1)``. With ``tp_k``/``fp_k`` the foreground /
    background pixels among the first ``k``, ``J_k = k / (G + fp_k)``, so a foreground pixel adds
    ``1 / (G + fp_k)`` and a background pixel ``(G - tp_k) / ((G + fp_k)(G + fp_k - 1))``, written
    with ``d = G + fp_k`` as ``(d - k) / (d (d - 1))``. The one exception, ``g_1 = 1`` when ``G = 0``
    (``J`` jumps from 0 to 1), is left at 0 here and added by :func:`lovasz_sorted_sum` per group,
    which saves full-size operations. ``fp`` is an int32 cumulative sum (exact up to 2**31 pixels
    per group; int32 throughout: torch's int64 arithmetic here cost 5x more); positions past the
    valid pixels get finite values that the caller masks.
    """
    fp = torch.cumsum(~fg_sorted, -1, dtype=torch.int32)
    d = (total.to(torch.int32) + fp).to(dtype)  # G + fp_k >= 1
    k = torch.arange(1, fg_sorted.shape[-1] + 1, device=fg_sorted.device, dtype=dtype)
    bg = (d - k) / torch.clamp(d - 1.0, min=1.0)  # (G - tp_k) / (d - 1)
    return torch.where(fg_sorted, 1.0, bg) / d


def lovasz_sorted_sum(
    errors: torch.Tensor, fg: torch.Tensor, valid: torch.Tensor, hinge: bool = False
) -> torch.Tensor:
    """Lovász extension of the Jaccard loss over the last axis: ``(N, K, P) -> (N, K)``.

    ``errors`` float (``>= 0`` unless ``hinge``), ``fg`` bool foreground, ``valid`` bool
    (broadcastable to ``errors``); invalid pixels get the key -inf, so they sort last, and the
    clamp at 0 (ReLU with ``hinge``, the loss's own) turns them into zeros that weigh nothing.
    One sort gives the sorted errors (differentiable) and the permutation for the foreground
    flags; the sum over pixels accumulates in float64 (onnxruntime's float32 ReduceSum drifts at
    65k+ pixels). A group without foreground has ``J_k = 1`` for every k, so its loss is its
    largest error.
    """
    fg = fg & valid
    total = fg.sum(-1, keepdim=True)
    key = torch.where(valid, errors, float("-inf"))
    err_sorted, perm = torch.sort(key, dim=-1, descending=True)
    g = lovasz_weights(torch.gather(fg, -1, perm), total, errors.dtype)
    # clamp (not ReLU) keeps the gradient of a valid zero error, as the reference code has it
    e = F.relu(err_sorted) if hinge else torch.clamp(err_sorted, min=0.0)
    loss = (e * g).sum(-1, dtype=torch.float64).to(e.dtype)
    no_fg = (total == 0) & (err_sorted[..., :1] > float("-inf"))  # a valid pixel, none foreground
    return loss + torch.where(no_fg, e[..., :1], 0.0).sum(-1)


def lovasz_hinge(
    logits: torch.Tensor,
    labels: torch.Tensor,
    per_image: bool = True,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Binary Lovász hinge loss.

    ``loss = Σ_k relu(e_(k)) · g_k`` with errors ``e = 1 - logit · (2y - 1)`` sorted in decreasing
    order and ``g`` the Jaccard increments of the sorted labels; averaged over images when
    ``per_image`` (an all-ignored image contributes 0, like the reference code's ``logits.sum()*0``).

    Args:
        logits: ``(B, H, W)`` float logits.
        labels: ``(B, H, W)`` integer, 0 or 1, or ``ignore_index``.
        per_image: compute per image and average, else one loss over the whole batch.
        ignore_index: label value whose pixels are ignored.

    Returns:
        Scalar tensor (float32 for fp16/bf16 input).

    Example:
        >>> logits = torch.randn(2, 5, 7); labels = torch.randint(0, 2, (2, 5, 7))
        >>> lovasz_hinge(logits, labels).shape
        torch.Size([])
    """
    fn = "lovasz_hinge"
    check_dtype(fn, "logits", logits, "f", "a float tensor")
    check_dtype(fn, "labels", labels, "i", "an integer tensor")
    check_shapes(fn, [("logits", logits, ("B", "H", "W")), ("labels", labels, ("B", "H", "W"))])
    check_label_values(fn, "labels", labels, 2, ignore_index)
    x = to_acc(logits)
    n = x.shape[0] if per_image else 1
    x = x.reshape(n, 1, -1)
    lab = labels.reshape(n, 1, -1)
    fg = lab == 1
    errors = torch.where(fg, 1.0 - x, 1.0 + x)  # 1 - x * sign, sign = +1 (fg) / -1
    losses = lovasz_sorted_sum(errors, fg, valid_mask(lab, ignore_index), hinge=True)
    return losses.mean()


def lovasz_softmax(
    probas: torch.Tensor,
    labels: torch.Tensor,
    classes: str | Sequence[int] = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
    from_logits: bool = False,
) -> torch.Tensor:
    """Multi-class Lovász-Softmax loss.

    For each class ``c`` (and each image when ``per_image``) the Lovász extension of the Jaccard
    loss of errors ``|1[y = c] - p_c|``; averaged over the classes taken, then over images.

    Args:
        probas: ``(B, C, H, W)`` class probabilities (or logits with ``from_logits=True``, which
            applies softmax over C). With ``C == 1`` the channel is the foreground probability of
            label 1 (sigmoid form; ``from_logits`` applies sigmoid). ``(B, H, W)`` means ``C == 1``.
        labels: ``(B, H, W)`` integers in ``[0, C)`` (``{0, 1}`` when ``C == 1``) or ``ignore_index``.
        classes: ``"present"`` (classes present in the labels), ``"all"``, or a list of class ids
            (taken whether present or not). With ``C == 1`` a one-element list ``[k]`` makes label
            ``k`` the foreground, as in the reference code.
        per_image: loss per image then mean over images; else one loss over all pixels.
        ignore_index: label value whose pixels are ignored.

    Returns:
        Scalar tensor. No class taken (nothing present, all pixels ignored) gives 0, in every image.

    Equivalences: Berman's ``lovasz_softmax(probas, labels, classes, per_image, ignore)`` for every
    option (his all-ignored batch returns an empty tensor; here 0). kornia's ``lovasz_softmax_loss``
    is ``from_logits=True, per_image=True, classes="all"``.

    Example:
        >>> probas = torch.randn(2, 3, 5, 7).softmax(1); labels = torch.randint(0, 3, (2, 5, 7))
        >>> float(lovasz_softmax(probas, labels)) >= 0
        True
    """
    fn = "lovasz_softmax"
    check_dtype(fn, "probas", probas, "f", "a float tensor")
    check_dtype(fn, "labels", labels, "i", "an integer tensor")
    if probas.dim() == 3:
        probas = probas.unsqueeze(1)
    check_shapes(fn, [("probas", probas, ("B", "C", "H", "W")), ("labels", labels, ("B", "H", "W"))])
    num_classes = probas.shape[1]
    if isinstance(classes, str):
        if classes not in CLASSES:
            raise ValueError(f"{fn}: classes must be 'present', 'all' or a list of class ids; got {classes!r}")
        chosen = None
    else:
        chosen = [int(c) for c in classes]
        if not chosen:
            raise ValueError(f"{fn}: classes must not be an empty list")
        if num_classes == 1 and len(chosen) > 1:
            raise ValueError(f"{fn}: with C == 1 (sigmoid form) classes must name one label; got {chosen}")
    check_label_values(fn, "labels", labels, max(num_classes, 2), ignore_index)

    x = to_acc(probas)
    # C == 1 is a graph-level choice (no Python branch on the dynamic C): sigmoid form selected by mask.
    channel = torch.arange(num_classes, device=x.device)
    single = torch.ones_like(x[0, :, 0, 0]).sum() == 1  # tensor bool: C == 1
    if from_logits:
        x = torch.where(single, torch.sigmoid(x), softmax_c(x))
    fg_label = chosen[0] if (chosen is not None and len(chosen) == 1) else 1
    label_of_channel = torch.where(single, torch.full_like(channel, fg_label), channel)
    if chosen is None:
        taken = torch.ones_like(channel, dtype=torch.bool)
    else:
        ids = torch.tensor(chosen, device=x.device, dtype=channel.dtype)
        taken = single | (channel[:, None] == ids[None, :]).any(1)

    b = x.shape[0]
    n = b if per_image else 1
    x = x.reshape(b, num_classes, -1)
    if not per_image:
        x = x.transpose(0, 1).reshape(1, num_classes, -1)
    lab = labels.reshape(n, 1, -1)
    fg = lab == label_of_channel[None, :, None]  # (N, C, P)
    valid = valid_mask(lab, ignore_index)  # (N, 1, P)
    errors = torch.where(fg, 1.0 - x, x).abs()  # |1[y = c] - p_c|
    weight = taken[None, :].expand(n, -1)  # (N, C): the groups averaged over
    if classes == "present":
        weight = weight & (fg & valid).any(-1)
    # groups not taken are all invalid: they sort as constants (several times faster) and weigh 0
    losses = lovasz_sorted_sum(errors, fg, valid & weight[..., None])  # (N, C)
    w = weight.to(losses.dtype)
    per_group = safe_div((losses * w).sum(-1), w.sum(-1))
    return per_group.mean()


class LovaszHinge(LossModule):
    """Module form of :func:`lovasz_hinge`; ``forward(logits (B,H,W), labels (B,H,W)) -> scalar``."""

    name = "lovasz_hinge"

    def __init__(self, per_image: bool = True, ignore_index: int | None = None) -> None:
        super().__init__(per_image=per_image, ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return lovasz_hinge(logits, labels, **self._params)


class LovaszSoftmax(LossModule):
    """Module form of :func:`lovasz_softmax`; ``forward(probas (B,C,H,W), labels (B,H,W)) -> scalar``."""

    name = "lovasz_softmax"

    def __init__(
        self,
        classes: str | Sequence[int] = "present",
        per_image: bool = False,
        ignore_index: int | None = None,
        from_logits: bool = False,
    ) -> None:
        if not isinstance(classes, str):
            classes = [int(c) for c in classes]
        super().__init__(classes=classes, per_image=per_image, ignore_index=ignore_index, from_logits=from_logits)

    def forward(self, probas: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return lovasz_softmax(probas, labels, **self._params)
