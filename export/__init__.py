"""ONNX export (``to_onnx``, needs torch), the onnxruntime runner (``OnnxLoss``), batch evaluation
of saved inputs (``evaluate_files``), graphs from a bundle (``load``) and other runtimes
(``runtimes.load``); all but the first are torch-free."""

from __future__ import annotations

from typing import Any

from .bundle import load
from .evaluate import evaluate_files, read_results, summarize
from .runner import OnnxLoss, OnnxLossError, cuda_usable

__all__ = ["load", "OnnxLoss", "OnnxLossError", "cuda_usable", "evaluate_files", "read_results", "summarize", "to_onnx", "ValueAndGrad"]


def __getattr__(name: str) -> Any:
    if name in ("to_onnx", "ValueAndGrad", "DEFAULT_OPSET"):
        from . import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module 'lossgraph.export' has no attribute {name!r}")
