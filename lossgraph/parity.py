"""The parity engine behind ``lossgraph check``: torch eager vs the ONNX graph in onnxruntime vs the float64 reference.

Used by the tests (``tests/test_parity.py``) and by ``lossgraph check``. For each catalog case the
loss is exported once (value graph, and value+gradient graph), at the case's export dims, and run at
each of its run dims (other shapes: odd sizes, one pixel, larger); every run compares

* torch (float32) with the reference (float64): value and gradient,
* the ONNX value graph with torch: value,
* the ONNX gradient graph with the reference: value and gradient,

with the spec's tolerances (``|a - b| <= atol + rtol |b|``; gradients with ``atol = grad_rtol ·
max|grad|``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lossgraph.export.parallel import export_graph, worker_pool

from . import catalog
from .catalog import Case, Spec


@dataclass
class Row:
    """One parity check of one loss, parameter set and run shape."""

    name: str
    params: dict[str, Any]
    dims: dict[str, int]
    export_dims: dict[str, int] | None
    errors: dict[str, float] = field(default_factory=dict)  # max abs error per comparison
    ok: bool = True
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    runtime: str = "onnxruntime"  #: where the graphs ran (:data:`lossgraph.export.runtimes.RUNTIMES`)

    def record(self, what: str, actual: Any, expected: Any, rtol: float, atol: float) -> None:
        err, good = compare(actual, expected, rtol, atol)
        self.errors[what] = max(err, self.errors.get(what, 0.0))
        if not good:
            self.ok = False
            self.failures.append(f"{what}: max abs error {err:.3g} > atol {atol:.3g} + rtol {rtol:.3g}·|expected|")


def _leaves(x: Any) -> dict[str, np.ndarray]:
    if isinstance(x, Mapping):
        return {k: np.asarray(v, dtype=np.float64) for k, v in x.items()}
    return {"": np.asarray(x, dtype=np.float64)}


def compare(actual: Any, expected: Any, rtol: float, atol: float) -> tuple[float, bool]:
    """Max abs error and whether ``|a - e| <= atol + rtol |e|`` everywhere (NaN/inf must agree)."""
    a, e = _leaves(actual), _leaves(expected)
    if a.keys() != e.keys():
        return float("inf"), False
    worst, good = 0.0, True
    for k in e:
        x, y = a[k], e[k]
        if x.shape != y.shape:
            return float("inf"), False
        same_nonfinite = (~np.isfinite(x) & (x == y)) | (np.isnan(x) & np.isnan(y))
        diff = np.where(same_nonfinite, 0.0, np.abs(x - y))
        diff = np.where(np.isnan(diff), np.inf, diff)
        if diff.size:
            worst = max(worst, float(diff.max()))
            good = good and bool(np.all(diff <= atol + rtol * np.abs(np.where(np.isfinite(y), y, 0.0))))
    return worst, good


def grad_tolerance(spec: Spec, grads: Mapping[str, np.ndarray]) -> float:
    """Absolute gradient tolerance: ``grad_rtol`` of the largest gradient entry (DESIGN.md), plus
    1e-7, float32's resolution of the unit-scale probabilities the gradients are made of: with a
    saturated softmax (logits x30 or x1e4) every gradient entry is below 1e-5 and float32 rounding
    leaves up to 8e-9 (measured: Lovász-Softmax from logits, torch and onnxruntime, in the fuzz
    test), which ``grad_rtol`` of so small a peak would call a failure."""
    peak = max((float(np.abs(g).max()) for g in grads.values() if g.size), default=0.0)
    return spec.grad_rtol * peak + 1e-7


# --- evaluation in each framework ------------------------------------------------------------------


def torch_eval(
    spec: Spec, module: Any, inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], grad: bool = True,
    device: str = "cpu",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run the torch module eagerly on ``device``: ``({output: value}, {input: grad})`` (grads of ``spec.grad_of``)."""
    import torch

    names = spec.output_names(params)
    module = module.to(device)
    ts = {k: torch.from_numpy(np.array(v)).to(device) for k, v in inputs.items()}
    gnames = spec.grad_inputs(params) if grad else ()
    for k in gnames:
        ts[k].requires_grad_(True)
    out = module(*ts.values())
    outs = dict(out) if isinstance(out, Mapping) else {names[0]: out}
    grads: dict[str, np.ndarray] = {}
    if gnames:
        target = sum(o.sum() for o in outs.values()) if spec.grad_of is None else outs[spec.grad_of].sum()
        gs = torch.autograd.grad(target, [ts[k] for k in gnames], allow_unused=True)
        grads = {k: (np.zeros(inputs[k].shape) if g is None else g.detach().double().cpu().numpy())
                 for k, g in zip(gnames, gs)}
    return {k: v.detach().double().cpu().numpy() for k, v in outs.items()}, grads


