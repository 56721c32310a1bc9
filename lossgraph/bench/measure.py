"""Measuring one call: interleaved timing with medians, peak memory growth, the allocator mode, threads
and providers. No catalog knowledge here (see :mod:`lossgraph.bench.harness`)."""

from __future__ import annotations

import ctypes
import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lossgraph._checks import InputError


class BenchError(InputError):
    """A benchmark that cannot run as asked (e.g. CUDA requested where there is none)."""


@dataclass
class Timing:
    """One backend's measurements: median seconds of ``times``, peak memory growth, first-call time."""

    median_s: float | None = None
    times: list[float] = field(default_factory=list)
    peak_mib: float | None = None
    first_s: float | None = None  # the warm-up call (includes one-time costs)
    #: median process CPU seconds per call (all threads; less distorted than wall time by a busy machine)
    cpu_s: float | None = None
    jit_s: float | None = None  # reference only: the first call on small inputs (JIT compile / cache load)
    value: float | None = None  # sum of the outputs, to check the backends computed the same thing
    skipped: str = ""  # why this backend was not timed


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

    def __enter__(self) -> PeakMemory:
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

    def __exit__(self, *exc: object) -> None:
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
    cpus: dict[str, list[float]] = {k: [] for k in calls}
    for rnd in range(repeat + 1):
        for k, fn in calls.items():
            with PeakMemory(trim=rnd == 0 or _malloc_mode == "default") as mem:
                c0, t0 = time.process_time(), time.perf_counter()
                outs[k] = fn()
                sync()
                dt = time.perf_counter() - t0
                cpus[k].append(time.process_time() - c0)
            if mem.mib is not None:
                peaks[k].append(mem.mib)
            if rnd == 0:
                timings[k].first_s = dt
            else:
                timings[k].times.append(dt)
    for k, t in timings.items():
        t.median_s = statistics.median(t.times) if t.times else t.first_s
        t.peak_mib = max(peaks[k]) if peaks[k] else None
        t.cpu_s = statistics.median(cpus[k][1:] or cpus[k]) if cpus[k] else None
    return {k: (timings[k], outs[k]) for k in calls}


def total(out: Any) -> float:
    """Sum of every output (and gradient) as a float64 scalar, whatever container they come in."""
    if isinstance(out, Mapping):
        return sum(total(v) for v in out.values())
    if isinstance(out, (tuple, list)):
        return sum(total(v) for v in out)
    if hasattr(out, "detach"):
        out = out.detach().double().cpu().numpy()
    return float(np.sum(np.asarray(out, dtype=np.float64)))


# --- providers and threads --------------------------------------------------------------------------------


def resolve_provider(provider: str) -> str:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` -> the provider to use; ``"cuda"`` without CUDA raises BenchError."""
    import torch

    from lossgraph.export.runner import cuda_usable

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
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
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



def malloc_mode() -> str:
    """The allocator mode in force in this process (see :func:`set_malloc`)."""
    return _malloc_mode
