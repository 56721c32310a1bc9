"""Orchestration: one catalog entry through every backend at one size (:func:`bench_spec`), or many."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import catalog
from ..catalog import Spec
from .measure import (
    BenchError,
    Timing,
    malloc_mode,
    resolve_provider,
    session_options,
    set_malloc,
    set_threads,
    time_interleaved,
    total,
)
from .peers import compare, peers_of

#: ``"peers"`` times every peer of the entry (:data:`lossgraph.bench.peers.PEERS`)
BACKENDS = ("torch", "onnx", "reference", "source", "peers")
#: ``"train"``: forward + backward (differentiable entries; others fall back to forward), ``"forward"``: value only
MODES = ("train", "forward")
#: ratios printed and tabulated: (numerator, denominator, column title)
RATIOS = (("onnx", "torch", "onnx/torch"), ("reference", "torch", "ref/torch"), ("torch", "source", "ours/source"))


@dataclass
class Result:
    """The benchmark of one catalog entry at one size."""

    name: str
    params: dict[str, Any]
    dims: dict[str, int]
    dims_from: str  # "bench_dims" or "export dims (no bench_dims)"
    provider: str
    device: str
    grad: bool
    threads: int
    export_s: float | None
    timings: dict[str, Timing]
    malloc: str = "default"  # see set_malloc
    mode: str = "forward"  # the mode asked for; ``grad`` says whether a backward pass was timed
    peers: dict[str, Timing] = field(default_factory=dict)  # library -> its call's timing
    peer_notes: dict[str, str] = field(default_factory=dict)  # library -> what it calls, how it compares

    def median(self, backend: str) -> float | None:
        t = self.timings.get(backend)
        return t.median_s if t else None

    def ratio(self, num: str, den: str) -> float | None:
        """``median(num) / median(den)``, or None when either was not timed."""
        a, b = self.median(num), self.median(den)
        return a / b if a is not None and b else None

    def peer_ratio(self, library: str) -> float | None:
        """``median("torch") / median(peer)``: ours over the peer's call, or None when either was not timed."""
        a, t = self.median("torch"), self.peers.get(library)
        return a / t.median_s if a is not None and t is not None and t.median_s else None

    def fastest_peer(self) -> str | None:
        """The library whose call was fastest, or None without timed peers."""
        timed = [(t.median_s, k) for k, t in self.peers.items() if t.median_s]
        return min(timed)[1] if timed else None

    def max_rel_diff(self) -> float | None:
        """Largest relative difference between our backends' output sums (sanity check, not a test)."""
        vals = [t.value for t in self.timings.values() if t.value is not None]
        if len(vals) < 2:
            return None
        ref = max(abs(v) for v in vals) or 1.0
        return (max(vals) - min(vals)) / ref



def bench_dims(spec: Spec) -> tuple[dict[str, int], str]:
    """The realistic size of ``spec`` and where it comes from."""
    if spec.bench_dims is not None:
        return dict(spec.bench_dims), "bench_dims"
    return dict(spec.export_dims), "export dims (no bench_dims)"