def reference_eval(
    spec: Spec, inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], grad: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run the reference in float64: ``({output: value}, {input: grad})``."""
    names = spec.output_names(params)
    f64 = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in inputs.items()}
    if grad and spec.grad_inputs(params):
        value, grads = spec.ref(f64, params, grad=True)
    else:
        value, grads = spec.ref(f64, params), {}
    outs = dict(value) if isinstance(value, Mapping) else {names[0]: value}
    return {k: np.asarray(v, dtype=np.float64) for k, v in outs.items()}, grads


# --- export cache -----------------------------------------------------------------------------------


def case_key(spec: Spec, params: Mapping[str, Any], export_dims: Mapping[str, int], with_grad: bool) -> str:
    """A short stable file key for (loss, params, export dims, with_grad): the graph cache's name."""
    blob = json.dumps([spec.name, dict(params), dict(export_dims), with_grad], sort_keys=True)
    import hashlib

    return f"{spec.name}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}{'-grad' if with_grad else ''}"


class GraphCache:
    """Exports each (loss, params, export dims, with_grad) once per process and reuses the file.

    :meth:`export_many` exports a list of them in worker processes ahead of time; :meth:`get` then
    waits for the file it needs. With ``reuse=True`` a graph already in ``directory`` under its key is
    taken as it is (graphs exported beforehand, e.g. carried to a machine whose torch cannot export them).
    """

    def __init__(self, directory: str | os.PathLike | None = None, reuse: bool = False) -> None:
        self.reuse = reuse
        self.directory = os.fspath(directory) if directory else tempfile.mkdtemp(prefix="lossgraph-")
        os.makedirs(self.directory, exist_ok=True)
        self.paths: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self._pending: dict[str, Any] = {}  # key -> Future of an export in a worker process
        self._pool: Any = None

    def _key_path(self, spec: Spec, params: Mapping[str, Any], export_dims: Mapping[str, int], with_grad: bool) -> tuple[str, str, bool]:
        with_grad = with_grad and bool(spec.grad_inputs(params))  # metrics: the value graph serves both
        key = case_key(spec, params, export_dims, with_grad)
        return key, os.path.join(self.directory, key + ".onnx"), with_grad

    def get(self, spec: Spec, params: Mapping[str, Any], export_dims: Mapping[str, int], with_grad: bool) -> str:
        key, path, with_grad = self._key_path(spec, params, export_dims, with_grad)
        if key in self._pending:
            self.seconds[key] = self._pending.pop(key).result()
            self.paths[key] = path
        if key not in self.paths and self.reuse and os.path.isfile(path):
            self.paths[key] = path
        if key not in self.paths:
            self.seconds[key] = export_graph(spec.name, params, export_dims, with_grad, path)
            self.paths[key] = path
        return self.paths[key]

    def export_many(self, tasks: Iterable[tuple[Spec, Mapping[str, Any], Mapping[str, int], bool]], jobs: int) -> None:
        """Start exporting ``(spec, params, export_dims, with_grad)`` tasks in ``jobs`` processes
        (``jobs <= 1``: nothing, :meth:`get` exports when asked). Losses with a minimum size (the
        Laplacian pyramid: 40-110 s an export) go first, the rest in the order given, so the checks
        of the first cases overlap the exports of the later ones."""
        if jobs <= 1:
            return
        todo = {}
        for spec, params, dims, grad in tasks:
            key, path, grad = self._key_path(spec, params, dims, grad)
            if key not in self.paths and key not in self._pending:
                todo[key] = (bool(spec.min_sizes(params)), (spec.name, dict(params), dict(dims), grad, path))
        if not todo:
            return
        self._pool = self._pool or worker_pool(jobs)
        for key, (_, args) in sorted(todo.items(), key=lambda kv: not kv[1][0]):  # stable: given order otherwise
            self._pending[key] = self._pool.submit(export_graph, *args)

    def close(self) -> None:
        """Stop the worker processes (exports not yet asked for are dropped)."""
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# --- the checks -------------------------------------------------------------------------------------


