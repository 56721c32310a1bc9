"""ONNX export (``to_onnx``, needs torch), the onnxruntime runner (``OnnxLoss``) and batch evaluation
of saved inputs (``evaluate_files``); the last two are torch-free."""

from __future__ import annotations

from typing import Any

from .evaluate import evaluate_files, read_results, summarize
from .runner import OnnxLoss, OnnxLossError, cuda_usable

__all__ = [
    "OnnxLoss", "OnnxLossError", "cuda_usable", "evaluate_files", "read_results", "summarize", "to_onnx",
    "ValueAndGrad",
]


def __getattr__(name: str) -> Any:
    if name in ("to_onnx", "ValueAndGrad", "DEFAULT_OPSET"):
        from . import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module 'lossgraph.export' has no attribute {name!r}")
