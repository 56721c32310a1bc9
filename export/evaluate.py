"""Evaluate an exported loss graph over many saved ``.npz`` files: one session, one row per file.

Torch-free. Each ``.npz`` holds arrays named like the graph inputs (``mapping`` renames them). A file
that cannot be evaluated (unreadable, missing or misshapen arrays, non-finite values with
``check_finite``) gives a row with an ``error`` and the run goes on. Rows are appended to ``out``
(``.jsonl`` or ``.csv``) and flushed one by one, so an interrupted run loses at most the row being
written; ``resume=True`` reads ``out`` back and evaluates only the files not in it. ``shard=(i, n)``
keeps the files whose relative path hashes to shard ``i`` of ``n`` (1-based), so ``n`` jobs share a
dataset with no coordination and every file lands in exactly one shard.

    >>> rows = evaluate_files("focal.onnx", "preds/", out="results.jsonl")       # doctest: +SKIP
    >>> summarize(rows)["mean"]                                                    # doctest: +SKIP
    {'loss': 0.0123}

A row: ``{"file": path, "outputs": {name: float or nested list}, "seconds": s, "error": None}``;
a failed row has ``"outputs": None`` and the reason in ``"error"``.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .runner import OnnxLoss, error_line

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_CSV_FIXED = ["file", "seconds", "error"]


class Progress:
    """Progress callbacks of :func:`evaluate_files` (this base class does nothing)."""

    def start(self, total: int, skipped: int) -> None:
        """``total`` files in this shard, ``skipped`` of them already in the output (resume)."""

    def update(self, row: dict[str, Any]) -> None:
        """One file evaluated."""

    def close(self) -> None:
        """The run ended (also after an exception)."""


# --- the file list ----------------------------------------------------------------------------------


def find_files(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """``(path, key)`` of every ``.npz`` under the sources, sorted, duplicates dropped.

    A source is a directory (searched recursively), a glob pattern (``**`` allowed) or a file. The
    key, which sharding hashes, is the path relative to the directory (or to the pattern's fixed
    leading directories), so it does not depend on where the dataset is mounted.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    found: dict[str, str] = {}
    for src in map(os.fspath, sources):
        if os.path.isdir(src):
            base, matches = src, glob.glob(os.path.join(glob.escape(src), "**", "*.npz"), recursive=True)
        elif glob.has_magic(src):
            parts = src.split(os.sep)
            fixed = next(i for i, p in enumerate(parts) if glob.has_magic(p))
            base, matches = os.sep.join(parts[:fixed]) or os.curdir, glob.glob(src, recursive=True)
        elif os.path.isfile(src):
            base, matches = os.path.dirname(src) or os.curdir, [src]
        else:
            raise FileNotFoundError(f"no such file or directory: {src}")
        hits = sorted(m for m in matches if os.path.isfile(m))
        if not hits:
            raise FileNotFoundError(f"no .npz files in {src}" if os.path.isdir(src) else f"no files match {src}")
        for m in hits:
            found.setdefault(m, os.path.relpath(m, base).replace(os.sep, "/"))
    return sorted(found.items(), key=lambda item: item[1])


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: shard 2 of 4, 1-based."""
    i, sep, n = text.partition("/")
    try:
        index, count = int(i), int(n)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise ValueError(f"shard takes I/N with 1 <= I <= N (e.g. 1/4); got {text!r}")
    return index, count


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether the file with this key belongs to ``shard = (i, n)`` (sha1 of the key, mod n)."""
    if shard is None:
        return True
    index, count = shard
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") % count == index - 1


# --- one file ---------------------------------------------------------------------------------------


def _jsonable(v: np.ndarray) -> Any:
    return float(v) if v.ndim == 0 else v.tolist()


def _non_finite(what: str, x: np.ndarray) -> str | None:
    if x.dtype.kind != "f":
        return None
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    return f"{what} has {bad} non-finite value{'s' if bad > 1 else ''} (NaN or inf)" if bad else None