@dataclass
class Expected:
    """Torch (float32) and reference (float64) results on one set of inputs: what graphs are held to."""

    torch: dict[str, np.ndarray]
    torch_grad: dict[str, np.ndarray]
    ref: dict[str, np.ndarray]
    ref_grad: dict[str, np.ndarray]
    grad_atol: float


def eager_results(spec: Spec, params: Mapping[str, Any], inputs: Mapping[str, np.ndarray], row: Row,
                  device: str = "cpu") -> Expected:
    """Run torch (on ``device``) and the reference on ``inputs``; record their agreement (value, grad) in ``row``."""
    module = spec.build(**params)
    t0 = time.perf_counter()
    t_out, t_grad = torch_eval(spec, module, inputs, params, device=device)
    t1 = time.perf_counter()
    r_out, r_grad = reference_eval(spec, inputs, params)
    t2 = time.perf_counter()
    row.seconds.update(torch=t1 - t0, reference=t2 - t1)
    row.record("torch~ref", t_out, r_out, spec.rtol, spec.atol)
    exp = Expected(t_out, t_grad, r_out, r_grad, grad_tolerance(spec, r_grad))
    if r_grad:
        row.record("grad torch~ref", t_grad, r_grad, spec.grad_rtol, exp.grad_atol)
    return exp


def record_graphs(spec: Spec, params: Mapping[str, Any], row: Row, exp: Expected,
                  value_out: Mapping[str, np.ndarray] | None, grad_out: Mapping[str, np.ndarray] | None) -> None:
    """Compare a value graph's outputs with torch, a gradient graph's with the reference (None: not run)."""
    if value_out is not None:
        row.record("onnx~torch", value_out, exp.torch, spec.rtol, spec.atol)
    if grad_out is not None:
        names = spec.output_names(params)
        row.record("grad-graph value~ref", {k: grad_out[k] for k in names}, exp.ref, spec.rtol, spec.atol)
        if exp.ref_grad:
            row.record("onnx grad~ref", {k: grad_out[f"grad_{k}"] for k in exp.ref_grad}, exp.ref_grad,
                       spec.grad_rtol, exp.grad_atol)


def check_inputs(
    spec: Spec,
    params: Mapping[str, Any],
    inputs: Mapping[str, np.ndarray],
    *,
    row: Row,
    value_graph: Any = None,
    grad_graph: Any = None,
    device: str = "cpu",
) -> Row:
    """Compare torch (on ``device``), reference and (optionally) the ONNX graphs (anything with
    ``run(**inputs)``) on one set of inputs."""
    params = spec.resolve(params)
    exp = eager_results(spec, params, inputs, row, device)
    value_out = grad_out = None
    if value_graph is not None:
        t0 = time.perf_counter()
        value_out = value_graph.run(**inputs)
        row.seconds["onnx"] = time.perf_counter() - t0
    if grad_graph is not None:
        grad_out = grad_graph.run(**inputs)
    record_graphs(spec, params, row, exp, value_out, grad_out)
    return row


def _open(runtime: str, path: str, providers: str) -> tuple[Any, str | None]:
    """The graph loaded in ``runtime``, or ``(None, why)`` when the runtime refuses it."""
    from lossgraph.export.runtimes import RuntimeUnavailable, load

    try:
        return load(path, runtime, providers=providers), None
    except RuntimeUnavailable:
        raise
    except Exception as e:  # each runtime raises its own types; the reason goes into the table
        return None, f"{runtime} cannot load the graph: {error_line(e)}"


def error_line(e: BaseException) -> str:
    """An exception as one line: its first non-empty line (runtimes' status prefixes dropped)."""
    from lossgraph.export.runner import error_line as first_line

    return first_line(e)[:200]


def _run_graph(row: Row, what: str, graph: Any, why: str | None, inputs: Mapping[str, np.ndarray]) -> dict | None:
    """``graph.run(**inputs)``, or None with the failure recorded in ``row`` (``what``: value/gradient)."""
    if graph is not None:
        try:
            return graph.run(**inputs)
        except Exception as e:  # a runtime's failure is a result: it goes into the table
            why = f"{row.runtime} failed to run it: {error_line(e)}"
    row.ok = False
    row.failures.append(f"{what} graph: {why}")
    row.errors[("onnx~torch" if what == "value" else "onnx grad~ref")] = float("inf")
    return None


