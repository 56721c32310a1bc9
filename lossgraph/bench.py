"""Benchmarks: every catalog loss timed in torch eager, onnxruntime, the Numba reference and the source code.

One process, one run: for each catalog entry, at its realistic size (``Spec.bench_dims``; entries
without one fall back to the first case's export dims, and the table says so), the same seeded inputs
go through

* ``torch``: the lossgraph module, eager (``torch.no_grad``; with ``grad=True`` forward + backward);
* ``onnx``: the exported graph (value graph, or the gradient graph with ``grad=True``) in onnxruntime;
* ``reference``: the NumPy + Numba float64 reference, timed after a JIT warm-up on the first case's
  small inputs (that first call, JIT compile or cache load, is reported separately as ``jit_s``);
* ``source``: the source documents' loop formulation, where ``lossgraph.baselines.<family>.BASELINES``
  maps the loss name to one (called like the functional form: inputs in catalog order, parameters).

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

import ctypes
import gc
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import catalog
from .catalog import Spec

BACKENDS = ("torch", "onnx", "reference", "source")
#: ratios printed and tabulated: (numerator, denominator, column title)
RATIOS = (("onnx", "torch", "onnx/torch"), ("reference", "torch", "ref/torch"), ("torch", "source", "ours/source"))


class BenchError(ValueError):
    """A benchmark that cannot run as asked (e.g. CUDA requested where there is none)."""


@dataclass
class Timing:
    """One backend's measurements: median seconds of ``times``, peak memory growth, first-call time."""

    median_s: float | None = None
    times: list[float] = field(default_factory=list)
    peak_mib: float | None = None
    first_s: float | None = None  # the warm-up call (includes one-time costs)
    jit_s: float | None = None  # reference only: the first call on small inputs (JIT compile / cache load)
    value: float | None = None  # sum of the outputs, to check the backends computed the same thing
    skipped: str = ""  # why this backend was not timed


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

    def median(self, backend: str) -> float | None:
        t = self.timings.get(backend)
        return t.median_s if t else None

    def ratio(self, num: str, den: str) -> float | None:
        """``median(num) / median(den)``, or None when either was not timed."""
        a, b = self.median(num), self.median(den)
        return a / b if a is not None and b else None

    def max_rel_diff(self) -> float | None:
        """Largest relative difference between the backends' output sums (sanity check, not a test)."""
        vals = [t.value for t in self.timings.values() if t.value is not None]
        if len(vals) < 2:
            return None
        ref = max(abs(v) for v in vals) or 1.0
        return (max(vals) - min(vals)) / ref


# --- measuring ------------------------------------------------------------------------------------------


