"""Files per second of ``evaluate_files`` on a Dask LocalCluster (1 and 2 worker processes) against the
in-process run, for a heavy graph (Lovász-Softmax, 1x21x256x256 per file), a medium one (sigmoid focal,
2x5x128x128) and a light one (sigmoid focal, 2x5x32x32 per file); ratios from one run (medians of
interleaved rounds, so a load that drifts skews them alike). "1 thread" is the in-process run on one
intra-op thread: what onnxruntime's own threads give. The clusters are measured without the
in-process fallback (``LOCAL_BUSY``), then with it ("--workers 2": what the tool does). Also
Dask's own cost per task, which ``TASK_SECONDS`` (the work per chunk) must dwarf.

    python benchmarks/dask_eval.py [--heavy N] [--medium N] [--light N] [--rounds R] [--dir DIR]

Cluster start-up (reported apart) is not in the files/s; the session loads in the workers are. CPU
seconds per file (client, scheduler and workers together) are printed too: on a loaded machine they
show the overhead of the distributed run better than files/s.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import numpy as np

import lossgraph as lg
from lossgraph.export import distributed as dd
from lossgraph.export import evaluate_files
from lossgraph.parity import GraphCache

CASES = {"heavy": ("lovasz_softmax", {"B": 1, "C": 21, "H": 256, "W": 256}),
         "medium": ("sigmoid_focal", {"B": 2, "C": 5, "H": 128, "W": 128}),
         "light": ("sigmoid_focal", {"B": 2, "C": 5, "H": 32, "W": 32})}


def dataset(root: str, name: str, dims: dict[str, int], n: int, cache: GraphCache) -> str:
    """The graph of catalog ``name`` (first case's parameters) and ``n`` seeded files under ``root``."""
    spec = lg.catalog.get(name)
    params = spec.resolve(spec.cases[0].params)
    graph = cache.get(spec, params, spec.cases[0].export_dims, False)
    os.makedirs(root, exist_ok=True)
    have = sorted(f for f in os.listdir(root) if f.endswith(".npz"))
    for f in have[n:]:  # exactly n files: the runs take the directory
        os.remove(os.path.join(root, f))
    rng = np.random.default_rng(0)
    for i in range(n):
        x = spec.make_inputs(dims, rng, params)
        if i >= len(have):
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


def _one_thread():
    """Session options of an in-process run on one intra-op thread (how much onnxruntime's threads give)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return opts


def task_cost(graph: str, client, n: int = 300) -> tuple[float, float]:
    """Wall and CPU seconds (client, scheduler and workers) per task of an empty chunk: Dask's own cost."""
    from distributed import wait

    from lossgraph.export.evaluate import EvalOptions

    g = dd.graph_for(graph, dd.OnnxLoss(graph, providers="cpu"))
    threads = dd.threads_per_host(client)
    wait([client.submit(dd.run_chunk, g, threads, os.getcwd(), [], EvalOptions(), pure=False) for _ in range(4)])
    workers0, cpu0, t0 = client.run(_cpu), time.process_time(), time.perf_counter()
    wait([client.submit(dd.run_chunk, g, threads, os.getcwd(), [], EvalOptions(), pure=False) for _ in range(n)])
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    workers1 = client.run(_cpu)
    return wall / n, (cpu + sum(workers1[w] - workers0.get(w, 0.0) for w in workers1)) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heavy", type=int, default=24, help="files of the heavy graph")
    ap.add_argument("--medium", type=int, default=300, help="files of the medium graph (sigmoid focal 2x5x128x128)")
    ap.add_argument("--light", type=int, default=3000, help="files of the light graph (0 skips a case)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (in-process, 1, 2 workers); medians")
    ap.add_argument("--dir", help="where the graphs and files go (kept; default: a temporary folder)")
    args = ap.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix="dask_eval-")
    cache = GraphCache(os.path.join(base, "graphs"))
    counts = {"heavy": args.heavy, "medium": args.medium, "light": args.light}
    data = {k: (dataset(os.path.join(base, k), n, dims, counts[k], cache), os.path.join(base, k), counts[k])
            for k, (n, dims) in CASES.items() if counts[k] > 0}
    print(f"cores {len(os.sched_getaffinity(0))}, load average before {load()}")

    fallback = dd.LOCAL_BUSY
    t0 = time.perf_counter()
    with dd.open_client(workers=1) as one, dd.open_client(workers=2) as two:
        print(f"two LocalClusters started in {time.perf_counter() - t0:.1f} s")
        wall, cpu = task_cost(next(iter(data.values()))[0], two)
        print(f"Dask's cost per task (empty chunk, 2 workers): {1e3 * wall:.2f} ms wall, {1e3 * cpu:.2f} ms CPU "
              f"-> TASK_SECONDS {dd.TASK_SECONDS:g} s keeps it under {100 * cpu / dd.TASK_SECONDS:.1f} %")
        for kind, (graph, root, n) in data.items():
            runs: dict[str, list[tuple[float, float]]] = {}
            per_sample = []
            for _ in range(args.rounds):
                for name, client, floor in (("in-process", None, fallback), ("1 thread", None, fallback), ("1 worker", one, math.inf), ("2 workers", two, math.inf),
                                            ("--workers 2", two, fallback)):
                    dd.LOCAL_BUSY = floor  # inf: the cluster itself; the default: what the tool does
                    model = graph if name != "1 thread" else dd.OnnxLoss(graph, providers="cpu", sess_options=_one_thread())
                    rate, cpu, _ = measure(model, root, client)
                    runs.setdefault(name, []).append((rate, cpu))
                    if client is None:
                        per_sample.append(measure.sample_seconds)
            dd.LOCAL_BUSY = fallback
            med = {k: (float(np.median([r for r, _ in v])), float(np.median([c for _, c in v]))) for k, v in runs.items()}
            here, here_cpu = med["in-process"]
            line = [(f"{kind:6s} {CASES[kind][0]} {n} files, {1e3 * float(np.median(per_sample)):.2f} ms per sample: "
                     f"in-process {here:8.1f} files/s, {1e3 * here_cpu:.2f} ms CPU/file")]
            line[0] += f" ({here * here_cpu / len(os.sched_getaffinity(0)):.0%} of the cores busy)"
            for name in ("1 thread", "1 worker", "2 workers", "--workers 2"):
                rate, cpu = med[name]
                line.append(f"{name:11s} {rate:8.1f} files/s = {rate / here:.2f}x, CPU/file {cpu / here_cpu:.2f}x")
            print(";\n    ".join(line) + f"  (medians of {args.rounds}; '--workers 2' stays in-process when that "
                  f"keeps {100 * fallback:g}% of the cores busy)", flush=True)
    print(f"load average after {load()}")


if __name__ == "__main__":
    main()
