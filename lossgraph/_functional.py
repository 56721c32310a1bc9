"""Torch helpers shared by several loss families: dtypes, reductions, safe division, eager-only checks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from ._checks import (
    InputError,
    InputTypeError,
    any_nonfinite,
    check_choice,
    check_dtype,
    check_label_dtype,
    check_labels,
    check_shapes,
    check_unit_interval,
    nan_like,
)
from ._params import check_params
from ._types import Reduction

REDUCTIONS = ("none", "mean", "sum")


def acc_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a loss computes and accumulates in: float32 for fp16/bf16 (and ints), else the input's."""
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def to_acc(x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """Cast ``x`` to the accumulation dtype of ``like`` (default: of ``x`` itself)."""
    return x.to(acc_dtype(x if like is None else like))


_tracing_depth = 0


@contextlib.contextmanager
def tracing() -> Iterator[None]:
    """Mark a graph trace (``make_fx`` for gradient graphs), where value checks must not run."""
    global _tracing_depth
    _tracing_depth += 1
    try:
        yield
    finally:
        _tracing_depth -= 1


def is_tracing() -> bool:
    """True while a graph is traced (torch.export, dynamo, :func:`tracing`): skip ``.item()`` checks."""
    return _tracing_depth > 0 or torch.compiler.is_exporting() or torch.compiler.is_compiling()


def safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den != 0``, else 0 — no NaN from an empty region in the value or the
    gradient; a NaN denominator (from a NaN prediction) stays NaN."""
    ok = den != 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def reduce(loss: torch.Tensor, reduction: Reduction, fn: str) -> torch.Tensor:
    """Apply ``reduction`` ('none' | 'mean' | 'sum') the torchvision way.

    In graphs the sum accumulates in float64 (result in the loss's dtype): onnxruntime's float32
    ReduceMean drifts by about 1e-3 relative over 10M elements; eager mode uses torch's pairwise
    float32 sum, which does not (and saves two full-size casts forward and backward). The mean of no
    elements (box losses with N = 0) is 0, as in torchvision.
    """
    check_choice(fn, "reduction", reduction, REDUCTIONS)
    if not is_tracing() and reduction != "none":  # eager: torch's own (pairwise) float32 sums
        if reduction == "sum" or loss.numel():
            return loss.mean() if reduction == "mean" else loss.sum()
        return loss.sum()  # the mean of nothing: 0 (torch's mean gives NaN)
    if reduction == "mean":
        # a tensor clamp, not sym_max: the exporter assumes sizes >= 2 and would fold sym_max away
        count = torch.scalar_tensor(loss.numel(), dtype=torch.float64, device=loss.device).clamp(min=1)
        return (loss.to(torch.float64).sum() / count).to(loss.dtype)
    if reduction == "sum":
        return wide_sum(loss)
    return loss


def wide_sum(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``x.sum(dim)`` accumulated in float64, returned in ``x``'s dtype (exact enough in any runtime)."""
    wide = x.to(torch.float64)
    return (wide.sum() if dim is None else wide.sum(dim)).to(x.dtype)


def as_labels(
    fn: str, name: str, labels: torch.Tensor, num_classes: Any, ignore_index: int | None, allow_float: bool = False
) -> torch.Tensor:
    """Class ids as int64: any integer dtype (uint8 PNG masks, uint16, ...), or with ``allow_float`` a
    float tensor holding whole values (binary 0/1 targets). In eager mode the values must lie in
    ``[0, num_classes)`` or equal ``ignore_index`` (:func:`lossgraph._checks.check_labels`); while
    exporting, the graph's label guard turns an out-of-range label into NaN instead."""
    check_label_dtype(fn, name, labels, allow_float)
    if is_tracing():
        return labels.long()
    if labels.is_floating_point():  # whole values checked before the cast would truncate them
        check_labels(fn, name, labels, num_classes, ignore_index, allow_float=True)
        return labels.long()
    labels = labels.long()  # before min/max: torch has no min/max for uint16/uint32
    check_labels(fn, name, labels, num_classes, ignore_index)
    return labels


class LossModule(nn.Module):
    """Base of every lossgraph module: stores its parameters, knows its catalog name.

    Subclasses set ``name`` (the catalog name) and call ``super().__init__(**params)`` with exactly the
    keyword parameters of their functional form; ``forward`` passes them on.
    """

    name: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        super().__init__()
        check_params(self.name, params)
        self._params = params

    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        """``forward``, with every output NaN when a prediction (a differentiable input) holds a NaN or
        inf (eager; in a graph the exporter's ``InputGuard`` does the same with graph ops)."""
        out = super().__call__(*inputs, **kwargs)
        if is_tracing():
            return out
        from . import catalog

        if not any_nonfinite(catalog.get(self.name).predictions(inputs, self._params)):
            return out
        return nan_like(out)

    @property
    def params(self) -> dict[str, Any]:
        """The parameters this module was built with (JSON-friendly; written into ONNX metadata)."""
        return dict(self._params)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._params.items())


# --- segmentation helpers (labels (B, H, W), predictions (B, C, H, W)) -------------------------------


def valid_mask(labels: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """Bool mask of the pixels that count: ``labels != ignore_index`` (all True without one)."""
    if ignore_index is None:
        return torch.ones_like(labels, dtype=torch.bool)
    return labels != ignore_index


def one_hot(labels: torch.Tensor, num_classes: Any) -> torch.Tensor:
    """``(B, *S)`` labels -> ``(B, C, *S)`` bool, by comparison with ``arange(C)`` (exports with dynamic C).

    Labels outside ``[0, C)`` (the ignore value) give an all-False column.
    """
    classes = torch.arange(num_classes, device=labels.device, dtype=labels.dtype)
    return labels.unsqueeze(1) == classes.reshape(1, -1, *([1] * (labels.dim() - 1)))


def check_unit(fn: str, name: str, x: torch.Tensor, what: str = "in [0, 1]", extra: float | None = None) -> None:
    """Eager-only: values in ``[0, 1]`` (or ``extra``) — targets, masks, probabilities. Skipped while exporting."""
    if not is_tracing():
        check_unit_interval(fn, name, x, what, extra)


def check_segmentation(
    fn: str, name: str, pred: torch.Tensor, labels: torch.Tensor, ignore_index: int | None, num_classes: Any = None,
    allow_float: bool = False,
) -> tuple[Any, torch.Tensor]:
    """Check ``pred (B, C, H, W)`` float and ``labels (B, H, W)`` in ``[0, C)`` or ignore; return
    ``(C, labels as int64)``.

    ``num_classes`` overrides the label range (2 for binary losses with ``(B, H, W)`` predictions);
    ``allow_float`` accepts float labels holding whole values (binary targets).
    """
    check_dtype(fn, name, pred, "f", "a float tensor")
    check_label_dtype(fn, "labels", labels, allow_float)
    if num_classes is None:
        check_shapes(fn, [(name, pred, ("B", "C", "H", "W")), ("labels", labels, ("B", "H", "W"))])
        num_classes = pred.shape[1]
    else:
        check_shapes(fn, [(name, pred, ("B", "H", "W")), ("labels", labels, ("B", "H", "W"))])
    return num_classes, as_labels(fn, "labels", labels, num_classes, ignore_index, allow_float)


def check_class_list(fn: str, name: str, values: Any, num_classes: Any) -> list[float] | None:
    """A per-class parameter list (``weight``, ``alpha``): floats, one per class (checked in eager mode)."""
    if values is None:
        return None
    if isinstance(values, (int, float, str)):
        raise InputTypeError(f"{fn}: {name} must be a list of per-class values; got {values!r}")
    values = [float(v) for v in values]
    if not is_tracing() and len(values) != num_classes:
        raise InputError(f"{fn}: {name} must have one value per class (C = {num_classes}); got {len(values)}")
    return values


def class_weights(values: list[float], labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``values[labels]`` for labels already made safe (in ``[0, C)``): a gather, no broadcast against C."""
    return torch.tensor(values, dtype=dtype, device=labels.device)[labels]


def softmax_c(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the class axis 1 as ``exp(z) / Σ exp(z)``, ``z = x - max``: onnxruntime's Softmax
    node on a non-last axis transposes around a last-axis kernel and runs several times slower."""
    e = torch.exp(x - x.amax(1, keepdim=True).detach())
    return e / e.sum(1, keepdim=True)


def log_softmax_at_labels(
    x: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p_y (B, H, W), safe labels)`` for logits ``x (B, C, H, W)``; ignored pixels read class 0.

    ``z_y - log Σ exp(z)`` with ``z = x - max_C x``: reductions over C and one GatherElements (not
    ``F.cross_entropy``, which exports as SoftmaxCrossEntropyLoss; not ``log_softmax(x, 1)``, whose
    LogSoftmax node onnxruntime runs 8x slower on a non-last axis: 609 vs 74 ms at 8x21x256x256).
    Eager mode runs :class:`lossgraph._eager.LogSoftmaxAtLabels` instead (same value, analytic backward).
    """
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    if not is_tracing():
        # eager: ATen's log_softmax with an analytic backward (lossgraph/_eager.py); graphs: the ops below
        from ._eager import LogSoftmaxAtLabels

        return LogSoftmaxAtLabels.apply(x, safe), safe
    z = x - x.amax(1, keepdim=True).detach()  # the shift cancels in value and gradient
    return torch.gather(z, 1, safe.unsqueeze(1)).squeeze(1) - torch.log(torch.exp(z).sum(1)), safe
