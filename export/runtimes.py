"""Run an exported graph in an ONNX runtime other than onnxruntime: one small adapter per runtime.

Torch-free. Each adapter loads a ``.onnx`` file and its ``run(**inputs)`` takes named numpy inputs and returns
``{output_name: ndarray}``, like :meth:`OnnxLoss.run`:

* ``onnxruntime`` — :class:`~lossgraph.export.OnnxLoss` (input validation, CPU or CUDA provider).
* ``openvino`` — OpenVINO's CPU plugin (``pip install lossgraph[openvino]``), compiled once with
  dynamic shapes at **f32** inference precision: its CPU default, ``bf16`` on CPUs with AMX/AVX512-BF16,
  put the Laplacian gradient 5.5 % off.
* ``onnx-reference`` — ``onnx.reference.ReferenceEvaluator`` (needs only onnx), with a
  ``GatherElements`` that takes any axis length: onnx's own uses ``np.choose``, limited to 64
  entries along the axis, and fails on the Lovász graphs.
* ``tract`` — Sonos' Rust engine (``pip install lossgraph[tract]``). It takes the graph without the
  exporter's ``value_info`` (its symbolic shapes conflict with concrete input facts) and is analysed
  and optimised once per set of input shapes, in a child process: a panic in tract aborts the process
  it runs in, and becomes the error of that graph instead.

    >>> from lossgraph.export.runtimes import load          # doctest: +SKIP
    >>> load("lovasz.onnx", "openvino").run(probas=p, labels=y)["loss"]   # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lossgraph._checks import InputError

RUNTIMES = ("onnxruntime", "openvino", "onnx-reference", "tract")
#: the pip extra that installs each runtime (onnxruntime and onnx are core dependencies)
EXTRAS = {"openvino": "openvino", "tract": "tract"}


class RuntimeUnavailable(InputError):
    """A runtime that is not installed here: the message names the extra that installs it."""


def _import(runtime: str, module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeUnavailable(
            f"runtime {runtime} is not installed; install it with: pip install 'lossgraph[{EXTRAS[runtime]}]'"
        ) from None


def _input_dtypes(model: Any) -> dict[str, np.dtype]:
    """The numpy dtype each graph input declares."""
    import onnx

    return {i.name: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in model.graph.input}


def _cast(feeds: Mapping[str, Any], dtypes: Mapping[str, np.dtype]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(feeds[k], dtype=dtypes[k]) for k in dtypes}


class OnnxRuntimeGraph:
    """onnxruntime through :class:`~lossgraph.export.OnnxLoss` (``providers``: ``"cpu"``, ``"cuda"``, ``"auto"``)."""

    def __init__(self, path: str, providers: str = "cpu") -> None:
        from .runner import OnnxLoss

        self.loss = OnnxLoss(path, providers=providers)

    def run(self, **feeds: Any) -> dict[str, np.ndarray]:
        return self.loss.run(**feeds)


class OpenVinoGraph:
    """OpenVINO's CPU plugin at f32 precision; the graph is compiled once with its dynamic shapes."""

    CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}

    def __init__(self, path: str, providers: str = "cpu") -> None:
        import onnx

        ov = _import("openvino", "openvino")
        model = onnx.load(path, load_external_data=False)
        self.dtypes = _input_dtypes(model)
        self.compiled = ov.Core().compile_model(path, "CPU", self.CONFIG)
        ports = {name: port for port in self.compiled.outputs for name in port.get_names()}
        self.outputs = {o.name: ports[o.name] for o in model.graph.output}

    def run(self, **feeds: Any) -> dict[str, np.ndarray]:
        result = self.compiled(_cast(feeds, self.dtypes))
        return {name: np.asarray(result[port]) for name, port in self.outputs.items()}


def _gather_elements_op() -> type:
    """``GatherElements`` for the reference evaluator, by ``np.take_along_axis`` (any axis length)."""
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):
        def _run(self, data, indices, axis=None):  # noqa: ANN001 - OpRun's signature
            axis = 0 if axis is None else int(axis)
            idx = np.where(indices < 0, indices + data.shape[axis], indices)
            return (np.take_along_axis(data, idx, axis=axis),)

    return GatherElements


