"""Torch helpers shared by several loss families: dtypes, reductions, safe division, eager-only checks."""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from ._checks import check_choice, label_range_message

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
    """``num / den`` where ``den > 0``, else 0 — no NaN in the value or the gradient."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def reduce(loss: torch.Tensor, reduction: str, fn: str) -> torch.Tensor:
    """Apply ``reduction`` ('none' | 'mean' | 'sum') the torchvision way.

    The sum accumulates in float64 (result in the loss's dtype): onnxruntime's float32 ReduceMean
    drifts by about 1e-3 relative over 10M elements, torch's pairwise sum does not.
    """
    check_choice(fn, "reduction", reduction, REDUCTIONS)
    if reduction == "mean":
        return loss.to(torch.float64).mean().to(loss.dtype)
    if reduction == "sum":
        return wide_sum(loss)
    return loss


def wide_sum(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``x.sum(dim)`` accumulated in float64, returned in ``x``'s dtype (exact enough in any runtime)."""
    wide = x.to(torch.float64)
    return (wide.sum() if dim is None else wide.sum(dim)).to(x.dtype)


def check_label_values(
    fn: str, name: str, labels: torch.Tensor, num_classes: int, ignore_index: int | None
) -> None:
    """Eager-only: labels lie in ``[0, num_classes)`` or equal ``ignore_index``. Skipped while exporting."""
    if is_tracing() or labels.numel() == 0:
        return
    valid = labels if ignore_index is None else labels[labels != ignore_index]
    if valid.numel() == 0:
        return
    lo, hi = int(valid.min()), int(valid.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(label_range_message(fn, name, lo, hi, num_classes, ignore_index))


class LossModule(nn.Module):
    """Base of every lossgraph module: stores its parameters, knows its catalog name.

    Subclasses set ``name`` (the catalog name) and call ``super().__init__(**params)`` with exactly the
    keyword parameters of their functional form; ``forward`` passes them on.
    """

    name: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._params = params

    @property
    def params(self) -> dict[str, Any]:
        """The parameters this module was built with (JSON-friendly; written into ONNX metadata)."""
        return dict(self._params)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._params.items())
