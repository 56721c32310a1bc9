"""Profile one catalog loss at its benchmark size: torch operators and onnxruntime nodes by self time.

    python benchmarks/profile_loss.py NAME [--param K=V ...] [--shape B=..,..] [--top 15]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import onnxruntime as ort
import torch

from lossgraph import bench, catalog
from lossgraph.cli import parse_dims, parse_params
from lossgraph.export import OnnxLoss
from lossgraph.parity import GraphCache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--shape")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    spec = catalog.get(args.name)
    params = spec.resolve(parse_params(args.param))
    dims = parse_dims(args.shape) or bench.bench_dims(spec)[0]
    inputs = spec.example_inputs(dims, params=params)

    module = spec.build(**params)
    ts = [torch.from_numpy(v) for v in inputs.values()]
    with torch.no_grad():
        module(*ts)
        with torch.profiler.profile(record_shapes=True) as prof:
            module(*ts)
    print(f"torch eager, {args.name} {json.dumps(params)} at {dims}:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))

    path = GraphCache().get(spec, params, spec.export_dims, False)
    so = bench.session_options()
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    run = OnnxLoss(path, providers="cpu", sess_options=so)
    feeds = run.feeds(**inputs)
    for _ in range(3):
        run.session.run(None, feeds)
    with open(run.session.end_profiling()) as f:
        events = json.load(f)
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values())
    print(f"onnxruntime {ort.__version__} (3 runs), node kernel time by op type:")
    for op, us in per_op.most_common(args.top):
        print(f"  {op:<20} {us / 3e3:8.1f} ms/run  {us / total:6.1%}")


if __name__ == "__main__":
    main()
