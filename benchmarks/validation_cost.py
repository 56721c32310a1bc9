"""What OnnxLoss's input validation costs: the same graph run with ``validate=True`` (label ranges,
[0, 1] domains, per-class list lengths checked in numpy before running) and ``validate=False``, at
each entry's bench size. Prints medians and the ratio, from one run (interleaved rounds).

    python benchmarks/validation_cost.py                 # every entry with a label or [0, 1] input
    python benchmarks/validation_cost.py dice focal --repeat 7
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from lossgraph import catalog
from lossgraph.catalog import UNIT_DOMAINS
from lossgraph.export import OnnxLoss, to_onnx


def validated_entries() -> list[str]:
    """Entries with an input OnnxLoss checks by value (labels, probabilities, 0/1 targets, masks)."""
    return [s.name for s in catalog.specs() if any(i.domain == "labels" or i.domain in UNIT_DOMAINS for i in s.input_specs())]


def measure(name: str, repeat: int, folder: str) -> tuple[float, float]:
    """Median seconds of one call with and without validation (interleaved, after a warm-up)."""
    spec = catalog.get(name)
    path = f"{folder}/{name}.onnx"
    to_onnx(spec.build(), spec.example_inputs(), path)
    inputs = spec.example_inputs(spec.bench_dims or spec.export_dims, seed=1)
    on, off = OnnxLoss(path, providers="cpu"), OnnxLoss(path, providers="cpu", validate=False)
    on(**inputs), off(**inputs)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeat):
        for flag, run in ((True, on), (False, off)):
            t0 = time.perf_counter()
            run(**inputs)
            times[flag].append(time.perf_counter() - t0)
    return statistics.median(times[True]), statistics.median(times[False])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print(f"{'entry':<18} {'validate':>12} {'no validate':>12} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.names or validated_entries():
            a, b = measure(name, args.repeat, folder)
            print(f"{name:<18} {a * 1e3:>10.2f}ms {b * 1e3:>10.2f}ms {a / b:>6.2f}x")


if __name__ == "__main__":
    main()