def load_arrays(path: str, run: OnnxLoss, mapping: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """The graph's inputs read from one ``.npz``; ValueError with a one-line reason otherwise."""
    mapping = mapping or {}
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError("a .npy array, not an .npz archive")
            keys = {n: mapping.get(n, n) for n in run.input_names}
            missing = [f"{n}" + (f" (as {k})" if k != n else "") for n, k in keys.items() if k not in data.files]
            if missing:
                have = ", ".join(data.files) or "none"
                raise KeyError(f"missing input(s) {', '.join(missing)}; the file has arrays {have}")
            arrays = {}
            for n, k in keys.items():
                try:
                    arrays[n] = data[k]
                except Exception as e:  # zipfile CRC, zlib, numpy header errors
                    raise ValueError(f"not a readable .npz file: array {k!r} is damaged ({_why(e)})") from None
            return arrays
    except (KeyError, ValueError) as e:
        if str(e.args[0]).startswith(("missing input", "not a readable", "a .npy")):
            raise ValueError(e.args[0]) from None
        raise ValueError(f"not a readable .npz file: {_why(e)}") from None
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except Exception as e:  # zipfile, zlib, numpy format errors: all mean an unreadable file
        raise ValueError(f"not a readable .npz file: {_why(e)}") from None


def _why(e: BaseException) -> str:
    """One line for a damaged-file exception (numpy's header parser raises bare tokenizer errors)."""
    text = error_line(e)
    return f"{type(e).__name__}: {text}" if text.startswith("(") or text == type(e).__name__ else text


def evaluate_file(
    run: OnnxLoss,
    path: str,
    *,
    mapping: Mapping[str, str] | None = None,
    outputs: Sequence[str] | None = None,
    check_finite: bool = False,
) -> dict[str, Any]:
    """Evaluate one ``.npz``: a row (never raises for a bad file; the reason goes into ``error``)."""
    t0 = time.perf_counter()
    row: dict[str, Any] = {"file": path, "outputs": None, "seconds": 0.0, "error": None}
    try:
        arrays = load_arrays(path, run, mapping)
        feeds = run.feeds(**arrays)
        if check_finite:
            problem = next((p for n, x in feeds.items() if (p := _non_finite(f"input {n}", x))), None)
            if problem:
                raise ValueError(problem)
        names = list(outputs) if outputs else run.outputs
        values = dict(zip(names, run.session.run(names, feeds)))
        if check_finite:
            problem = next((p for n, x in values.items() if (p := _non_finite(f"output {n}", x))), None)
            if problem:
                raise ValueError(problem)
        row["outputs"] = {k: _jsonable(v) for k, v in values.items()}
    except Exception as e:  # a bad file must not stop the run: its row says why
        row["error"] = error_line(e)
    row["seconds"] = round(time.perf_counter() - t0, 6)
    return row


def evaluate_chunk(run: OnnxLoss, paths: Sequence[str], *, cwd: str | None = None, **options: Any) -> list[dict[str, Any]]:
    """Rows of several files (picklable: what a Dask task runs); relative paths are read under ``cwd``
    but keep their name in the rows."""
    rows = []
    for path in paths:
        row = evaluate_file(run, os.path.join(cwd, path) if cwd else path, **options)
        rows.append({**row, "file": path})
    return rows


def _failed_row(path: str, error: str) -> dict[str, Any]:
    return {"file": path, "outputs": None, "seconds": 0.0, "error": error}


# --- the results file -------------------------------------------------------------------------------


def results_format(path: str | os.PathLike) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"results file must end in {', '.join(FORMATS)}; got {os.fspath(path)!r}")
    return FORMATS[ext]


def _cut_partial_line(path: str) -> None:
    """Drop a last line without its newline (a row cut short when the run was killed)."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``.jsonl`` or ``.csv`` results file (an unfinished last line is left out)."""
    path = os.fspath(path)
    fmt = results_format(path)
    with open(path, newline="" if fmt == "csv" else None) as f:
        text = f.read()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = []
    for rec in csv.DictReader(text.splitlines()):
        outs = {k: json.loads(v) for k, v in rec.items() if k not in _CSV_FIXED and v not in ("", None)}
        rows.append({"file": rec["file"], "outputs": None if rec["error"] else outs,
                     "seconds": float(rec["seconds"] or 0), "error": rec["error"] or None})
    return rows


class _Writer:
    """Appends rows to a results file, flushed row by row."""

    def __init__(self, path: str, outputs: Sequence[str], append: bool) -> None:
        self.fmt = results_format(path)
        if append and os.path.exists(path):
            _cut_partial_line(path)
        fresh = not (append and os.path.exists(path) and os.path.getsize(path) > 0)
        self.columns = [*_CSV_FIXED, *outputs]
        if self.fmt == "csv" and not fresh:
            with open(path, newline="") as f:
                header = next(csv.reader(f), [])
            if header != self.columns:
                raise ValueError(f"{path} has columns {', '.join(header)}; this graph writes {', '.join(self.columns)}")
        self.f = open(path, "w" if fresh else "a", newline="" if self.fmt == "csv" else None)
        self.csv = csv.writer(self.f) if self.fmt == "csv" else None
        if self.csv is not None and fresh:
            self.csv.writerow(self.columns)
            self.f.flush()

    def write(self, row: Mapping[str, Any]) -> None:
        if self.csv is None:
            self.f.write(json.dumps(row) + "\n")
        else:
            outs = row["outputs"] or {}
            cells = [json.dumps(outs[k]) if k in outs else "" for k in self.columns[len(_CSV_FIXED):]]
            self.csv.writerow([row["file"], row["seconds"], row["error"] or "", *cells])
        self.f.flush()

    def close(self) -> None:
        self.f.close()


