"""Exporting catalog graphs in worker processes (``lossgraph check --all``, ``lossgraph export --all``).

Torch-free to import: torch is imported by :func:`export_graph`, in whichever process runs it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any


def worker_pool(jobs: int) -> Any:
    """A pool of ``jobs`` processes started by spawn (forking a process that holds torch's threads is
    unsafe), each with one torch thread: the workers share the cores."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def export_graph(name: str, params: Mapping[str, Any], export_dims: Mapping[str, int], with_grad: bool, path: str) -> float:
    """Export catalog loss ``name`` with ``params`` at ``export_dims`` (seeded example inputs) to
    ``path``, dynamic shapes; returns the seconds ``to_onnx`` took."""
    from lossgraph import catalog
    from lossgraph.export import to_onnx

    spec = catalog.get(name)
    module = spec.build(**params)
    example = spec.example_inputs(export_dims, seed=0, params=params)
    t0 = time.perf_counter()
    to_onnx(module, example, path, dynamic=True, with_grad=with_grad)
    return time.perf_counter() - t0
