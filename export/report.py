"""A report of an evaluation people look at: ``report.md`` with PNG charts (matplotlib, ``eval`` extra).

- ``iou.png``: per-class IoU bars of the dataset (a ``confusion`` run); absent classes marked;
- ``hist_<output>.png``: the histogram of the per-file values of each output (a confusion matrix
  contributes the file's own mean IoU);
- the ``k`` worst files with their values (highest loss, or lowest mean IoU for a confusion run),
  and the failed files.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .summary import file_value


def _fmt(v: Any) -> str:
    return "absent" if v is None else f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else str(v)


def per_file(rows: Sequence[Mapping[str, Any]], rules: Mapping[str, str]) -> dict[str, list[tuple[str, float]]]:
    """``{output: [(file, value), ...]}`` over the rows that ran, non-finite values left out."""
    out: dict[str, list[tuple[str, float]]] = {}
    for r in rows:
        for k, v in (r.get("outputs") or {}).items():
            value = file_value(v, rules.get(k, "mean"))
            if value is not None:
                out.setdefault(k, []).append((r["file"], value))
    return out


def write_report(
    directory: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    header: Mapping[str, Any],
    summary: Mapping[str, Any],
    worst: int = 10,
) -> str:
    """Write ``report.md`` and its charts into ``directory`` (made if needed); returns the .md path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--report needs matplotlib: pip install 'lossgraph[eval]'") from None

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    rules = dict(header.get("aggregation") or {})
    lines = [f"# Evaluation report: {header.get('loss') or header.get('model') or 'graph'}", ""]
    lines.append(f"{summary['count']} files: {summary['ok']} ok, {summary['failed']} failed, "
                 f"{summary['nonfinite']} with non-finite outputs.")
    if header.get("params"):
        lines.append(f"Parameters: `{json.dumps(header['params'])}`.")
    lines.append("")

    ds = summary.get("dataset")
    if ds:
        lines += ["## Dataset metrics", "",
                  f"mIoU **{_fmt(ds['miou'])}**, mDice {_fmt(ds['mdice'])}, mAcc {_fmt(ds['macc'])}, "
                  f"pixel accuracy {_fmt(ds['pixel_accuracy'])} over {ds['pixels']:.0f} pixels "
                  f"(sums of per-file confusion counts; absent-class convention: {ds['convention']}).", ""]
        fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * ds["classes"] + 1.5), 3.2))
        vals = [v if v is not None and math.isfinite(v) else 0.0 for v in ds["iou"]]
        bars = ax.bar(range(ds["classes"]), vals, color="#4C72B0")
        for k in ds["absent"] + ds["ignored"]:
            bars[k].set_color("#DDDDDD")
            ax.text(k, 0.02, "absent" if k in ds["absent"] else "ignored", rotation=90, ha="center", va="bottom", fontsize=7)
        ax.set(xlabel="class", ylabel="IoU", ylim=(0, 1), title=f"per-class IoU (mIoU {_fmt(ds['miou'])})")
        ax.set_xticks(range(ds["classes"]))
        fig.tight_layout()
        fig.savefig(os.path.join(directory, "iou.png"), dpi=100)
        plt.close(fig)
        lines += ["![per-class IoU](iou.png)", "", "| class | IoU | Dice | Acc |", "|---:|---:|---:|---:|"]
        lines += [f"| {k} | {_fmt(ds['iou'][k])} | {_fmt(ds['dice'][k])} | {_fmt(ds['acc'][k])} |"
                  for k in range(ds["classes"])]
        lines.append("")
    for name, v in summary.get("mean", {}).items():
        extra = f" (pixel-weighted {_fmt(summary['pixel_mean'][name])})" if name in summary.get("pixel_mean", {}) else ""
        lines.append(f"- mean {name} over files: {_fmt(v)}{extra}")
    lines.append("")

    for name, items in per_file(rows, rules).items():
        label = "file mIoU" if rules.get(name) == "confusion" else name
        safe = re.sub(r"[^\w.-]", "_", name)
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist([v for _, v in items], bins=min(50, max(5, len(items) // 4)), color="#55A868")
        ax.set(xlabel=label, ylabel="files", title=f"{label} per file ({len(items)} files)")
        fig.tight_layout()
        fig.savefig(os.path.join(directory, f"hist_{safe}.png"), dpi=100)
        plt.close(fig)
        low_is_bad = rules.get(name) == "confusion"
        ranked = sorted(items, key=lambda fv: fv[1], reverse=not low_is_bad)[:worst]
        lines += [f"## {label}", "", f"![{label} per file](hist_{safe}.png)", "",
                  f"{len(ranked)} worst files ({'lowest' if low_is_bad else 'highest'} {label}):", "",
                  f"| file | {label} |", "|---|---:|"]
        lines += [f"| `{f}` | {v:.6g} |" for f, v in ranked]
        lines.append("")

    if summary["failures"]:
        lines += ["## Failed files", ""] + [f"- `{f['file']}`: {f['error']}" for f in summary["failures"]] + [""]
    path = os.path.join(directory, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path
