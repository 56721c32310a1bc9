"""Benchmarks: every catalog loss timed in torch eager, onnxruntime, the Numba reference, the source code and peers.

One process, one run: for each catalog entry, at its realistic size (``Spec.bench_dims``; entries
without one fall back to the first case's export dims, and the table says so), the same seeded inputs
go through

* ``torch``: the lossgraph module, eager (``torch.no_grad`` in forward mode);
* ``onnx``: the exported graph (the gradient graph in train mode) in onnxruntime;
* ``reference``: the NumPy + Numba float64 reference, timed after a JIT warm-up on the first case's
  small inputs (that first call, JIT compile or cache load, is reported separately as ``jit_s``);
* ``source``: the source documents' loop formulation, where ``lossgraph.baselines.<family>.BASELINES``
  maps the loss name to one (called like the functional form: inputs in catalog order, parameters);
* ``peers``: the equivalent calls of kornia, MONAI, ``torch.nn.functional`` and torchmetrics
  (:data:`lossgraph.bench.peers.PEERS`), on the same inputs, reported as ``ours/peer`` with whether
  value and gradient agree or the definitions differ.

``mode="train"`` (the default) times forward + backward for entries with differentiable inputs (torch
autograd, the gradient graph, the reference's gradient, the peers' backward); ``"forward"`` the value.

Each backend runs once to warm up, then ``repeat`` rounds call every backend once in turn (so a shared
machine's changing load falls on all alike); medians are reported. Peak memory is the largest growth
of the process's resident set over one call (Linux high-water mark, reset before each call), so it
includes onnxruntime's arena growth and Numba's temporaries but not memory held from earlier calls.

With ``provider="cuda"`` torch runs on the GPU (synchronised after each call) and onnxruntime uses its
CUDA provider fed from host arrays, so its times include the input copies; peak memory stays host
RSS. Where CUDA is absent ``"cuda"`` raises :class:`BenchError` (``"auto"`` falls back to the CPU).

    >>> from lossgraph import bench, catalog
    >>> r = bench.bench_spec(catalog.get("sigmoid_focal"), dims={"B": 1, "C": 2, "H": 8, "W": 8})
    >>> r.ratio("onnx", "torch")  # doctest: +SKIP
"""

from __future__ import annotations

from . import peers
from .harness import BACKENDS, MODES, RATIOS, Result, bench, bench_dims, bench_spec
from .measure import (
    MALLOC_MODES,
    BenchError,
    PeakMemory,
    Timing,
    malloc_mode,
    resolve_provider,
    session_options,
    set_malloc,
    set_threads,
    time_interleaved,
)
from .report import (
    environment,
    format_table,
    load_results,
    plot,
    summary,
    write_results,
)

__all__ = [
    "BACKENDS", "MALLOC_MODES", "MODES", "peers", "RATIOS", "BenchError", "PeakMemory", "Result", "Timing", "bench", "bench_dims",
    "bench_spec", "environment", "format_table", "load_results", "malloc_mode", "plot", "resolve_provider",
    "session_options", "set_malloc", "set_threads", "summary", "time_interleaved", "write_results",
]
