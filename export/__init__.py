"""ONNX export (``to_onnx``, needs torch) and the onnxruntime runner (``OnnxLoss``, torch-free)."""

from __future__ import annotations

from typing import Any

from .runner import OnnxLoss, OnnxLossError, cuda_usable

__all__ = ["OnnxLoss", "OnnxLossError", "cuda_usable", "to_onnx", "ValueAndGrad"]


def __getattr__(name: str) -> Any:
    if name in ("to_onnx", "ValueAndGrad", "DEFAULT_OPSET"):
        from . import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module 'lossgraph.export' has no attribute {name!r}")