def bench_spec(
    spec: Spec,
    dims: Mapping[str, int] | None = None,
    params: Mapping[str, Any] | None = None,
    *,
    provider: str = "cpu",
    repeat: int = 5,
    threads: int | None = None,
    mode: str = "train",
    backends: Sequence[str] = BACKENDS,
    graphs: Any = None,
    sess_options: Any = None,
    malloc: str | None = None,
) -> Result:
    """Time ``spec`` in each of ``backends`` at ``dims`` (default: :func:`bench_dims`).

    Args:
        spec: a catalog entry.
        dims: sizes of the symbolic dims; default the entry's ``bench_dims``.
        params: loss parameters over the defaults.
        provider: ``"cpu"``, ``"cuda"`` (BenchError where CUDA is absent) or ``"auto"``.
        repeat: timed rounds (each backend called once per round) after one warm-up round.
        threads: intra-op threads for torch, onnxruntime and Numba (None: library defaults).
        mode: ``"train"``: value and gradient (torch autograd, the gradient graph, ``grad=True``
            reference, the peers' backward) where the entry has differentiable inputs, else the value;
            ``"forward"``: the value only (torch under ``no_grad``, the value graph).
        backends: which of :data:`BACKENDS` to run.
        graphs: a :class:`lossgraph.parity.GraphCache` to export into (default: a temporary one).
        sess_options: onnxruntime ``SessionOptions`` (default :func:`session_options`).
        malloc: ``"reuse"`` to keep freed memory for reuse for the rest of the process
            (:func:`set_malloc`); None leaves the allocator as it is.
    """
    import torch

    from lossgraph.baselines import baseline_of
    from lossgraph.export import OnnxLoss
    from lossgraph.parity import GraphCache

    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise BenchError(f"bench: unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    if mode not in MODES:
        raise BenchError(f"bench: mode must be one of {', '.join(MODES)}; got {mode!r}")
    provider = resolve_provider(provider)
    device = "cuda" if provider == "cuda" else "cpu"
    nthreads = set_threads(threads)
    alloc = set_malloc(malloc) if malloc is not None else malloc_mode()
    p = spec.resolve(params)
    grad = mode == "train" and bool(spec.grad_inputs(p))
    if dims is None:
        dims, dims_from = bench_dims(spec)
    else:
        dims, dims_from = dict(dims), "given"
    inputs = spec.example_inputs(dims, seed=0, params=p)
    gnames = spec.grad_inputs(p) if grad else ()
    names = spec.output_names(p)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    export_s = jit_s = None

    def torch_call(fn: Callable[..., Any]) -> Callable[[], Any]:
        ts = [torch.from_numpy(np.array(v)).to(device) for v in inputs.values()]
        if not grad:

            def call() -> Any:
                with torch.no_grad():
                    return fn(*ts)

            return call
        leaves = [t.requires_grad_(True) for k, t in zip(inputs, ts) if k in gnames]

        def call_grad() -> Any:
            out = fn(*ts)
            outs = dict(out) if isinstance(out, Mapping) else {names[0]: out}
            target = sum(o.sum() for o in outs.values()) if spec.grad_of is None else outs[spec.grad_of].sum()
            gs = torch.autograd.grad(target, leaves, allow_unused=True)
            return outs, [g for g in gs if g is not None]

        return call_grad

    calls: dict[str, Callable[[], Any]] = {}
    skipped: dict[str, str] = {}
    if "torch" in backends:
        calls["torch"] = torch_call(spec.build(**p).to(device))
    if "onnx" in backends:
        graphs = graphs if graphs is not None else GraphCache()
        t0 = time.perf_counter()
        path = graphs.get(spec, p, spec.export_dims, grad)
        export_s = time.perf_counter() - t0
        run = OnnxLoss(path, providers=provider, sess_options=sess_options or session_options(threads))
        feeds = run.feeds(**inputs)
        calls["onnx"] = lambda: run.session.run(None, feeds)
    if "reference" in backends:
        f64 = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in inputs.items()}
        small = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v)
                 for k, v in spec.example_inputs(spec.export_dims, seed=0, params=p).items()}
        t0 = time.perf_counter()
        spec.ref(small, p, grad=bool(gnames))  # JIT compile (or cache load) outside the timings
        jit_s = time.perf_counter() - t0
        calls["reference"] = lambda: spec.ref(f64, p, grad=bool(gnames))
    if "source" in backends:
        source = baseline_of(spec.family, spec.name)
        if source is None:
            skipped["source"] = "no source formulation"
        else:
            calls["source"] = torch_call(lambda *xs: source(*xs, **p))
    notes: dict[str, str] = {}
    if "peers" in backends:
        for peer in peers_of(spec.name):
            why = peer.available()
            if why:
                notes[peer.library] = f"{peer.call}: {why}"
            else:
                calls[PEER + peer.library] = torch_call(peer.build(p))
                notes[peer.library] = peer.call

    timings: dict[str, Timing] = {}
    peers: dict[str, Timing] = {}
    outs: dict[str, Any] = {}
    for k, (timing, out) in time_interleaved(calls, repeat, sync).items():
        timing.value = total(out)
        outs[k] = out
        if k.startswith(PEER):
            peers[k[len(PEER):]] = timing
        else:
            timings[k] = timing
    for lib in peers:
        ours = outs.get("torch")
        notes[lib] += ": " + (compare(ours, outs[PEER + lib]) if ours is not None else "not compared (torch not run)")
    if "reference" in timings:
        timings["reference"].jit_s = jit_s
    for k, why in skipped.items():
        timings[k] = Timing(skipped=why)
    return Result(spec.name, p, dict(dims), dims_from, provider, device, grad, nthreads, export_s, timings, alloc,
                  mode, peers, notes)


PEER = "peer:"  # key prefix of the peers' calls among the timed callables


def bench(
    names: Sequence[str],
    dims: Mapping[str, int] | None = None,
    params: Mapping[str, Any] | None = None,
    progress: Callable[[Result], None] | None = None,
    **kwargs: Any,
) -> list[Result]:
    """:func:`bench_spec` for each name (``dims``/``params`` apply to all; unknown names fail first)."""
    specs = [catalog.get(n) for n in names]
    results = []
    for spec in specs:
        r = bench_spec(spec, dims, params, **kwargs)
        results.append(r)
        if progress:
            progress(r)
    return results

