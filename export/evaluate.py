"""Evaluate an exported graph over saved inputs: one session, one row per sample, one writer.

Torch-free. Three parts, so that other executors (a process pool, Dask) can compute the rows:

1. :func:`~lossgraph.export.samples.find_samples` lists the samples (a key and the files of its inputs);
2. :func:`evaluate_chunk` turns a list of samples into rows with one :class:`OnnxLoss` session — a
   pure top-level function of picklable arguments (the model as a path or bytes; sessions are cached
   per process);
3. the single writer (:class:`~lossgraph.export.results.ResultsWriter`: lock, resume, rows appended
   and flushed one by one) and :func:`~lossgraph.export.summary.summarize` stay with the caller.

:func:`evaluate_files` wires them together in this process.

    >>> rows = evaluate_files("c.onnx", templates={"logits": "preds/{stem}.npy",
    ...                                            "labels": "gt/{stem}.png"}, out="r.jsonl")  # doctest: +SKIP

A row: ``{"key", "file", "outputs": {name: number or nested lists}, "seconds", "error", "nonfinite",
"pixels"}``. A failed row (unreadable or missing file, inputs the graph refuses) has ``"outputs":
None`` and the reason in ``"error"``. Non-finite output values are ``None`` and the row lists those
outputs in ``"nonfinite"`` (with ``check_finite`` the row fails instead). ``"pixels"`` is ``B·H·W``
of the sample when the graph's inputs have dims named ``H`` and ``W``.

Inputs read from template files are adapted to the graph before validation: an array one rank short
gets a leading batch dimension of 1 (a ``(H, W)`` mask for ``(B, H, W)`` labels), and integer or
float16 arrays for a float input are cast to the input's type (a uint8 score map becomes float32);
integer labels of any width go to the graph's integer type unchanged in value.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lossgraph._checks import InputError

from .results import ResultsWriter, read_results, results_format
from .runner import OnnxLoss, error_line
from .samples import ALL_INPUTS, Sample, find_samples, parse_shard, read_sample
from .summary import strict_json, summarize

__all__ = ["EvalOptions", "Progress", "evaluate_chunk", "evaluate_files", "evaluate_sample", "read_results",
           "run_header", "summarize"]

_ORT_FLOAT = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class Progress:
    """Progress callbacks of :func:`evaluate_files` (this base class does nothing)."""

    def start(self, total: int, skipped: int) -> None:
        """``total`` samples in this shard, ``skipped`` of them already in the output (resume)."""

    def update(self, row: dict[str, Any]) -> None:
        """One sample evaluated."""

    def close(self) -> None:
        """The run ended (also after an exception)."""


@dataclass(frozen=True)
class EvalOptions:
    """How each sample is evaluated (picklable).

    Attributes:
        mapping: ``{graph_input: array_name}`` for ``.npz`` archives whose arrays are named otherwise.
        outputs: output names to compute (``None``: all the graph's outputs).
        check_finite: a NaN/inf in a float input or an output makes the row an error.
    """

    mapping: Mapping[str, str] = field(default_factory=dict)
    outputs: tuple[str, ...] | None = None
    check_finite: bool = False


# --- one sample -------------------------------------------------------------------------------------


def _non_finite(what: str, x: np.ndarray) -> str | None:
    if x.dtype.kind != "f":
        return None
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    return f"{what} has {bad} non-finite value{'s' if bad > 1 else ''} (NaN or inf)" if bad else None


def _jsonable(v: np.ndarray) -> Any:
    """A scalar as a number, an array as nested lists; NaN/inf become ``None`` (strict JSON)."""
    value = v.item() if v.ndim == 0 else v.tolist()
    return strict_json(value) if v.dtype.kind == "f" and not np.isfinite(v).all() else value


def _adapt(run: OnnxLoss, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Template inputs fitted to the graph: a batch dimension where one rank short, integer and
    float16 arrays for a float input cast to its type."""
    out = dict(arrays)
    for spec in run.inputs:
        x = out.get(spec.name)
        if x is None:
            continue
        if x.ndim == len(spec.shape) - 1:
            x = x[None]
        want = _ORT_FLOAT.get(spec.type)
        if want is not None and (x.dtype.kind in "iub" or x.dtype == np.float16) and x.dtype != want:
            x = x.astype(want)
        out[spec.name] = x
    return out


def _pixels(run: OnnxLoss, feeds: Mapping[str, np.ndarray]) -> int | None:
    """``B·H·W`` from the first input whose dims are named ``H`` and ``W`` (``B`` when named)."""
    for spec in run.inputs:
        names = list(spec.shape)
        if "H" in names and "W" in names:
            shape = feeds[spec.name].shape
            return int(math.prod(shape[names.index(d)] for d in ("B", "H", "W") if d in names))
    return None


def evaluate_sample(run: OnnxLoss, sample: Sample, options: EvalOptions = EvalOptions()) -> dict[str, Any]:
    """Evaluate one sample: a row (never raises for a bad sample; the reason goes into ``error``)."""
    t0 = time.perf_counter()
    row: dict[str, Any] = {"key": sample.key, "file": sample.file, "outputs": None, "seconds": 0.0, "error": None,
                           "nonfinite": [], "pixels": None}
    try:
        arrays = read_sample(sample, run.input_names, options.mapping)
        if sample.sources[0].input != ALL_INPUTS:
            arrays = _adapt(run, arrays)
        feeds = run.feeds(**arrays)
        if options.check_finite:
            problem = next((p for n, x in feeds.items() if (p := _non_finite(f"input {n}", x))), None)
            if problem:
                raise InputError(problem)
        names = list(options.outputs) if options.outputs else run.outputs
        values = dict(zip(names, run.session.run(names, feeds)))
        bad = {n: p for n, x in values.items() if (p := _non_finite(f"output {n}", x))}
        if bad and options.check_finite:
            raise InputError(next(iter(bad.values())))
        row["outputs"] = {k: _jsonable(v) for k, v in values.items()}
        row["nonfinite"] = list(bad)
        row["pixels"] = _pixels(run, feeds)
    except Exception as e:  # a bad sample must not stop the run: its row says why
        row["error"] = error_line(e)
    row["seconds"] = round(time.perf_counter() - t0, 6)
    return row


# --- a chunk of samples (the unit an executor ships) ------------------------------------------------


@functools.lru_cache(maxsize=4)
def _cached_session(model: str | bytes, providers: str | tuple[str, ...], stamp: tuple[int, int] | None) -> OnnxLoss:
    return OnnxLoss(model, providers=providers if isinstance(providers, str) else list(providers))


def session(model: Any, providers: str | Sequence[str] = "auto", cached: bool = True) -> OnnxLoss:
    """An :class:`OnnxLoss` for ``model`` (path, bytes, ModelProto or OnnxLoss). With ``cached``, one
    per process for a given file (path, size and modification time) or bytes, so the chunks a worker
    process runs one after another share it."""
    if isinstance(model, OnnxLoss):
        return model
    key = providers if isinstance(providers, str) else tuple(providers)
    if cached and isinstance(model, (str, os.PathLike)) and os.path.isfile(model):
        st = os.stat(model)
        return _cached_session(os.path.abspath(os.fspath(model)), key, (st.st_size, st.st_mtime_ns))
    if cached and isinstance(model, (bytes, bytearray)):
        return _cached_session(bytes(model), key, None)
    return OnnxLoss(model, providers=providers)


def evaluate_chunk(
    model: Any, samples: Sequence[Sample], options: EvalOptions = EvalOptions(), providers: str | Sequence[str] = "auto"
) -> list[dict[str, Any]]:
    """Rows of ``samples`` evaluated with one session (pure: reads the sample files, writes nothing).

    ``model`` is a path or serialized bytes when the call is shipped to another process (an
    :class:`OnnxLoss` in this one); each process keeps its session between calls.
    """
    run = session(model, providers)
    return [evaluate_sample(run, s, options) for s in samples]


# --- the run ----------------------------------------------------------------------------------------


def run_header(run: OnnxLoss, outputs: Sequence[str]) -> dict[str, Any]:
    """The results-file header of a run: model, loss, params, outputs and their aggregation rules."""
    rules = json.loads(run.metadata.get("lossgraph.aggregation", "{}"))
    return {
        "model": os.path.basename(run.source),
        "loss": run.loss_name,
        "params": run.params,
        "outputs": list(outputs),
        "aggregation": {o: rules.get(o, "mean") for o in outputs},
    }


def check_options(run: OnnxLoss, options: EvalOptions) -> list[str]:
    """Validate ``options`` against the graph; the output names to compute."""
    unknown = sorted(set(options.mapping) - set(run.input_names))
    if unknown:
        raise InputError(f"mapping names {', '.join(unknown)}, not inputs of the graph ({', '.join(run.input_names)})")
    names = list(options.outputs) if options.outputs else run.outputs
    bad = [n for n in names if n not in run.outputs]
    if bad:
        raise InputError(f"unknown output(s) {', '.join(bad)}; the graph has {', '.join(run.outputs)}")
    return names


def write_rows(
    rows: Iterable[dict[str, Any]], writer: ResultsWriter | None, progress: Progress
) -> Iterator[dict[str, Any]]:
    """Pass rows through the writer and the progress, as they come."""
    for row in rows:
        if writer is not None:
            writer.write(row)
        progress.update(row)
        yield row


def evaluate_files(
    model: Any,
    inputs: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    templates: Mapping[str, str] | None = None,
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
    """Evaluate a graph on every sample with one session in this process (or on a Dask cluster).

    Args:
        model: an ``.onnx`` path (or bytes / ModelProto, or an :class:`OnnxLoss`).
        inputs: ``.npz`` archives holding every input: directory (recursive), glob, file, or a list.
        templates: instead of ``inputs``, ``{graph_input: "dir/{stem}.ext"}`` (see ``samples``).
        out: results file, ``.jsonl`` or ``.csv``; locked for the run; rows appended and flushed one by one.
        providers: as for :class:`OnnxLoss` (``"auto"``, ``"cpu"``, ``"cuda"``).
        shard: ``(i, n)`` or ``"i/n"``: only the samples of shard ``i`` of ``n`` (1-based).
        resume: keep the rows already in ``out`` (by key) and evaluate the rest.
        check_finite: a NaN/inf in a float input or an output makes the row an error.
        mapping: ``{graph_input: array_name}`` for archives whose arrays are named otherwise.
        outputs: output names to compute (default: all the graph's outputs).
        progress: a :class:`Progress` told about the start, each row and the end.
        client: a ``distributed.Client``: evaluate chunks of samples on its workers; rows arrive as
            chunks finish and this process alone writes them (see :mod:`lossgraph.export.distributed`).
        graph_path: with ``client``, workers open the model's path (which they must all see) instead
            of receiving the graph's bytes.

    Returns:
        One row per sample of the shard, in key order (failed samples included, with ``error`` set).

    Raises:
        InputError / FileNotFoundError for a bad setup (no files, unknown mapping or output names);
        ResultsError for a results file that is locked, damaged or not writable; OnnxLossError for a
        graph that does not load.
    """
    run = session(model, providers, cached=False)
    options = EvalOptions(dict(mapping or {}), tuple(outputs) if outputs else None, check_finite)
    names = check_options(run, options)
    if isinstance(shard, str):
        shard = parse_shard(shard)
    elif shard is not None:
        shard = parse_shard(f"{shard[0]}/{shard[1]}")
    if out is not None:
        results_format(out)
    samples = find_samples(inputs, templates=templates, shard=shard)
    progress = progress or Progress()
    writer = ResultsWriter(out, names, run_header(run, names), resume) if out is not None else None
    done = writer.done if writer is not None else {}
    todo = [s for s in samples if s.key not in done]
    new: dict[str, dict[str, Any]] = {}
    try:
        progress.start(len(samples), len(samples) - len(todo))
        if client is None:
            computed: Iterable[dict[str, Any]] = (evaluate_sample(run, s, options) for s in todo)
        else:
            from .distributed import dask_rows

            computed = dask_rows(client, model, run, todo, options, by_path=graph_path)
        for row in write_rows(computed, writer, progress):
            new[row["key"]] = row
    finally:
        if writer is not None:
            writer.close()
        progress.close()
    return [new[s.key] if s.key in new else done[s.key] for s in samples]
