"""Files per second of ``evaluate_files`` on a Dask LocalCluster (1 and 2 worker processes) against the
in-process run, for a heavy graph (Lovász-Softmax, 1x21x256x256 per file), a medium one (sigmoid focal,
2x5x128x128) and a light one (sigmoid focal, 2x5x32x32 per file); ratios from one run. The cluster is
measured without the small-sample fallback (``LOCAL_MIN_SECONDS``), then with it (what ``--workers 2``
does). With ``--task-seconds``, the light run is repeated
at other chunk targets (``lossgraph.export.distributed.TASK_SECONDS``) to show what the chunk size
costs.

    python benchmarks/dask_eval.py [--heavy N] [--light N] [--task-seconds 0.05,0.2,0.5,1] [--dir DIR]

Cluster start-up (reported apart) is not in the files/s; the session loads in the workers are. CPU
seconds per file (client, scheduler and workers together) are printed too: on a loaded machine they
show the overhead of the distributed run better than files/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import lossgraph as lg
from lossgraph.export import distributed as dd
from lossgraph.export import evaluate_files
from lossgraph.testing import GraphCache

CASES = {"heavy": ("lovasz_softmax", {"B": 1, "C": 21, "H": 256, "W": 256}),
         "medium": ("sigmoid_focal", {"B": 2, "C": 5, "H": 128, "W": 128}),
         "light": ("sigmoid_focal", {"B": 2, "C": 5, "H": 32, "W": 32})}


def dataset(root: str, name: str, dims: dict[str, int], n: int, cache: GraphCache) -> str:
    """The graph of catalog ``name`` (first case's parameters) and ``n`` seeded files under ``root``."""
    spec = lg.catalog.get(name)
    params = spec.resolve(spec.cases[0].params)
    graph = cache.get(spec, params, spec.cases[0].export_dims, False)
    os.makedirs(root, exist_ok=True)
    have = len([f for f in os.listdir(root) if f.endswith(".npz")])
    rng = np.random.default_rng(0)
    for i in range(n):
        x = spec.make_inputs(dims, rng, params)
        if i >= have:
            np.savez(os.path.join(root, f"f{i:06d}.npz"), **x)
    return graph


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _cpu() -> float:
    return time.process_time()


def measure(graph: str, root: str, client=None) -> tuple[float, float, int]:
    """Files per second, CPU seconds per file (this process, which also runs a LocalCluster's
    scheduler, plus every worker process) and the file count of one run over ``root``."""
    for f in os.listdir(root):  # every run reads from the page cache
        with open(os.path.join(root, f), "rb") as fh:
            fh.read()
    workers0 = client.run(_cpu) if client is not None else {}
    cpu0, t0 = time.process_time(), time.perf_counter()
    rows = evaluate_files(graph, root, providers="cpu", client=client)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    measure.sample_seconds = float(np.median([r["seconds"] for r in rows]))
    if client is not None:
        workers1 = client.run(_cpu)
        cpu += sum(workers1[w] - workers0.get(w, 0.0) for w in workers1)
    failed = sum(r["error"] is not None for r in rows)
    if failed:
        raise SystemExit(f"{failed} files failed in {root}")
    return len(rows) / wall, cpu / len(rows), len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heavy", type=int, default=48, help="files of the heavy graph")
    ap.add_argument("--medium", type=int, default=300, help="files of the medium graph (sigmoid focal 2x5x128x128)")
    ap.add_argument("--light", type=int, default=4000, help="files of the light graph")
    ap.add_argument("--task-seconds", default="", help="comma-separated chunk targets to compare on the light graph")
    ap.add_argument("--dir", help="where the graphs and files go (kept; default: a temporary folder)")
    args = ap.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix="dask_eval-")
    cache = GraphCache(os.path.join(base, "graphs"))
    counts = {"heavy": args.heavy, "medium": args.medium, "light": args.light}
    data = {k: (dataset(os.path.join(base, k), n, dims, counts[k], cache), os.path.join(base, k))
            for k, (n, dims) in CASES.items()}
    print(f"cores {len(os.sched_getaffinity(0))}, load average before {load()}")

    fallback = dd.LOCAL_MIN_SECONDS
    for kind, (graph, root) in data.items():
        here, here_cpu, n = measure(graph, root)
        line = [(f"{kind:6s} {CASES[kind][0]} {n} files, {1e3 * measure.sample_seconds:.2f} ms per sample: "
                 f"in-process {here:8.1f} files/s, {1e3 * here_cpu:.2f} ms CPU/file")]
        for workers in (1, 2):
            t0 = time.perf_counter()
            with dd.open_client(workers=workers) as client:
                start = time.perf_counter() - t0
                dd.LOCAL_MIN_SECONDS = 0  # the cluster itself, without the fallback
                there, cpu, _ = measure(graph, root, client)
                dd.LOCAL_MIN_SECONDS = fallback
                line.append(f"{workers} worker{'s' if workers > 1 else ''} {there:8.1f} files/s = {there / here:.2f}x, "
                            f"CPU/file {cpu / here_cpu:.2f}x (cluster start {start:.1f} s)")
                if workers == 2:
                    tool, _, _ = measure(graph, root, client)
                    line.append(f"--workers 2 as the tool runs it (in-process below {1e3 * fallback:g} ms per sample): "
                                f"{tool / here:.2f}x")
        print(";\n    ".join(line), flush=True)

    if args.task_seconds:
        graph, root = data["light"]
        default = dd.TASK_SECONDS
        with dd.open_client(workers=2) as client:
            dd.LOCAL_MIN_SECONDS = 0
            for target in (float(t) for t in args.task_seconds.split(",")):
                dd.TASK_SECONDS = target
                rate, cpu, _ = measure(graph, root, client)
                print(f"light, 2 workers, TASK_SECONDS {target:g}: {rate:8.1f} files/s, {1e3 * cpu:.2f} ms CPU/file",
                      flush=True)
        dd.TASK_SECONDS, dd.LOCAL_MIN_SECONDS = default, fallback
    print(f"load average after {load()}")


if __name__ == "__main__":
    main()
