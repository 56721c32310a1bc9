"""ONNX export (``to_onnx``, needs torch), the onnxruntime runner (``OnnxLoss``), batch evaluation
of saved inputs (``evaluate_files``), graphs from a bundle (``load``) and other runtimes
(``runtimes.load``); all but the first are torch-free."""

from __future__ import annotations

from typing import Any

from .bundle import load
from .evaluate import EvalOptions, evaluate_chunk, evaluate_files, run_header
from .results import ResultsError, read_results, read_results_file
from .runner import OnnxLoss, OnnxLossError, cuda_usable
from .samples import Sample, find_samples
from .summary import dataset_metrics, summarize

__all__ = [
    "EvalOptions", "OnnxLoss", "OnnxLossError", "ResultsError", "Sample", "ValueAndGrad", "cuda_usable", "dataset_metrics",
    "evaluate_chunk", "evaluate_files", "find_samples", "load", "read_results", "read_results_file", "run_header",
    "summarize", "to_onnx",
]


def __getattr__(name: str) -> Any:
    if name in ("to_onnx", "ValueAndGrad", "DEFAULT_OPSET"):
        from . import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module 'lossgraph.export' has no attribute {name!r}")
