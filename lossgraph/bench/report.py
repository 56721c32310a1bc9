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
from .harness import RATIOS, Result
from .measure import Timing, malloc_mode

OURS = ("torch", "onnx", "reference", "source")  # lossgraph's backends and the source loop, in table order


def summary(r: Result) -> str:
    """One line per result: medians, ratios, JIT and export times."""
    parts = []
    for b in OURS:
        t = r.timings.get(b)
        if t is None:
            continue
        parts.append(f"{b} {t.skipped}" if t.skipped else f"{b} {_ms(t.median_s)} ms")
    ratios = [f"{title} {_x(r.ratio(a, b))}" for a, b, title in RATIOS if r.ratio(a, b) is not None]
    ratios += [f"{lib} {_ms(t.median_s)} ms, ours/{lib} {_x(r.peer_ratio(lib))} (CPU time {_x(_cpu_ratio(r, lib))}; "
               f"{r.peer_notes.get(lib, '')})" for lib, t in r.peers.items()]
    ratios += [f"{lib}: {note}" for lib, note in r.peer_notes.items() if lib not in r.peers]  # not timed: why
    ref = r.timings.get("reference")
    extra = [f"ref JIT {ref.jit_s:.2f} s"] if ref and ref.jit_s is not None else []
    extra += [f"export {r.export_s:.1f} s"] if r.export_s is not None else []
    size = "×".join(f"{k}{v}" for k, v in r.dims.items())
    setup = f"{r.provider}, {r.threads} threads" + (f", malloc {r.malloc}" if r.malloc != "default" else "")
    return f"{_label(r)}{_param_tag(r)} {size} [{setup}]: " + ", ".join(parts + ratios + extra)


def _cpu_ratio(r: Result, lib: str) -> float | None:
    """Ours over the peer in process CPU time (see :class:`Timing`)."""
    a, b = r.timings.get("torch"), r.peers.get(lib)
    return a.cpu_s / b.cpu_s if a and b and a.cpu_s and b.cpu_s else None


def _label(r: Result) -> str:
    """The entry's name, tagged ``(train)`` where forward + backward was timed."""
    return r.name + (" (train)" if r.grad else "")


def _peer_cells(r: Result) -> tuple[str, str]:
    """``(fastest peer ms, ours/peer for every peer)`` table cells; "—" without peers."""
    fastest = r.fastest_peer()
    if fastest is None:
        return "—", "—"
    cells = []
    for lib in r.peers:
        agree = "same" if "agree" in r.peer_notes.get(lib, "") else "differs"
        cells.append(f"{_x(r.peer_ratio(lib))} {lib} ({agree})")
    return f"{_ms(r.peers[fastest].median_s)} {fastest}", ", ".join(cells)



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
        + ["fastest peer ms", "ours/peer (definition)", "peak MiB torch/onnx/ref/source", "ref JIT s", "export s", "agree"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        size = "×".join(f"{k}{v}" for k, v in r.dims.items())
        if r.dims_from != "bench_dims":
            size += f" ({r.dims_from})"
        changed = {k: v for k, v in r.params.items() if v != catalog.get(r.name).params.get(k)}
        mem = "/".join(_mib(r.timings[b].peak_mib) if b in r.timings else "—" for b in OURS)
        ref = r.timings.get("reference")
        diff = r.max_rel_diff()
        row = (
            [_label(r), json.dumps(changed) if changed else "defaults", size]
            + [_ms(r.median(b)) for b in OURS]
            + [_x(r.ratio(a, b)) for a, b, _ in RATIOS]
            + list(_peer_cells(r))
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

    labels = [_label(r) + _param_tag(r) for r in results]
    y = np.arange(len(results))
    series = [*OURS, "fastest peer"]
    height = 0.8 / len(series)

    def median(r: Result, b: str) -> float | None:
        fastest = r.fastest_peer()
        if b != "fastest peer":
            return r.median(b)
        return r.peers[fastest].median_s if fastest else None

    fig, ax = plt.subplots(figsize=(9.0, 0.5 * len(results) + 1.6))
    for k, b in enumerate(series):
        timed = [(i, m * 1e3) for i, r in enumerate(results) if (m := median(r, b))]  # only bars that exist
        if timed:
            rows, vals = zip(*timed)
            at = np.array(rows) + (k - (len(series) - 1) / 2) * height
            ax.barh(at, vals, height, label=b, color=f"C{k}")
            if b == "fastest peer":  # name the library beside its bar
                for i, x, v in zip(rows, at, vals):
                    ax.text(v, x, f" {results[i].fastest_peer()}", va="center", fontsize=6)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median time per call (ms, log)")
    setup = f"{results[0].threads} threads, malloc {results[0].malloc}" if results else ""
    ax.set_title(f"torch eager vs onnxruntime vs Numba reference vs source loop vs peers ({setup})", fontsize=9)
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
    return [
        Result(**{**r, "timings": {k: Timing(**t) for k, t in r["timings"].items()},
                  "peers": {k: Timing(**t) for k, t in r.get("peers", {}).items()}})
        for r in data["results"]
    ]


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
        notes = [f"* {_label(r)}{_param_tag(r)}, {lib}: {note}" for r in results for lib, note in r.peer_notes.items()]
        if notes:
            f.write("Peers (what each calls, and how its value and gradient compare with ours):\n\n")
            f.write("\n".join(notes) + "\n\n")
        f.write("![bar chart](results.png)\n")
    return paths