# --- the run ----------------------------------------------------------------------------------------


def evaluate_files(
    model: Any,
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike | None = None,
    providers: str | Sequence[str] = "auto",
    shard: tuple[int, int] | str | None = None,
    resume: bool = False,
    check_finite: bool = False,
    mapping: Mapping[str, str] | None = None,
    outputs: Sequence[str] | None = None,
    progress: Progress | None = None,
    client: Any = None,
    graph_path: bool = False,
) -> list[dict[str, Any]]:
    """Evaluate a graph on every ``.npz`` of ``inputs`` (directories, globs, files) with one session.

    Args:
        model: an ``.onnx`` path (or bytes / ModelProto, or an :class:`OnnxLoss`).
        inputs: directory (recursive), glob pattern, file, or a list of them.
        out: results file, ``.jsonl`` or ``.csv``; rows are appended and flushed one by one.
        providers: as for :class:`OnnxLoss` (``"auto"``, ``"cpu"``, ``"cuda"``).
        shard: ``(i, n)`` or ``"i/n"``: only the files of shard ``i`` of ``n`` (1-based).
        resume: read ``out`` back and skip the files already in it (their rows are returned as read).
        check_finite: a NaN/inf in a float input or an output makes the row an error.
        mapping: ``{graph_input: array_name}`` for files whose arrays are named otherwise.
        outputs: output names to compute (default: all the graph's outputs).
        progress: a :class:`Progress` told about the start, each row and the end.
        client: a ``distributed.Client``: evaluate in chunks on its Dask workers (rows arrive as chunks
            finish; see :mod:`lossgraph.export.distributed`).
        graph_path: with ``client``, workers open the model's path (shared storage) instead of
            receiving the graph's bytes.

    Returns:
        One row per file of the shard, in file order (failed files included, with ``error`` set).

    Raises:
        ValueError / FileNotFoundError for a bad setup (no files, unknown mapping or output names,
        results file of another format); OnnxLossError for a graph that does not load.
    """
    run = model if isinstance(model, OnnxLoss) else OnnxLoss(model, providers=providers)
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(run.input_names))
    if unknown:
        raise ValueError(f"mapping names {', '.join(unknown)}, not inputs of the graph ({', '.join(run.input_names)})")
    names = list(outputs) if outputs else run.outputs
    bad = [n for n in names if n not in run.outputs]
    if bad:
        raise ValueError(f"unknown output(s) {', '.join(bad)}; the graph has {', '.join(run.outputs)}")
    if isinstance(shard, str):
        shard = parse_shard(shard)
    elif shard is not None:
        shard = parse_shard(f"{shard[0]}/{shard[1]}")
    files = [path for path, key in find_files(inputs) if in_shard(key, shard)]

    done: dict[str, dict[str, Any]] = {}
    if out is not None:
        out = os.fspath(out)
        results_format(out)
        if resume and os.path.exists(out):
            done = {r["file"]: r for r in read_results(out)}
    todo = [p for p in files if p not in done]
    progress = progress or Progress()
    writer = _Writer(out, names, append=resume) if out is not None else None
    new: dict[str, dict[str, Any]] = {}
    try:
        progress.start(len(files), len(files) - len(todo))
        options = {"mapping": mapping, "outputs": names, "check_finite": check_finite}
        if client is None:
            rows: Iterable[dict[str, Any]] = (evaluate_file(run, path, **options) for path in todo)
        else:
            from .distributed import dask_rows, graph_for

            rows = dask_rows(client, graph_for(model, run, graph_path), todo, evaluate_chunk, options, _failed_row)
        for row in rows:
            path = row["file"]
            if writer is not None:
                writer.write(row)
            new[path] = row
            progress.update(row)
    finally:
        if writer is not None:
            writer.close()
        progress.close()
    return [new[p] if p in new else done[p] for p in files]


def summarize(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``count``, ``ok``, ``failed``, ``mean`` (per output, over the files that ran; array outputs
    contribute their mean), ``failures`` (``[{file, error}]``) and total ``seconds``."""
    rows = list(rows)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for r in rows:
        for k, v in (r["outputs"] or {}).items():
            sums[k] = sums.get(k, 0.0) + float(np.mean(v))
            counts[k] = counts.get(k, 0) + 1
    failures = [{"file": r["file"], "error": r["error"]} for r in rows if r["error"]]
    return {
        "count": len(rows),
        "ok": len(rows) - len(failures),
        "failed": len(failures),
        "mean": {k: sums[k] / counts[k] for k in sums},
        "failures": failures,
        "seconds": sum(float(r["seconds"]) for r in rows),
    }