class OnnxReferenceGraph:
    """``onnx.reference.ReferenceEvaluator``, with a ``GatherElements`` free of ``np.choose``'s 64 limit."""

    def __init__(self, path: str, providers: str = "cpu") -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        model = onnx.load(path)
        self.dtypes = _input_dtypes(model)
        self.names = [o.name for o in model.graph.output]
        self.session = ReferenceEvaluator(model, new_ops=[_gather_elements_op()])

    def run(self, **feeds: Any) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in zip(self.names, self.session.run(None, _cast(feeds, self.dtypes)))}


_TRACT_TYPES = {"float32": "f32", "float64": "f64", "int64": "i64", "int32": "i32", "bool": "bool", "float16": "f16"}


def _tract_plan(tract: Any, path: str, dtypes: Mapping[str, str], shapes: Sequence[tuple[int, ...]]) -> Any:
    """The runnable tract model of ``path`` for concrete input ``shapes`` (analysed and optimised)."""
    model = tract.onnx().load(path)
    for k, (shape, dtype) in enumerate(zip(shapes, dtypes.values())):
        dims = ",".join(str(d) for d in shape)
        model.set_input_fact(k, f"{dims},{_TRACT_TYPES[dtype]}" if dims else _TRACT_TYPES[dtype])
    return model.into_model().into_runnable()


def _tract_serve(read_fd: int, write_fd: int) -> None:
    """The tract process: answers ``(path, dtypes, arrays)`` with ``(True, outputs)`` or ``(False, error)``.

    Plans are kept for the last graph only (a check runs one graph at a time)."""
    from multiprocessing.connection import Connection

    import tract

    recv, send = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    plans: dict[tuple, Any] = {}
    while True:
        try:
            path, dtypes, arrays = recv.recv()
        except EOFError:  # the parent went away
            return
        key = (path, *(a.shape for a in arrays))
        try:
            if key not in plans:
                plans = {k: v for k, v in plans.items() if k[0] == path}
                plans[key] = _tract_plan(tract, path, dtypes, [a.shape for a in arrays])
            send.send((True, [np.asarray(v.to_numpy()) for v in plans[key].run(arrays)]))
        except Exception as e:  # tract's errors travel back as text
            send.send((False, f"{type(e).__name__}: {e}"))


class _TractProcess:
    """One child process that runs tract, restarted after it dies: a panic in tract aborts the process
    it runs in (seen with negative ``Pad`` pads), which must not take ``lossgraph check`` with it.

    A plain ``python -c`` child over two pipes (not multiprocessing's spawn, which would re-run the
    caller's ``__main__``)."""

    def __init__(self) -> None:
        self.proc: Any = None

    def _start(self) -> None:
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        code = f"from lossgraph.export.runtimes import _tract_serve; _tract_serve({to_child}, {from_child})"
        self.stderr = tempfile.TemporaryFile()  # the panic message, for the error
        self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL,
                                     stderr=self.stderr, env={**os.environ, "RUST_BACKTRACE": "0"})
        os.close(to_child)
        os.close(from_child)
        self.send, self.recv = Connection(from_parent, readable=False), Connection(to_parent, writable=False)

    def call(self, path: str, dtypes: Mapping[str, str], arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            self.send.send((path, dict(dtypes), arrays))
            ok, payload = self.recv.recv()
        except (EOFError, OSError):
            code = self.proc.wait(10)
            self.send.close()
            self.recv.close()
            self.proc = None
            self.stderr.seek(0)
            lines = self.stderr.read().decode(errors="replace").splitlines()
            self.stderr.close()
            said = [lines[i + 1].strip() for i, line in enumerate(lines[:-1]) if " panicked at " in line]
            raise RuntimeError(f"tract aborted its process (exit code {code}), panic: {said[0] if said else 'no message'}") from None
        if not ok:
            raise RuntimeError(payload)
        return payload


_TRACT = _TractProcess()


class TractGraph:
    """tract: the graph without ``value_info``, typed, optimised and made runnable per input shapes, in a
    child process (a panic in tract aborts its process; here it becomes an error of this graph)."""

    def __init__(self, path: str, providers: str = "cpu") -> None:
        import onnx

        _import("tract", "tract")
        model = onnx.load(path)
        self.dtypes = _input_dtypes(model)
        self.names = [o.name for o in model.graph.output]
        del model.graph.value_info[:]  # the exporter's symbolic shapes contradict concrete input facts
        fd, self.path = tempfile.mkstemp(suffix=".onnx", prefix="lossgraph-tract-")
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())

    def __del__(self) -> None:
        if getattr(self, "path", None) and os.path.exists(self.path):
            os.unlink(self.path)

    def run(self, **feeds: Any) -> dict[str, np.ndarray]:
        arrays = _cast(feeds, self.dtypes)
        outs = _TRACT.call(self.path, {k: d.name for k, d in self.dtypes.items()}, [arrays[k] for k in self.dtypes])
        return dict(zip(self.names, outs))


