"""onnxruntime session options compared on each catalog loss's value graph at its benchmark size.

Optimization levels (basic / extended / all), intra-op threads (1 vs the default), parallel
execution mode, memory-pattern planning and the CPU arena off; torch eager alongside. Medians of
interleaved calls (``lossgraph.bench.time_interleaved``), so a busy machine skews them alike.

    python benchmarks/ort_options.py [NAME ...] [--repeat R] [--shape B=..,C=..]
"""

from __future__ import annotations

import argparse

import onnxruntime as ort
import torch

from lossgraph import bench, catalog
from lossgraph.cli import parse_dims
from lossgraph.export import OnnxLoss
from lossgraph.parity import GraphCache

from _timing import medians


def options() -> dict[str, ort.SessionOptions]:
    """Named variants of the default session options."""
    out = {}
    for name in ("default", "basic", "extended", "threads=1", "parallel", "no_mem_pattern", "no_arena"):
        so = bench.session_options()
        if name == "basic":
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        elif name == "extended":
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        elif name == "threads=1":
            so.intra_op_num_threads = 1
        elif name == "parallel":
            so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        elif name == "no_mem_pattern":
            so.enable_mem_pattern = False
        elif name == "no_arena":
            so.enable_cpu_mem_arena = False
        out[name] = so
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--shape")
    args = ap.parse_args()
    graphs = GraphCache()
    variants = options()
    print("| loss | torch ms | " + " | ".join(f"{k} ms" for k in variants) + " |")
    print("|---|---|" + "---|" * len(variants))
    for name in args.names or catalog.names():
        spec = catalog.get(name)
        params = spec.resolve()
        dims = parse_dims(args.shape) or bench.bench_dims(spec)[0]
        inputs = spec.example_inputs(dims, params=params)
        path = graphs.get(spec, params, spec.export_dims, False)
        runs = {k: OnnxLoss(path, providers="cpu", sess_options=so) for k, so in variants.items()}
        feeds = next(iter(runs.values())).feeds(**inputs)
        module = spec.build(**params)
        ts = [torch.from_numpy(v) for v in inputs.values()]

        def eager():
            with torch.no_grad():
                return module(*ts)

        calls = {"torch": eager, **{k: (lambda r=r: r.session.run(None, feeds)) for k, r in runs.items()}}
        m = medians(calls, args.repeat)
        print(f"| {name} | " + " | ".join(f"{m[k] * 1e3:.1f}" for k in calls) + " |", flush=True)


if __name__ == "__main__":
    main()
