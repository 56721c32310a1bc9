"""The results file of an evaluation: one writer (an exclusive lock), rows appended and flushed one by
one, resume, and reading rows back with problems named by file and line.

Torch-free. Formats by extension: ``.jsonl`` (also ``.json``, ``.ndjson``) and ``.csv``.

- JSON lines: a first line ``{"lossgraph": {...}}`` (the graph's loss, parameters, outputs and their
  aggregation rules: what ``lossgraph summarize`` needs), then one row per line. Non-finite numbers are
  written as ``null`` (strict JSON) and the row lists the outputs that held them in ``nonfinite``.
- CSV: columns ``key, file, seconds, error, nonfinite, pixels`` and one per output, holding JSON
  (a number or nested lists); an output column whose rule is not ``mean`` is named ``name[rule]``
  (``confusion[confusion]``), so the rules travel with the file.

A run killed while writing leaves at most one partial last line: resume drops it. Any other line that
does not parse is a :class:`ResultsError` naming the file and line.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from lossgraph._checks import InputError

#: extension -> format
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
CSV_FIXED = ["key", "file", "seconds", "error", "nonfinite", "pixels"]
HEADER_KEY = "lossgraph"


class ResultsError(Exception):
    """A results file that cannot be used: locked by another run, unreadable, damaged, not writable.
    The CLI prints it as one ``lossgraph: error:`` line and exits with status 2."""


def results_format(path: str | os.PathLike) -> str:
    """``"jsonl"`` or ``"csv"`` from the results file's extension; InputError for another."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise InputError(f"results file must end in {', '.join(FORMATS)}; got {os.fspath(path)!r}")
    return FORMATS[ext]


def os_problem(path: str, e: OSError) -> ResultsError:
    """``cannot write r.jsonl: No space left on device`` from an OSError."""
    why = e.strerror or errno.errorcode.get(e.errno or 0, type(e).__name__)
    return ResultsError(f"cannot write {path}: {why}")


# --- reading ----------------------------------------------------------------------------------------


def _complete(path: str, data: bytes) -> str:
    """The text of the complete lines (a last line without its newline is a row cut short)."""
    data = data[: data.rfind(b"\n") + 1]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ResultsError(f"{path} line {line}: not UTF-8 text (a damaged results file)") from None


def column_rule(column: str) -> tuple[str, str]:
    """CSV column ``"confusion[confusion]"`` -> ``("confusion", "confusion")``; plain names are ``mean``."""
    m = re.fullmatch(r"(.*)\[(\w+)\]", column)
    return (m.group(1), m.group(2)) if m else (column, "mean")


