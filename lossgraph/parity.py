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
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

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
    """Absolute gradient tolerance: ``grad_rtol`` of the largest gradient entry (DESIGN.md)."""
    peak = max((float(np.abs(g).max()) for g in grads.values() if g.size), default=0.0)
    return spec.grad_rtol * peak + 1e-12


# --- evaluation in each framework ------------------------------------------------------------------


def torch_eval(
    spec: Spec, module: Any, inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], grad: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run the torch module eagerly: ``({output: value}, {input: grad})`` (grads of ``spec.grad_of``)."""
    import torch

    names = spec.output_names(params)
    ts = {k: torch.from_numpy(np.array(v)) for k, v in inputs.items()}
    gnames = spec.grad_inputs(params) if grad else ()
    for k in gnames:
        ts[k].requires_grad_(True)
    out = module(*ts.values())
    outs = dict(out) if isinstance(out, Mapping) else {names[0]: out}
    grads: dict[str, np.ndarray] = {}
    if gnames:
        target = sum(o.sum() for o in outs.values()) if spec.grad_of is None else outs[spec.grad_of].sum()
        gs = torch.autograd.grad(target, [ts[k] for k in gnames], allow_unused=True)
        grads = {k: (np.zeros(inputs[k].shape) if g is None else g.detach().double().numpy()) for k, g in zip(gnames, gs)}
    return {k: v.detach().double().numpy() for k, v in outs.items()}, grads


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
    blob = json.dumps([spec.name, dict(params), dict(export_dims), with_grad], sort_keys=True)
    import hashlib

    return f"{spec.name}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}{'-grad' if with_grad else ''}"


class GraphCache:
    """Exports each (loss, params, export dims, with_grad) once per process and reuses the file."""

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = os.fspath(directory) if directory else tempfile.mkdtemp(prefix="lossgraph-")
        os.makedirs(self.directory, exist_ok=True)
        self.paths: dict[str, str] = {}
        self.seconds: dict[str, float] = {}

    def get(self, spec: Spec, params: Mapping[str, Any], export_dims: Mapping[str, int], with_grad: bool) -> str:
        from lossgraph.export import to_onnx

        with_grad = with_grad and bool(spec.grad_inputs(params))  # metrics: the value graph serves both
        key = case_key(spec, params, export_dims, with_grad)
        if key not in self.paths:
            path = os.path.join(self.directory, key + ".onnx")
            module = spec.build(**params)
            example = spec.example_inputs(export_dims, seed=0, params=params)
            t0 = time.perf_counter()
            to_onnx(module, example, path, dynamic=True, with_grad=with_grad)
            self.seconds[key] = time.perf_counter() - t0
            self.paths[key] = path
        return self.paths[key]


# --- the checks -------------------------------------------------------------------------------------


def check_inputs(
    spec: Spec,
    params: Mapping[str, Any],
    inputs: Mapping[str, np.ndarray],
    *,
    row: Row,
    value_graph: Any = None,
    grad_graph: Any = None,
) -> Row:
    """Compare torch, reference and (optionally) the ONNX graphs on one set of inputs."""
    params = spec.resolve(params)
    module = spec.build(**params)
    t0 = time.perf_counter()
    t_out, t_grad = torch_eval(spec, module, inputs, params)
    t1 = time.perf_counter()
    r_out, r_grad = reference_eval(spec, inputs, params)
    t2 = time.perf_counter()
    row.seconds.update(torch=t1 - t0, reference=t2 - t1)
    row.record("torch~ref", t_out, r_out, spec.rtol, spec.atol)
    gtol = grad_tolerance(spec, r_grad)
    if r_grad:
        row.record("grad torch~ref", t_grad, r_grad, spec.grad_rtol, gtol)
    if value_graph is not None:
        t3 = time.perf_counter()
        o_out = value_graph.run(**inputs)
        row.seconds["onnx"] = time.perf_counter() - t3
        row.record("onnx~torch", o_out, t_out, spec.rtol, spec.atol)
    if grad_graph is not None:
        o_all = grad_graph.run(**inputs)
        names = spec.output_names(params)
        row.record("grad-graph value~ref", {k: o_all[k] for k in names}, r_out, spec.rtol, spec.atol)
        if r_grad:
            row.record("onnx grad~ref", {k: o_all[f"grad_{k}"] for k in r_grad}, r_grad, spec.grad_rtol, gtol)
    return row


def check_case(
    spec: Spec,
    case: Case,
    cache: GraphCache | None = None,
    *,
    with_grad: bool = True,
    providers: str = "cpu",
    seed: int = 1,
) -> list[Row]:
    """Export ``case`` once (value graph, and gradient graph with ``with_grad``) and check every run dims."""
    from lossgraph.export import OnnxLoss

    cache = cache or GraphCache()
    params = spec.resolve(case.params)
    value_graph = OnnxLoss(cache.get(spec, params, case.export_dims, False), providers=providers)
    grad_graph = OnnxLoss(cache.get(spec, params, case.export_dims, True), providers=providers) if with_grad else None
    rows = []
    for dims in case.run_dims:
        row = Row(spec.name, dict(case.params), dict(dims), dict(case.export_dims))
        inputs = spec.example_inputs(dims, seed=seed, params=params)
        rows.append(check_inputs(spec, params, inputs, row=row, value_graph=value_graph, grad_graph=grad_graph))
    return rows


def check(
    names: Iterable[str] | None = None,
    *,
    cache: GraphCache | None = None,
    with_grad: bool = True,
    providers: str = "cpu",
    progress: Any = None,
) -> list[Row]:
    """Run every case of the named losses (all by default); returns the rows."""
    cache = cache or GraphCache()
    rows: list[Row] = []
    for name in names or catalog.names():
        spec = catalog.get(name)
        for case in spec.cases:
            rows.extend(check_case(spec, case, cache, with_grad=with_grad, providers=providers))
            if progress:
                progress(rows[-len(case.run_dims):])
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A fixed-width parity table: one line per row, max abs errors per comparison, PASS/FAIL."""
    cols = ["torch~ref", "onnx~torch", "grad torch~ref", "onnx grad~ref"]
    head = f"{'loss':<18} {'params':<44} {'dims':<22} " + " ".join(f"{c:>14}" for c in cols) + "  result"
    lines = [head, "-" * len(head)]
    for r in rows:
        p = json.dumps(r.params, separators=(",", ":"))
        d = "x".join(str(v) for v in r.dims.values())
        errs = " ".join(f"{r.errors[c]:>14.2e}" if c in r.errors else f"{'-':>14}" for c in cols)
        lines.append(f"{r.name:<18} {p[:44]:<44} {d:<22} {errs}  {'PASS' if r.ok else 'FAIL'}")
        lines.extend(f"{'':<18} ! {f}" for f in r.failures)
    passed = sum(r.ok for r in rows)
    lines.append(f"{passed} passed, {len(rows) - passed} failed")
    return "\n".join(lines)