def check_case(
    spec: Spec,
    case: Case,
    cache: GraphCache | None = None,
    *,
    with_grad: bool = True,
    providers: str = "cpu",
    seed: int = 1,
    runtimes: Sequence[str] = ("onnxruntime",),
    device: str = "cpu",
) -> list[Row]:
    """Export ``case`` once (value graph, and gradient graph with ``with_grad``) and check every run
    dims in each of ``runtimes`` (:data:`lossgraph.export.runtimes.RUNTIMES`): one row per run dims
    and runtime; torch (on ``device``) and the reference run once per run dims. ``providers`` runs
    the onnxruntime graphs."""
    cache = cache or GraphCache()
    params = spec.resolve(case.params)
    value_path = cache.get(spec, params, case.export_dims, False)
    with_grad = with_grad and bool(spec.grad_inputs(params))  # metrics have no gradient graph: "-" in the matrix
    grad_path = cache.get(spec, params, case.export_dims, True) if with_grad else None
    opened = {rt: (_open(rt, value_path, providers), _open(rt, grad_path, providers) if grad_path else (None, None))
              for rt in runtimes}
    rows = []
    for dims in case.run_dims:
        inputs = spec.example_inputs(dims, seed=seed, params=params)
        eager = Row(spec.name, dict(case.params), dict(dims), dict(case.export_dims))
        exp = eager_results(spec, params, inputs, eager, device)
        for rt, ((value, v_why), (grad, g_why)) in opened.items():
            row = Row(spec.name, dict(case.params), dict(dims), dict(case.export_dims), dict(eager.errors),
                      eager.ok, list(eager.failures), dict(eager.seconds), runtime=rt)
            t0 = time.perf_counter()
            value_out = _run_graph(row, "value", value, v_why, inputs)
            row.seconds["onnx"] = time.perf_counter() - t0
            grad_out = _run_graph(row, "gradient", grad, g_why, inputs) if grad_path else None
            record_graphs(spec, params, row, exp, value_out, grad_out)
            rows.append(row)
    return rows


def check(
    names: Iterable[str] | None = None,
    *,
    cache: GraphCache | None = None,
    with_grad: bool = True,
    providers: str = "cpu",
    progress: Any = None,
    runtimes: Sequence[str] = ("onnxruntime",),
    jobs: int = 1,
) -> list[Row]:
    """Run every case of the named losses (all by default) in each runtime; returns the rows.

    With ``jobs > 1`` the graphs are exported in ``jobs`` processes first (largest first), while
    this process checks each case as soon as its graphs are written.
    """
    cache = cache or GraphCache()
    cases = [(catalog.get(name), case) for name in (names or catalog.names()) for case in catalog.get(name).cases]
    tasks = [(spec, spec.resolve(case.params), case.export_dims, g) for spec, case in cases for g in (False, True)[: 1 + with_grad]]
    cache.export_many(tasks, jobs)
    rows: list[Row] = []
    try:
        for spec, case in cases:
            case_rows = check_case(spec, case, cache, with_grad=with_grad, providers=providers, runtimes=runtimes)
            rows.extend(case_rows)
            if progress:
                progress(case_rows)
    finally:
        cache.close()
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A fixed-width parity table: one line per row, max abs errors per comparison, PASS/FAIL (and
    the runtime the graphs ran in, when rows come from several)."""
    cols = ["torch~ref", "onnx~torch", "grad torch~ref", "onnx grad~ref"]
    several = len({r.runtime for r in rows}) > 1
    rt_head = f"{'runtime':<15}" if several else ""
    head = f"{'loss':<18} {'params':<44} {'dims':<22} {rt_head}" + " ".join(f"{c:>14}" for c in cols) + "  result"
    lines = [head, "-" * len(head)]
    for r in rows:
        p = json.dumps(r.params, separators=(",", ":"))
        d = "x".join(str(v) for v in r.dims.values())
        rt = f"{r.runtime:<15}" if several else ""
        errs = " ".join(f"{r.errors[c]:>14.2e}" if c in r.errors else f"{'-':>14}" for c in cols)
        lines.append(f"{r.name:<18} {p[:44]:<44} {d:<22} {rt}{errs}  {'PASS' if r.ok else 'FAIL'}")
        lines.extend(f"{'':<18} ! {f}" for f in r.failures)
    passed = sum(r.ok for r in rows)
    lines.append(f"{passed} passed, {len(rows) - passed} failed")
    return "\n".join(lines)