def read_results_file(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(header, rows)`` of a results file; the header is ``{}`` when the file has none (older
    files, CSV: the rules come from the column names). An unfinished last line is left out."""
    path = os.fspath(path)
    fmt = results_format(path)
    try:
        with open(path, "rb") as f:
            text = _complete(path, f.read())
    except FileNotFoundError:
        raise ResultsError(f"no such results file: {path}") from None
    except OSError as e:
        raise ResultsError(f"cannot read {path}: {e.strerror}") from None
    return parse_jsonl(path, text) if fmt == "jsonl" else parse_csv(path, text)


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``.jsonl`` or ``.csv`` results file (an unfinished last line is left out)."""
    return read_results_file(path)[1]


def _row_problem(row: Any) -> str | None:
    if not isinstance(row, dict) or not {"file", "outputs", "error"} <= set(row):
        return "not a results row"
    return None


def parse_jsonl(path: str, text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(header, rows)`` of a ``.jsonl`` results file; a damaged line is named by file and line number."""
    header: dict[str, Any] = {}
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ResultsError(f"{path} line {n}: not a JSON row ({e.msg} at column {e.colno})") from None
        if n == 1 and isinstance(row, dict) and set(row) == {HEADER_KEY}:
            header = row[HEADER_KEY]
            continue
        problem = _row_problem(row)
        if problem:
            raise ResultsError(f"{path} line {n}: {problem}")
        row.setdefault("key", row["file"])
        rows.append(row)
    return header, rows


def parse_csv(path: str, text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(header, rows)`` of a ``.csv`` results file (one column per output)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    columns = next(reader, None)
    if columns is None:
        return {}, []
    if columns[: len(CSV_FIXED)] != CSV_FIXED:
        raise ResultsError(f"{path} line 1: not a lossgraph results header (want {', '.join(CSV_FIXED)}, ...)")
    outs = [column_rule(c) for c in columns[len(CSV_FIXED):]]
    rows = []
    for cells in reader:
        n = reader.line_num
        if len(cells) != len(columns):
            raise ResultsError(f"{path} line {n}: {len(cells)} cells, the header has {len(columns)}")
        key, file, seconds, error, nonfinite, pixels = cells[: len(CSV_FIXED)]
        try:
            values = {name: json.loads(v) for (name, _), v in zip(outs, cells[len(CSV_FIXED):]) if v != ""}
            row = {"key": key, "file": file, "outputs": None if error else values, "seconds": float(seconds or 0),
                   "error": error or None, "nonfinite": json.loads(nonfinite or "[]"),
                   "pixels": int(pixels) if pixels else None}
        except ValueError as e:
            raise ResultsError(f"{path} line {n}: a cell does not parse ({str(e).splitlines()[0]})") from None
        rows.append(row)
    return {"aggregation": dict(outs)}, rows


# --- writing ----------------------------------------------------------------------------------------


class ResultsWriter:
    """The single writer of a results file: an exclusive ``flock`` held from open to close.

    Opening takes the lock first (a second writer gets :class:`ResultsError` at once and changes
    nothing), then, with ``resume``, reads the rows already there (``.done``, by key; a cut last line is
    dropped), else empties the file; then writes the header. Rows are appended and flushed one by one.

    Args:
        path: ``.jsonl`` / ``.csv``.
        outputs: output names, in column order.
        header: the run's description (loss, params, ``aggregation`` = ``{output: rule}``).
        resume: keep the rows already in the file.
    """

    def __init__(self, path: str | os.PathLike, outputs: Sequence[str], header: Mapping[str, Any], resume: bool) -> None:
        import fcntl

        self.path = os.fspath(path)
        self.fmt = results_format(self.path)
        rules = dict(header.get("aggregation", {}))
        self.outputs = list(outputs)
        self.columns = [*CSV_FIXED, *(o if rules.get(o, "mean") == "mean" else f"{o}[{rules[o]}]" for o in outputs)]
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise os_problem(self.path, e) from None
        self.f = os.fdopen(fd, "r+b", buffering=0)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ResultsError(f"{self.path} is being written by another lossgraph run (locked); "
                                   f"wait for it to finish or write to another file") from None
            self.done: dict[str, dict[str, Any]] = {}
            regular = os.path.isfile(self.path)
            size = os.fstat(fd).st_size if regular else 0
            if resume and size:
                data = self.f.read()
                text = _complete(self.path, data)
                keep = data.rfind(b"\n") + 1
                old_header, rows = (parse_jsonl if self.fmt == "jsonl" else parse_csv)(self.path, text)
                self._check_compatible(text, old_header, header)
                self.done = {r["key"]: r for r in rows}
                if keep < len(data):
                    os.ftruncate(fd, keep)
                self.f.seek(keep)
                size = keep
            elif regular and size:
                os.ftruncate(fd, 0)
                size = 0
            if not size:
                self._put(self._header_line(header))
        except BaseException:
            self.f.close()
            raise

    def _header_line(self, header: Mapping[str, Any]) -> str:
        if self.fmt == "jsonl":
            return json.dumps({HEADER_KEY: dict(header)}, allow_nan=False) + "\n"
        return _csv_line(self.columns)

    def _check_compatible(self, text: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        if self.fmt == "csv":
            have = next(csv.reader(io.StringIO(text, newline="")), [])
            if have != self.columns:
                raise ResultsError(f"{self.path} has columns {', '.join(have)}; this graph writes {', '.join(self.columns)}")
        elif old and old.get("outputs") is not None and list(old["outputs"]) != list(new.get("outputs", [])):
            raise ResultsError(f"{self.path} holds outputs {', '.join(old['outputs'])}; this run writes "
                               f"{', '.join(new.get('outputs', []))}")

    def _put(self, text: str) -> None:
        try:
            self.f.write(text.encode("utf-8"))
        except OSError as e:
            raise os_problem(self.path, e) from None

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (keys ``key, file, outputs, seconds, error, nonfinite, pixels``)."""
        if self.fmt == "jsonl":
            self._put(json.dumps(row, allow_nan=False) + "\n")
            return
        outs = row["outputs"] or {}
        cells = [json.dumps(outs[k], allow_nan=False) if k in outs else "" for k in self.outputs]
        pixels = "" if row.get("pixels") is None else str(row["pixels"])
        self._put(_csv_line([row["key"], row["file"], row["seconds"], row["error"] or "",
                             json.dumps(row.get("nonfinite") or []), pixels, *cells]))

    def close(self) -> None:
        self.f.close()  # closing the descriptor releases the lock

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _csv_line(cells: Sequence[Any]) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerow(cells)
    return buf.getvalue()
