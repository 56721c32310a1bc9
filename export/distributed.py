"""Evaluation on a Dask cluster: chunks of samples run in worker processes, rows come back to one writer.

Torch-free; needs ``distributed`` (``pip install lossgraph[dask]``). :func:`lossgraph.export.evaluate_files`
with ``client=distributed.Client(...)`` hands its samples to :func:`dask_rows`, whose tasks run the
in-process :func:`~lossgraph.export.evaluate.evaluate_chunk`; everything else (listing, shards, resume,
the results file and its lock, the summary) stays in the in-process code, so both runs give the same
rows. Only the client writes the results file. Sample files are read by the workers, at the client's
absolute paths (relative paths are taken from the client's working directory): shared storage.

How the work is cut and run:

- **One session per worker process**, loaded on its first task and cached by the graph's sha256. The
  graph reaches the workers either as bytes inside every task (the default: nothing needs to be
  shared; a catalog graph is tens of kB) or, with ``graph_path=True``, as a path every worker opens
  (shared storage; nothing but the path travels). Intra-op threads per session are
  ``cores of that machine // Dask worker threads on that machine`` (at least 1), so workers x threads
  never exceeds the cores.
- **Chunks sized from a measurement**: the first tasks carry one sample each; from then on a chunk
  holds ``TASK_SECONDS / (mean seconds per sample so far)`` samples (rows carry their own ``seconds``),
  capped so that each worker thread still gets about ``SPREAD`` chunks of what is left (load balance
  at the tail). ``2 x threads`` chunks are in flight at once, so rows arrive while others run.
- **Faults**: a worker that dies (``kill -9``, the nanny's memory limit) takes its running chunks with
  it; the scheduler reruns them elsewhere, and a chunk's rows are delivered once, when it finishes.
  A chunk that killed ``allowed-failures + 1`` workers (the scheduler setting
  ``distributed.scheduler.allowed-failures``, default 3) comes back as ``KilledWorker``; its samples
  are then rerun one per task, one at a time with nothing else running, and a sample that kills its
  worker again becomes a failed row. Other errors of a task (the graph does not load on the workers)
  stop the run.
- **On a LocalCluster** (whose workers share this machine's cores) the run stays in the client process
  when that process alone already keeps the cores busy: the first samples (at least :data:`PROBE`, and
  :data:`PROBE_SECONDS` of work) are evaluated here, and if their CPU seconds per wall second reach
  :data:`LOCAL_BUSY` of the cores (onnxruntime's intra-op threads scale the graph), local workers
  could only share the same cores and pay for the transfers; a warning says so. An existing cluster
  is always used.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lossgraph._checks import InputError

from .evaluate import EvalOptions, evaluate_chunk, evaluate_sample
from .runner import OnnxLoss, error_line
from .samples import Sample

#: target seconds of work per task (Dask costs about 1 ms per task; the client handles the rows of
#: each chunk in one go). Chosen from benchmarks/dask_eval.py: see the README, "Evaluate on a cluster".
TASK_SECONDS = 0.5
#: chunks per worker thread of the remaining work at most (keeps the tail balanced)
SPREAD = 4
#: on a LocalCluster, the run stays in the client process when the probe kept this share of the cores
#: busy (CPU seconds / wall seconds / cores). benchmarks/dask_eval.py on 2 idle cores: the in-process run
#: kept 0.99 (sigmoid focal 2x5x128x128) and 0.95 (Lovász-Softmax 1x21x256x256) of them busy, where 2
#: local workers gave 0.76x and 1.06x its rate; 0.62 (sigmoid focal 2x5x32x32), where they gave 1.17x.
#: ``math.inf``: always the cluster; 0: never.
LOCAL_BUSY = 0.8
#: seconds to wait for an existing scheduler to answer
CONNECT_SECONDS = 20
#: samples evaluated in the client process before a LocalCluster run decides (at least), ...
PROBE = 3
#: ... and seconds of their work (the first sample, which warms the session up, is not timed)
PROBE_SECONDS = 0.25

_log = logging.getLogger(__name__)

# --- the worker side ---------------------------------------------------------------------------------

_SESSIONS: dict[str, OnnxLoss] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Graph:
    """What a task needs to load the graph: ``sha`` (cache key), and ``data`` (bytes) or ``path``."""

    sha: str
    data: bytes | None = None
    path: str | None = None
    providers: str | tuple[str, ...] = "cpu"


def graph_for(model: Any, run: OnnxLoss, by_path: bool = False) -> Graph:
    """The :class:`Graph` of ``model`` (a path, bytes, ModelProto, or an OnnxLoss made from a path).

    With ``by_path`` the workers open the model's absolute path (which must exist on every worker);
    otherwise the bytes travel with the tasks.
    """
    if isinstance(model, OnnxLoss):
        model = model.source if model.source != "<model>" else None
    if isinstance(model, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(model))
        with open(path, "rb") as f:
            data = f.read()
    elif isinstance(model, (bytes, bytearray)):
        path, data = None, bytes(model)
    elif hasattr(model, "SerializeToString"):
        path, data = None, model.SerializeToString()
    else:
        raise InputError("evaluate_files: client= needs the model as a path, bytes or ModelProto "
                         "(an OnnxLoss made from bytes cannot be sent to workers)")
    if by_path and path is None:
        raise InputError("evaluate_files: graph_path=True needs the model as a path that every worker sees")
    sha = hashlib.sha256(data).hexdigest()
    provider = tuple(run.session.get_providers())
    return Graph(sha, None if by_path else data, path if by_path else None, provider)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def session(graph: Graph, threads: int) -> OnnxLoss:
    """This process's session for ``graph`` (created once, with ``threads`` intra-op threads)."""
    with _LOCK:
        run = _SESSIONS.get(graph.sha)
        if run is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            run = OnnxLoss(graph.data if graph.data is not None else graph.path, providers=list(graph.providers),
                           sess_options=opts)
            _SESSIONS[graph.sha] = run
    return run