#: graphs a runtime gets wrong or refuses, ``(runtime, loss, "value" | "gradient") -> cause``: the
#: README matrix prints the cause beside the cell, tests/test_runtimes.py expects these failures
#: (strict: a runtime that starts passing one fails the test until the entry is removed)
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}
#: known failures that show only at a case's large run dims; tests/test_runtimes.py runs the first
#: (small) run dims, where these graphs pass
LARGE_ONLY = frozenset(KNOWN_FAILURES)

#: runtime faults shown on a tiny graph, ``(folder in tests/data, runtime, fault)``, ready to report
#: upstream (tests/data/README.md); the graphs here avoid each of them
REPRODUCERS: tuple[tuple[str, str, str], ...] = (
    ("logsoftmax_underflow", "tract", "tract 0.23.9 computes LogSoftmax as log(softmax): -87.3 for -88, -inf below ~-103"),
    ("logsoftmax_underflow", "onnx-reference", "onnx 1.23 ReferenceEvaluator computes LogSoftmax as log(softmax): -inf below ~-103"),
    ("constantofshape_default_dtype", "tract", "tract 0.23.9 types a ConstantOfShape without value as float64 (spec: float32 0)"),
    ("pad_negative", "onnx-reference", "onnx 1.23 ReferenceEvaluator rejects Pad with negative pads (a crop)"),
    ("pad_negative", "tract", "tract 0.23.9 panics on Pad with negative pads (a crop) and aborts its process"),
    ("reducesum_long_axis", "tract", "tract 0.23.9 sums a ReduceSum over the innermost axis alone as a sequential float32 running sum: "
     "4.8e-6 off over 16,384 values (onnxruntime 8e-8; tract over two axes 1.4e-7)"),
)

_ADAPTERS = {
    "onnxruntime": OnnxRuntimeGraph,
    "openvino": OpenVinoGraph,
    "onnx-reference": OnnxReferenceGraph,
    "tract": TractGraph,
}


def parse_runtimes(text: str) -> tuple[str, ...]:
    """``"onnxruntime,openvino"`` -> ``("onnxruntime", "openvino")``; unknown names raise InputError."""
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in _ADAPTERS]
    if unknown or not names:
        raise InputError(f"--runtime takes names from {', '.join(RUNTIMES)}; got {text!r}")
    return names


def load(path: str | os.PathLike, runtime: str = "onnxruntime", providers: str = "cpu") -> Any:
    """The graph at ``path`` loaded in ``runtime`` (one of :data:`RUNTIMES`): an object whose
    ``run(**inputs)`` returns ``{output: array}`` (as :meth:`OnnxLoss.run`)."""
    if runtime not in _ADAPTERS:
        raise InputError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    return _ADAPTERS[runtime](os.fspath(path), providers=providers)