def _rss_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Growth of the resident set over a block: kernel high-water mark minus the RSS at entry (Linux).

    ``mib`` is None where ``/proc/self/clear_refs`` cannot reset the high-water mark. With ``trim``
    freed heap memory goes back to the OS first, so memory left by earlier calls hides nothing.
    """

    def __init__(self, trim: bool = True) -> None:
        self.trim = trim

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.trim:
            _malloc_trim()
        self.mib: float | None = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self._start = _rss_kib("VmRSS")
        except OSError:
            self._start = None
        return self

    def __exit__(self, *exc: Any) -> None:
        peak = _rss_kib("VmHWM")
        if self._start is not None and peak is not None:
            self.mib = max(peak - self._start, 0) / 1024.0


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so one backend's leftovers do not hide the next's peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


#: ``"default"``: the C library's allocator as it comes; ``"reuse"``: see :func:`set_malloc`
MALLOC_MODES = ("default", "reuse")
_malloc_mode = "default"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)


def set_malloc(mode: str) -> str:
    """Choose how freed memory is kept for the rest of the process; returns the mode now in force.

    ``"reuse"`` (glibc only) serves every allocation from the heap and keeps what is freed there
    (``mallopt(M_MMAP_MAX, 0)``, ``M_TRIM_THRESHOLD`` 1 GiB), so a repeated call reuses its
    buffers. By default glibc maps each block over 32 MiB afresh and unmaps it on free, so every
    call of an eager torch loss with full-size temporaries faults in and zeroes all of them again
    (Lovász-Softmax at 8x21x256x256: about 263,000 page faults, 1 GB, per call), while
    onnxruntime's arena and a loop's small buffers are reused. ``"reuse"`` is the effect of tcmalloc
    or jemalloc, the allocators PyTorch's CPU tuning guide recommends. It cannot be undone in the
    process; timed rounds then skip the trim before each call (the warm-up call still trims, so
    peak memory stays each backend's own).
    """
    global _malloc_mode
    if mode not in MALLOC_MODES:
        raise BenchError(f"bench: malloc must be one of {', '.join(MALLOC_MODES)}; got {mode!r}")
    if mode == "reuse" and _malloc_mode != "reuse":
        try:
            libc = ctypes.CDLL("libc.so.6")
            ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**30) == 1
        except (OSError, AttributeError):
            ok = False
        if not ok:
            raise BenchError("bench: malloc 'reuse' needs glibc's mallopt, which is not available here")
        _malloc_mode = "reuse"
    elif mode == "default" and _malloc_mode == "reuse":
        raise BenchError("bench: malloc 'reuse' was set in this process and cannot be undone")
    return _malloc_mode


def time_interleaved(calls: Mapping[str, Callable[[], Any]], repeat: int, sync: Callable[[], None]) -> dict[str, tuple[Timing, Any]]:
    """One warm-up call of each callable, then ``repeat`` rounds calling each once, in turn.

    Interleaving makes a shared machine's changing load fall on every backend alike, so the ratios of
    the medians stay meaningful. Returns ``{name: (timing, last output)}``; peak memory is the largest
    growth over any one call (the warm-up, where arenas grow, usually).
    """
    timings = {k: Timing(times=[]) for k in calls}
    outs: dict[str, Any] = {}
    peaks: dict[str, list[float]] = {k: [] for k in calls}
    for rnd in range(repeat + 1):
        for k, fn in calls.items():
            with PeakMemory(trim=rnd == 0 or _malloc_mode == "default") as mem:
                t0 = time.perf_counter()
                outs[k] = fn()
                sync()
                dt = time.perf_counter() - t0
            if mem.mib is not None:
                peaks[k].append(mem.mib)
            if rnd == 0:
                timings[k].first_s = dt
            else:
                timings[k].times.append(dt)
    for k, t in timings.items():
        t.median_s = statistics.median(t.times) if t.times else t.first_s
        t.peak_mib = max(peaks[k]) if peaks[k] else None
    return {k: (timings[k], outs[k]) for k in calls}


def _total(out: Any) -> float:
    """Sum of every output (and gradient) as a float64 scalar, whatever container they come in."""
    if isinstance(out, Mapping):
        return sum(_total(v) for v in out.values())
    if isinstance(out, (tuple, list)):
        return sum(_total(v) for v in out)
    if hasattr(out, "detach"):
        out = out.detach().double().cpu().numpy()
    return float(np.sum(np.asarray(out, dtype=np.float64)))


# --- providers and threads --------------------------------------------------------------------------------


def resolve_provider(provider: str) -> str:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` -> the provider to use; ``"cuda"`` without CUDA raises BenchError."""
    from lossgraph.export.runner import cuda_usable

    import torch

    if provider not in ("auto", "cpu", "cuda"):
        raise BenchError(f"bench: provider must be 'auto', 'cpu' or 'cuda'; got {provider!r}")
    cuda = cuda_usable() and torch.cuda.is_available()
    if provider == "cuda" and not cuda:
        import onnxruntime as ort

        raise BenchError(
            "bench: --provider cuda asked for, but CUDA is not usable here "
            f"(torch.cuda.is_available()={torch.cuda.is_available()}, onnxruntime providers: "
            f"{', '.join(ort.get_available_providers())}, libcuda.so.1 loadable: {cuda_usable()}); use --provider cpu"
        )
    if provider == "auto":
        return "cuda" if cuda else "cpu"
    return provider


def set_threads(threads: int | None) -> int:
    """Use ``threads`` intra-op threads in torch and Numba (None: leave the defaults); returns the count."""
    import numba
    import torch

    if threads is not None:
        # Numba first: starting its threading layer resets the OpenMP thread count torch reads
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def session_options(threads: int | None = None) -> Any:
    """onnxruntime session options the benchmarks use: defaults, ``threads`` intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads is not None:
        so.intra_op_num_threads = threads
    return so


# --- one entry --------------------------------------------------------------------------------------------


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
    grad: bool = False,
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
        grad: time value and gradient (torch autograd, the gradient graph, ``grad=True`` reference).
        backends: which of :data:`BACKENDS` to run.
        graphs: a :class:`lossgraph.testing.GraphCache` to export into (default: a temporary one).
        sess_options: onnxruntime ``SessionOptions`` (default :func:`session_options`).
        malloc: ``"reuse"`` to keep freed memory for reuse for the rest of the process
            (:func:`set_malloc`); None leaves the allocator as it is.
    """
    import torch

    from lossgraph.export import OnnxLoss
    from lossgraph.baselines import baseline_of
    from lossgraph.testing import GraphCache

    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise BenchError(f"bench: unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    provider = resolve_provider(provider)
    device = "cuda" if provider == "cuda" else "cpu"
    nthreads = set_threads(threads)
    mode = set_malloc(malloc) if malloc is not None else _malloc_mode
    p = spec.resolve(params)
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

    timings: dict[str, Timing] = {}
    for k, (timing, out) in time_interleaved(calls, repeat, sync).items():
        timing.value = _total(out)
        timings[k] = timing
    if "reference" in timings:
        timings["reference"].jit_s = jit_s
    for k, why in skipped.items():
        timings[k] = Timing(skipped=why)
    return Result(spec.name, p, dict(dims), dims_from, provider, device, grad, nthreads, export_s, timings, mode)


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


def summary(r: Result) -> str:
    """One line per result: medians, ratios, JIT and export times."""
    parts = []
    for b in BACKENDS:
        t = r.timings.get(b)
        if t is None:
            continue
        parts.append(f"{b} {t.skipped}" if t.skipped else f"{b} {_ms(t.median_s)} ms")
    ratios = [f"{title} {_x(r.ratio(a, b))}" for a, b, title in RATIOS if r.ratio(a, b) is not None]
    ref = r.timings.get("reference")
    extra = [f"ref JIT {ref.jit_s:.2f} s"] if ref and ref.jit_s is not None else []
    extra += [f"export {r.export_s:.1f} s"] if r.export_s is not None else []
    size = "×".join(f"{k}{v}" for k, v in r.dims.items())
    setup = f"{r.provider}, {r.threads} threads" + (f", malloc {r.malloc}" if r.malloc != "default" else "")
    return f"{r.name}{' (grad)' if r.grad else ''} {size} [{setup}]: " + ", ".join(parts + ratios + extra)


# --- reporting --------------------------------------------------------------------------------------------


def _ms(t: float | None) -> str:
    return "—" if t is None else f"{t * 1e3:.1f}"


def _x(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}×"


def _mib(m: float | None) -> str:
    return "—" if m is None else f"{m:.0f}"


def format_table(results: Sequence[Result]) -> str:
    """Markdown table: medians (ms), ratios, peak memory growth (MiB), JIT time, sizes."""
    head = (
        ["loss", "params", "size", "torch ms", "onnx ms", "ref ms", "source ms"]
        + [title for _, _, title in RATIOS]
        + ["peak MiB torch/onnx/ref/source", "ref JIT s", "export s", "agree"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        size = "×".join(f"{k}{v}" for k, v in r.dims.items())
        if r.dims_from != "bench_dims":
            size += f" ({r.dims_from})"
        changed = {k: v for k, v in r.params.items() if v != catalog.get(r.name).params.get(k)}
        mem = "/".join(_mib(r.timings[b].peak_mib) if b in r.timings else "—" for b in BACKENDS)
        ref = r.timings.get("reference")
        diff = r.max_rel_diff()
        row = (
            [r.name + (" (grad)" if r.grad else ""), json.dumps(changed) if changed else "defaults", size]
            + [_ms(r.median(b)) for b in ("torch", "onnx", "reference", "source")]
            + [_x(r.ratio(a, b)) for a, b, _ in RATIOS]
            + [
                mem,
                "—" if ref is None or ref.jit_s is None else f"{ref.jit_s:.2f}",
                "—" if r.export_s is None else f"{r.export_s:.1f}",
                "—" if diff is None else f"{diff:.0e}",
            ]
        )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def environment(threads: int) -> dict[str, Any]:
    """Versions and machine facts that go with a results table."""
    import numba
    import onnxruntime
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
        "malloc": _malloc_mode,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def plot(results: Sequence[Result], path: str) -> None:
    """Horizontal bar chart of the medians (ms, log scale) per loss and backend, written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r.name + (" (grad)" if r.grad else "") + _param_tag(r) for r in results]
    y = np.arange(len(results))
    height = 0.8 / len(BACKENDS)
    fig, ax = plt.subplots(figsize=(9.0, 0.42 * len(results) + 1.6))
    for k, b in enumerate(BACKENDS):
        timed = [(i, r.median(b) * 1e3) for i, r in enumerate(results) if r.median(b)]  # only bars that exist
        if timed:
            rows, vals = zip(*timed)
            ax.barh(np.array(rows) + (k - (len(BACKENDS) - 1) / 2) * height, vals, height, label=b, color=f"C{k}")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median time per call (ms, log)")
    setup = f"{results[0].threads} threads, malloc {results[0].malloc}" if results else ""
    ax.set_title(f"torch eager vs onnxruntime vs Numba reference vs source loop code ({setup})", fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _param_tag(r: Result) -> str:
    changed = {k: v for k, v in r.params.items() if v != catalog.get(r.name).params.get(k)}
    return " " + ",".join(f"{k}={v}" for k, v in changed.items()) if changed else ""


def load_results(path: str) -> list[Result]:
    """The results a :func:`write_results` call saved (its ``results.json``), to re-plot or compare runs."""
    with open(path) as f:
        data = json.load(f)
    return [Result(**{**r, "timings": {k: Timing(**t) for k, t in r["timings"].items()}}) for r in data["results"]]


def write_results(results: Sequence[Result], folder: str, title: str = "lossgraph benchmarks") -> dict[str, str]:
    """Write ``results.md`` (table + environment), ``results.json`` and ``results.png`` under ``folder``."""
    os.makedirs(folder, exist_ok=True)
    env = environment(results[0].threads if results else 0)
    paths = {k: os.path.join(folder, f"results.{k}") for k in ("md", "json", "png")}
    with open(paths["json"], "w") as f:
        json.dump({"environment": env, "results": [asdict(r) for r in results]}, f, indent=1)
    plot(results, paths["png"])
    with open(paths["md"], "w") as f:
        f.write(f"# {title}\n\n")
        f.write("Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()) + "\n\n")
        f.write(format_table(results) + "\n\n")
        f.write(f"![bar chart](results.png)\n")
    return paths