def _worker_threads(threads: Mapping[str, int]) -> int:
    """Intra-op threads for this worker: the client's figure for its host, else cores // its threads."""
    from distributed import get_worker
    from distributed.comm import get_address_host

    worker = get_worker()
    host = get_address_host(worker.address)
    return threads.get(host) or max(1, _cores() // max(1, worker.state.nthreads))


def _rebase(sample: Sample, cwd: str) -> Sample:
    return replace(sample, sources=tuple(replace(src, path=os.path.join(cwd, src.path)) for src in sample.sources))


def run_chunk(graph: Graph, threads: Mapping[str, int], cwd: str, samples: Sequence[Sample],
              options: EvalOptions) -> list[dict[str, Any]]:
    """A task: the rows of ``samples`` (relative paths read under ``cwd``, named as given) by
    :func:`~lossgraph.export.evaluate.evaluate_chunk` in this worker's session."""
    rows = evaluate_chunk(session(graph, _worker_threads(threads)), [_rebase(s, cwd) for s in samples], options)
    return [{**row, "file": s.file} for row, s in zip(rows, samples)]


# --- the client side ---------------------------------------------------------------------------------


def threads_per_host(client: Any) -> dict[str, int]:
    """``{host: intra-op threads}``: the host's cores divided by the Dask worker threads on it."""
    from distributed.comm import get_address_host

    cores = client.run(_cores)
    on_host: dict[str, int] = {}
    cores_of: dict[str, int] = {}
    for addr, n in client.nthreads().items():
        host = get_address_host(addr)
        on_host[host] = on_host.get(host, 0) + n
        cores_of[host] = cores.get(addr, 1)
    return {h: max(1, cores_of[h] // n) for h, n in on_host.items()}


def chunk_size(seconds_per_item: float | None, remaining: int, slots: int) -> int:
    """Samples in the next task: 1 until a row has been timed, then :data:`TASK_SECONDS` worth,
    at most ``remaining / (SPREAD x slots)`` (rounded up) and at least 1."""
    if seconds_per_item is None:
        return 1
    target = int(TASK_SECONDS / max(seconds_per_item, 1e-6))
    return max(1, min(target, math.ceil(remaining / (SPREAD * slots))))


def died_row(sample: Sample, deaths: int) -> dict[str, Any]:
    """The failed row of a sample that killed ``deaths`` worker processes when it ran alone."""
    error = (f"the worker process died {deaths} times while evaluating this sample alone "
             f"(distributed.scheduler.allowed-failures = {deaths - 1}): a crash, or the worker's memory limit")
    return {"key": sample.key, "file": sample.file, "outputs": None, "seconds": 0.0, "error": error,
            "nonfinite": [], "pixels": None}


def is_local(client: Any) -> bool:
    """Whether ``client`` runs a ``LocalCluster`` (its workers share this machine's cores)."""
    from distributed import LocalCluster

    return isinstance(getattr(client, "cluster", None), LocalCluster)


def dask_rows(client: Any, model: Any, run: OnnxLoss, samples: Sequence[Sample], options: EvalOptions,
              by_path: bool = False) -> Iterator[dict[str, Any]]:
    """Rows of ``samples`` as their chunks finish on the cluster of ``client``, each sample's row once.

    ``model`` and ``run`` are the graph as given and its session in this process (which picks the
    providers); with ``by_path`` the workers open the model's path instead of receiving its bytes.

    On a ``LocalCluster``, the first samples are evaluated here, one by one (their rows count): at least
    :data:`PROBE` of them and :data:`PROBE_SECONDS` of work. When this process kept :data:`LOCAL_BUSY` of
    the machine's cores busy meanwhile, the whole run stays here (local workers would share the same
    cores) and a warning says so.
    """
    probed = 0
    if is_local(client) and LOCAL_BUSY < math.inf:
        cpu = wall = 0.0
        for s in samples:
            c0, t0 = time.process_time(), time.perf_counter()
            row = evaluate_sample(run, s, options)
            if probed:  # the first run of a session warms it up (allocations, one thread)
                cpu, wall = cpu + time.process_time() - c0, wall + time.perf_counter() - t0
            probed += 1
            yield row
            if probed > PROBE and wall >= PROBE_SECONDS:
                break
        if probed == len(samples):
            return
        cores = _cores()
        busy = cpu / wall / cores if wall > 0 else math.inf
        if busy >= LOCAL_BUSY:
            _log.warning("eval: this process alone keeps %.2g of the %d cores busy (%.0f%% of them, over %d samples), "
                         "%.0f%% or more is where a local Dask cluster does not pay off (benchmarks/dask_eval.py): "
                         "evaluating in this process", busy * cores, cores, 100 * busy, probed - 1, 100 * LOCAL_BUSY)
            yield from (evaluate_sample(run, s, options) for s in samples[probed:])
            return
    yield from _cluster_rows(client, graph_for(model, run, by_path), samples[probed:], options)


def _cluster_rows(client: Any, graph: Graph, samples: Sequence[Sample], options: EvalOptions) -> Iterator[dict[str, Any]]:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    slots = max(1, sum(client.nthreads().values()))
    threads = threads_per_host(client)
    deaths = int(client.run_on_scheduler(_allowed_failures)) + 1
    cwd = os.getcwd()
    pending = deque(range(len(samples)))
    isolate: deque[int] = deque()
    active: dict[Any, list[int]] = {}
    done = [False] * len(samples)
    timed = [0.0, 0]  # seconds of the rows timed so far, their count
    tag = uuid.uuid4().hex[:8]
    ac = as_completed()

    def submit(idx: list[int]) -> None:
        fut = client.submit(run_chunk, graph, threads, cwd, [samples[i] for i in idx], options,
                            key=f"lossgraph-eval-{tag}-{idx[0]}-{uuid.uuid4().hex[:8]}", pure=False)
        active[fut] = idx
        ac.add(fut)

    try:
        while True:
            if isolate:  # suspects run alone, one at a time, so a death is theirs only
                if not active:
                    submit([isolate.popleft()])
            else:
                while pending and len(active) < 2 * slots:
                    n = chunk_size(timed[0] / timed[1] if timed[1] else None, len(pending), slots)
                    submit([pending.popleft() for _ in range(min(n, len(pending)))])
            if not active:
                return
            fut = next(ac)
            idx = active.pop(fut)
            if fut.status == "error" and isinstance(fut.exception(), KilledWorker):
                if len(idx) > 1:
                    isolate.extend(idx)
                    continue
                rows = [died_row(samples[idx[0]], deaths)]
            else:
                rows = fut.result()  # re-raises a task's own error (a graph the workers cannot load)
            fut.release()
            for i, row in zip(idx, rows):
                if done[i]:
                    continue
                done[i] = True
                if row["error"] is None:
                    timed[0] += float(row["seconds"])
                    timed[1] += 1
                yield row
    finally:
        if active:
            client.cancel(list(active))


def _allowed_failures(dask_scheduler: Any) -> int:
    """The scheduler's ``allowed-failures`` (run on the scheduler: its own setting counts)."""
    return int(dask_scheduler.allowed_failures)


@contextlib.contextmanager
def open_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: on an existing scheduler (``tcp://HOST:PORT`` or a scheduler file),
    or on a new ``LocalCluster`` of ``workers`` processes with one thread each (closed on exit)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("--workers/--scheduler need Dask: pip install 'lossgraph[dask]'") from None
    if scheduler is not None:
        kwargs = {"scheduler_file": scheduler} if os.path.isfile(scheduler) else {"address": scheduler}
        try:
            client = Client(**kwargs, timeout=CONNECT_SECONDS)
        except (OSError, ValueError) as e:  # unreachable, or not an address
            raise OSError(f"cannot reach the Dask scheduler {scheduler}: {error_line(e)}") from None
        with client:
            yield client
        return
    with warnings.catch_warnings():  # the scheduler's HTTP server (no dashboard) moves off a busy port 8787
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=logging.ERROR)
    with cluster, Client(cluster) as client:
        yield client
