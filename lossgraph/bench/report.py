"""Reporting: the one-line summary, the markdown table, the environment, the bar chart, saving and loading runs."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from .. import catalog
from .harness import BACKENDS, RATIOS, Result
from .measure import Timing, malloc_mode


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
        "malloc": malloc_mode(),
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
        f.write("![bar chart](results.png)\n")
    return paths
