"""Summaries of evaluation rows: per-file means, pixel-weighted means, sums and dataset-level
segmentation metrics from summed confusion counts. Torch-free.

Each graph output has an aggregation rule (graph metadata ``lossgraph.aggregation``, carried into the
results file's header):

- ``mean``: the mean over files of the per-file value (an array output contributes its mean); when
  the rows know their pixel counts and the files differ in size, ``pixel_mean`` (each file weighted
  by its pixels) is given too — the value one big batch of all pixels would give a mean-reduced loss.
- ``sum``: elementwise sum over files.
- ``confusion``: a sum of ``(C, C)`` confusion counts (rows: ground truth, columns: prediction); the
  summary adds a ``dataset`` object computed from the total counts, never from per-file ratios
  (mmsegmentation, torchmetrics' ``MulticlassJaccardIndex``, the Cityscapes/VOC scripts).

Dataset metrics, per class c with ``tp = M[c, c]``, ``gt = Σ_j M[c, j]``, ``pred = Σ_i M[i, c]``:
``IoU = tp / (gt + pred - tp)``, ``Dice = 2 tp / (gt + pred)``, ``Acc = tp / gt``; ``miou``, ``mdice``,
``macc`` average the classes that are present; ``pixel_accuracy = Σ tp / Σ M``.

A class *absent* from both ground truth and prediction (``gt + pred = 0``) has no IoU. Conventions:

- ``absent`` (default): its per-class values are ``None`` and it is listed in ``absent``; means skip it.
- ``mmseg``: per-class ``NaN`` (mmsegmentation's ``nanmean`` convention; JSON writes ``null``), means
  skip it — the means equal ``absent``'s.
- ``torchmetrics``: per-class ``0.0`` (``MulticlassJaccardIndex(average=None)``'s ``zero_division=0``);
  means skip it (``average="macro"`` gives absent classes weight 0) — again the same means.

A graph parameter ``ignore_index`` inside ``[0, C)`` removes that class (its pixels were not counted
as ground truth; torchmetrics gives it weight 0 too): it is listed in ``ignored`` and skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lossgraph._checks import InputError

RULES = ("mean", "sum", "confusion")
CONVENTIONS = ("absent", "mmseg", "torchmetrics")


def _absent_value(convention: str) -> float | None:
    return {"absent": None, "mmseg": math.nan, "torchmetrics": 0.0}[convention]


def dataset_metrics(confusion: Any, convention: str = "absent", ignore_index: int | None = None) -> dict[str, Any]:
    """Dataset-level IoU, Dice, accuracy from total confusion counts ``(C, C)`` (rows: truth)."""
    if convention not in CONVENTIONS:
        raise InputError(f"convention must be one of {', '.join(CONVENTIONS)}; got {convention!r}")
    m = np.asarray(confusion, dtype=np.float64)
    c = m.shape[0]
    tp, gt, pred = np.diag(m), m.sum(1), m.sum(0)
    union = gt + pred - tp
    ignored = [ignore_index] if ignore_index is not None and 0 <= ignore_index < c else []
    present = (union > 0) & ~np.isin(np.arange(c), ignored)
    absent = [int(k) for k in np.flatnonzero(union == 0) if k not in ignored]
    fill = _absent_value(convention)

    def per_class(num: np.ndarray, den: np.ndarray) -> tuple[list[float | None], float | None]:
        ok = present & (den > 0)
        vals = np.where(ok, num / np.where(den > 0, den, 1), 0.0)
        out = [float(v) if present[k] else fill for k, v in enumerate(vals)]
        mean = float(vals[present].mean()) if present.any() else None
        return out, mean

    iou, miou = per_class(tp, union)
    dice, mdice = per_class(2 * tp, gt + pred)
    acc, macc = per_class(tp, gt)
    total = float(m.sum())
    return {
        "classes": c,
        "pixels": total,
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else None,
        "miou": miou,
        "mdice": mdice,
        "macc": macc,
        "iou": iou,
        "dice": dice,
        "acc": acc,
        "absent": absent,
        "ignored": ignored,
        "convention": convention,
    }


def file_value(value: Any, rule: str) -> float | None:
    """The one number a file contributes to histograms and worst-file lists: a scalar as is, an
    array's mean, a confusion matrix's mean IoU over the classes it holds (``None`` when not finite)."""
    if value is None:
        return None
    if rule == "confusion":
        v = dataset_metrics(value)["miou"]
    else:
        arr = np.asarray(value, dtype=np.float64)
        v = float(arr.mean()) if arr.size else None
    return v if v is not None and math.isfinite(v) else None


def _finite_array(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)  # null elements read as NaN
    return arr if np.isfinite(arr).all() else None


def summarize(
    rows: Iterable[Mapping[str, Any]],
    header: Mapping[str, Any] | None = None,
    convention: str = "absent",
) -> dict[str, Any]:
    """The summary of rows: counts, failures, and per output its aggregate by rule.

    Args:
        rows: evaluation rows (``outputs``, ``error``, ``nonfinite``, ``pixels``).
        header: the results header: ``aggregation`` (``{output: rule}``, default ``mean``) and
            ``params`` (for ``ignore_index``).
        convention: absent-class convention of the ``dataset`` object (module docstring).

    Returns:
        ``count``, ``ok``, ``failed``, ``nonfinite`` (rows with a non-finite output, left out of the
        aggregates), ``mean`` / ``pixel_mean`` / ``sum`` (per output, by rule), ``dataset`` (for a
        ``confusion`` output), ``failures`` (``[{file, error}]``) and total ``seconds``.
    """
    rows = list(rows)
    header = header or {}
    rules = dict(header.get("aggregation") or {})
    per_out: dict[str, list[tuple[np.ndarray, int | None]]] = {}
    nonfinite = 0
    for r in rows:
        if r.get("error") or not r.get("outputs"):
            continue
        nonfinite += bool(r.get("nonfinite"))
        for k, v in r["outputs"].items():
            arr = _finite_array(v)
            if arr is not None:
                per_out.setdefault(k, []).append((arr, r.get("pixels")))
    failures = [{"file": r["file"], "error": r["error"]} for r in rows if r.get("error")]
    summary: dict[str, Any] = {
        "count": len(rows),
        "ok": len(rows) - len(failures),
        "failed": len(failures),
        "nonfinite": nonfinite,
        "mean": {},
        "failures": failures,
        "seconds": sum(float(r.get("seconds") or 0) for r in rows),
    }
    for name, items in per_out.items():
        rule = rules.get(name, "mean")
        if rule in ("sum", "confusion"):
            total = np.sum([a for a, _ in items], axis=0)
            summary.setdefault("sum", {})[name] = total.tolist()
            if rule == "confusion":
                ignore = (header.get("params") or {}).get("ignore_index")
                summary["dataset"] = {"output": name, **dataset_metrics(total, convention, ignore)}
            continue
        means = np.array([a.mean() for a, _ in items])
        summary["mean"][name] = float(means.mean())
        pixels = [p for _, p in items]
        if all(p for p in pixels) and len(set(pixels)) > 1:
            w = np.array(pixels, dtype=np.float64)
            summary.setdefault("pixel_mean", {})[name] = float((means * w).sum() / w.sum())
    return summary


def strict_json(x: Any) -> Any:
    """``x`` with every non-finite float replaced by ``None`` (``json.dumps(allow_nan=False)`` safe)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    return x
