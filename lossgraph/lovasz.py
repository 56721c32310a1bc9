"""Lovász hinge (binary) and Lovász-Softmax (multi-class) losses, vectorised and export-friendly.

Berman, Rannen Triki, Blaschko, "The Lovász-Softmax loss", CVPR 2018. Semantics equal the authors'
reference code (per-image / per-class loops, ignored pixels removed), computed here for all images
and classes at once: the pixel axis of a ``(N, K, P)`` error tensor is sorted in one call, ignored
pixels sort last and get zero weight, and the Jaccard increments come in closed form from the
cumulative counts (exact in float32, unlike ``1 - I/U`` differences).
"""

from __future__ import annotations

from typing import Any

import torch

from ._checks import InputError, check_dtype, check_label_dtype, check_shapes
from ._functional import LossModule, as_labels, check_unit, is_tracing, safe_div, softmax_c, to_acc
from ._types import Classes

CLASSES = ("present", "all")


def lovasz_weights(
    fg_sorted: torch.Tensor, dtype: torch.dtype, k: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Jaccard-loss increments ``g_k = J_k - J_{k-1}`` along the last (sorted) axis, but ``g_1`` of
    groups without foreground (see below), and the foreground count ``G`` (shape ``(..., 1)``).

    ``fg_sorted``: bool foreground flags in sorted order. With ``tp_k``/``fp_k`` the foreground /
    background pixels among the first ``k`` and ``d = G + fp_k``, ``J_k = k / d``, so a foreground
    pixel adds ``1 / d`` and a background pixel ``(G - tp_k) / (d (d - 1))``. The counts are int32
    (exact up to 2**31 pixels per group; ``G`` is the last cumulative count), so ``G - tp_k`` is
    exactly 0 after the last foreground pixel: whatever sorts there weighs nothing. The one
    exception, ``g_1 = 1`` when ``G = 0`` (``J`` jumps from 0 to 1), is left at 0 here and added by
    :func:`lovasz_sorted_sum` per group, which saves full-size operations.
    """
    tp = torch.cumsum(fg_sorted, -1, dtype=torch.int32)
    total = tp[..., -1:]
    left = total - tp  # G - tp_k >= 0
    if k is None:  # ``k``: the ranks 1..P as int32, passed in by callers that reuse them
        k = torch.arange(1, fg_sorted.shape[-1] + 1, device=fg_sorted.device, dtype=torch.int32)
    d = (left + k).to(dtype)  # G + fp_k >= 1
    bg = left.to(dtype) / torch.clamp(d - 1.0, min=1.0)
    return torch.where(fg_sorted, 1.0, bg) / d, total


_BITS = {torch.float32: torch.int32, torch.float64: torch.int64}


#: elements per block of :class:`LovaszRows` (at least one row per thread): 2 MiB float32 blocks, whose
#: int64 and float temporaries stay well under glibc's 32 MiB mmap threshold, so the heap reuses them
_BLOCK = 2**19


class LovaszRows(torch.autograd.Function):
    """Eager CPU form of :func:`lovasz_sorted_sum` for keys ``(N, K, P)`` (``+0.0`` or more, or the
    ``-1`` sentinel) and foreground flags ``fg``: ``(N, K)`` losses.

    The ``N·K`` rows go through in blocks of ``_BLOCK`` elements (at least one row per thread): sort (int32 view, see
    :func:`_sort_descending`), gather, weights, float64 dot product, and, when a gradient is needed,
    the weights scattered back to the pixels' places (``d loss / d key``). A block's temporaries
    (a few MB) stay in the heap (and largely in cache), where one call over the whole
    ``(N, K, P)`` tensor allocates each ~45-90 MB temporary afresh (page faults, benchmarks/RESULTS.md)
    and streams it through memory once per operation. The backward pass is one multiplication of
    the saved gradient by the incoming one: no autograd through the sort, gather and scans.
    """

    @staticmethod
    def forward(ctx: Any, key: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
        n, k, p = key.shape
        rows = key.reshape(n * k, p).contiguous()
        flags = fg.expand(n, k, p).reshape(n * k, p)
        out = torch.empty(n * k, dtype=torch.float64)
        grad = torch.empty_like(rows) if ctx.needs_input_grad[0] else None
        step = max(torch.get_num_threads(), _BLOCK // max(p, 1), 1)
        ranks = torch.arange(1, p + 1, dtype=torch.int32)
        for r in range(0, n * k, step):
            block = rows[r : r + step]
            perm = torch.sort(block.view(_BITS[key.dtype]), dim=-1, descending=True)[1]
            err_sorted = block.gather(-1, perm)
            g, total = lovasz_weights(flags[r : r + step].gather(-1, perm), key.dtype, ranks)
            # a group without foreground weighs its largest kept error by 1 (lovasz_weights' g_1)
            g[:, :1] += ((total == 0) & (err_sorted[:, :1] >= 0)).to(g.dtype)
            out[r : r + step] = (err_sorted * g).sum(-1, dtype=torch.float64)
            if grad is not None:
                grad[r : r + step].scatter_(-1, perm, g)
        ctx.save_for_backward(grad)
        return out.to(key.dtype).reshape(n, k)

    @staticmethod
    def backward(ctx: Any, g_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (grad,) = ctx.saved_tensors
        return grad.reshape(*g_out.shape, grad.shape[-1]) * g_out.unsqueeze(-1), None


def _sort_descending(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.sort(key, -1, descending=True)`` of keys that are ``+0.0`` or more, or the ``-1``
    sentinel. In eager mode on the CPU the int32 (int64) view is sorted instead: non-negative floats
    order like their bit patterns and ``-1.0``'s are negative, so the order is the same, and torch's
    CPU sort runs it about 1.3x faster (benchmarks/RESULTS.md). Graphs sort the floats (ONNX has no
    bitcast). Either way the sorted values come from the float keys, so they stay differentiable.
    """
    bits = _BITS.get(key.dtype)
    if bits is None or key.device.type != "cpu" or is_tracing():
        return torch.sort(key, dim=-1, descending=True)
    perm = torch.sort(key.detach().view(bits), dim=-1, descending=True)[1]
    return torch.gather(key, -1, perm), perm


def lovasz_sorted_sum(errors: torch.Tensor, fg: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Lovász extension of the Jaccard loss over the last axis: ``(N, K, P) -> (N, K)``.

    ``errors`` float, ``+0.0`` or more; ``fg`` bool foreground, False wherever ``keep`` is;
    ``keep`` bool (broadcastable to ``errors``; None: every pixel) marks the pixels that count.
    The others get the key -1, so they sort last, where their weights are exactly 0
    (:func:`lovasz_weights`). One sort gives the sorted errors (differentiable) and the permutation
    for the foreground flags; the sum over pixels accumulates in float64 (onnxruntime's float32
    ReduceSum drifts at 65k+ pixels). A group without foreground has ``J_k = 1`` for every k, so
    its loss is its largest error.
    """
    key = errors if keep is None else torch.where(keep, errors, -1.0)
    if not is_tracing() and key.device.type == "cpu" and key.dtype in _BITS:
        # eager on the CPU: rows sorted and summed in blocks, analytic backward (LovaszRows)
        return LovaszRows.apply(key, fg)
    # graphs (and other devices): one sort of all rows, autograd through the gather
    err_sorted, perm = _sort_descending(key)
    g, total = lovasz_weights(torch.gather(fg, -1, perm), errors.dtype)
    loss = (err_sorted * g).sum(-1, dtype=torch.float64).to(errors.dtype)
    first = err_sorted[..., :1]
    no_fg = (total == 0) & (first >= 0)  # a pixel kept, none foreground
    return loss + torch.where(no_fg, first, 0.0).sum(-1)


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

    Equivalences: Berman's ``lovasz_hinge(logits, labels, per_image, ignore)``; kornia's
    ``lovasz_hinge_loss(logits[:, None], labels)`` is the default ``per_image=True`` (kornia has no
    ignore label: with one, this equals kornia on each image's valid pixels).

    Example:
        >>> logits = torch.randn(2, 5, 7); labels = torch.randint(0, 2, (2, 5, 7))
        >>> lovasz_hinge(logits, labels).shape
        torch.Size([])
    """
    fn = "lovasz_hinge"
    check_dtype(fn, "logits", logits, "f", "a float tensor")
    check_label_dtype(fn, "labels", labels, allow_float=True)
    check_shapes(fn, [("logits", logits, ("B", "H", "W")), ("labels", labels, ("B", "H", "W"))])
    labels = as_labels(fn, "labels", labels, 2, ignore_index, allow_float=True)
    x = to_acc(logits)
    n = x.shape[0] if per_image else 1
    x = x.reshape(n, 1, -1)
    lab = labels.reshape(n, 1, -1)
    fg = lab == 1
    errors = torch.where(fg, 1.0 - x, 1.0 + x)  # 1 - x * sign, sign = +1 (fg) / -1
    # the hinge before the sort: errors <= 0 sort last either way and weigh relu(e) = 0, with
    # relu'(e) = 0; where (not relu) also turns -0.0 into +0.0 for the sort keys
    errors = torch.where(errors > 0, errors, 0.0)
    keep = None
    if ignore_index is not None:
        keep = lab != ignore_index
        fg = fg & keep
    return lovasz_sorted_sum(errors, fg, keep).mean()


def lovasz_softmax(
    probas: torch.Tensor,
    labels: torch.Tensor,
    classes: Classes = "present",
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
        from_logits: ``probas`` are logits: apply softmax over C (sigmoid when ``C == 1``) first.

    Returns:
        Scalar tensor. No class taken (nothing present, all pixels ignored) gives 0, in every image.

    Equivalences: Berman's ``lovasz_softmax(probas, labels, classes, per_image, ignore)`` for every
    option (his all-ignored batch returns an empty tensor; here 0). kornia's (>= 0.9)
    ``lovasz_softmax_loss(logits, labels)`` is ``from_logits=True, per_image=True, classes="all"``;
    kornia has no ``ignore_index`` (with one, this equals kornia on each image's valid pixels) and
    its ``weight`` has no counterpart here. Tested: ``tests/test_anchors_kornia.py``.

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
            raise InputError(f"{fn}: classes must be 'present', 'all' or a list of class ids; got {classes!r}")
        chosen = None
    else:
        chosen = [int(c) for c in classes]
        if not chosen:
            raise InputError(f"{fn}: classes must not be an empty list")
        if num_classes == 1 and len(chosen) > 1:
            raise InputError(f"{fn}: with C == 1 (sigmoid form) classes must name one label; got {chosen}")
    labels = as_labels(fn, "labels", labels, max(num_classes, 2), ignore_index)
    if not from_logits:
        check_unit(fn, "probas", probas, "probabilities in [0, 1]")

    x = to_acc(probas)
    # C == 1 is a graph-level choice (no Python branch on the dynamic C): sigmoid form selected by mask.
    channel = torch.arange(num_classes, device=x.device)
    single = torch.ones_like(x[0, :, 0, 0]).sum() == 1  # tensor bool: C == 1
    if from_logits and not is_tracing():  # eager: C is known, one activation and ATen's fused softmax
        x = torch.sigmoid(x) if num_classes == 1 else torch.softmax(x, 1)
    elif from_logits:  # graphs: C == 1 chosen by a mask (dynamic C)
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
    valid = None if ignore_index is None else lab != ignore_index  # (N, 1, P)
    if valid is not None:
        fg = fg & valid
    weight = taken[None, :].expand(n, -1)  # (N, C): the groups averaged over
    if classes == "present":
        # a float max, since bool any() exports as an int64 Cast + ReduceMax that took onnxruntime
        # 48 ms at 8x21x256x256
        weight = weight & (fg.to(x.dtype).amax(-1) > 0)
    if not is_tracing() and not bool(weight.all()):
        # eager: only the groups taken, gathered into R rows. A graph cannot have that
        # data-dependent size, so it keeps all N·C rows, those not taken sorting as constants at
        # about a third of the cost (benchmarks/RESULTS.md: 3 of 21 classes present, 3x faster).
        rows = weight.reshape(-1).nonzero().squeeze(1)
        fg_r = fg.reshape(-1, fg.shape[-1]).index_select(0, rows)[None]  # (1, R, P)
        x_r = x.reshape(-1, x.shape[-1]).index_select(0, rows)[None]
        keep = None if valid is None else valid[:, 0].index_select(0, rows // num_classes)[None]
        taken_losses = _group_losses(x_r, fg_r, keep)[0]  # (R,)
        losses = torch.zeros(n * num_classes, dtype=x.dtype, device=x.device).index_copy(0, rows, taken_losses)
        losses = losses.reshape(n, num_classes)
    else:
        if chosen is not None:
            fg = fg & weight[..., None]  # a class not taken has no foreground
        # groups not taken are not kept: they sort as constants and weigh 0
        keep = weight[..., None] if valid is None else valid & weight[..., None]
        losses = _group_losses(x, fg, keep)  # (N, C)
    w = weight.to(losses.dtype)
    per_group = safe_div((losses * w).sum(-1), w.sum(-1))
    return per_group.mean()


def _group_losses(x: torch.Tensor, fg: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Lovász-Softmax of each group: errors ``|1[y = c] - p_c|`` (a Where here ran 2x slower in
    onnxruntime), then :func:`lovasz_sorted_sum`."""
    return lovasz_sorted_sum((x - fg.to(x.dtype)).abs(), fg, keep)


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
        classes: Classes = "present",
        per_image: bool = False,
        ignore_index: int | None = None,
        from_logits: bool = False,
    ) -> None:
        if not isinstance(classes, str):
            classes = [int(c) for c in classes]
        super().__init__(classes=classes, per_image=per_image, ignore_index=ignore_index, from_logits=from_logits)

    def forward(self, probas: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return lovasz_softmax(probas, labels, **self._params)
