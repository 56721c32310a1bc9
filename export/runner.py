"""Run an exported loss graph in onnxruntime: input validation, provider choice, named outputs.

Torch-free: torch tensors are accepted (converted through ``.numpy()``) but torch is never imported.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lossgraph._checks import (
    InputError,
    InputTypeError,
    check_labels,
    check_not_empty,
    check_unit_interval,
    dtype_kind,
    fmt_shape,
    to_numpy,
)
from lossgraph._params import check_class_lists
from lossgraph.catalog import UNIT_DOMAINS, eval_dims

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

#: the last metadata_props entry of every lossgraph graph: metadata is serialized last, so a file cut
#: short at a field boundary still parses, without its tail; this key tells an intact file
METADATA_END = "lossgraph.end"

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


class OnnxLossError(InputError):
    """A graph that cannot be loaded, or inputs that do not fit it."""


def error_line(e: BaseException) -> str:
    """An exception as one readable line: its first non-empty line, onnxruntime's status prefix dropped."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", lines[0]) if lines else ""
    return text or type(e).__name__


#: leading bytes of files people mistake for ONNX models
_MAGIC = ((b"PK\x03\x04", "a zip archive (a PyTorch checkpoint or .npz?)"), (b"\x89HDF", "an HDF5 file (Keras?)"),
          (b"\x80", "a Python pickle"), (b"\x93NUMPY", "a .npy array"), (b"\x89PNG", "a PNG image"))


def graph_problem(data: bytes) -> str | None:
    """Why ``data`` is not an ONNX model, in words, or None when it parses as one.

    Used to explain a failed load: empty, truncated, or another format (zip, pickle, text, ...).
    """
    if not data:
        return "the file is empty"
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return f"the file is {what}, not an ONNX model"
    import onnx

    try:
        model = onnx.ModelProto.FromString(data)
    except Exception:
        return "the file is truncated or not an ONNX model (protobuf parsing failed)"
    if not model.graph.node or not model.graph.output:
        return "the file is truncated or not an ONNX model (no graph nodes or outputs)"
    return None


def cuda_usable() -> bool:
    """True when onnxruntime lists CUDA *and* the CUDA driver library loads on this machine.

    onnxruntime-gpu lists the CUDA provider everywhere and prints a load error when it cannot start
    it; checking the driver first keeps machines without a GPU quiet.
    """
    import onnxruntime as ort

    if PROVIDERS["cuda"] not in ort.get_available_providers():
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def _providers(providers: str | Sequence[str]) -> list[str]:
    if isinstance(providers, str):
        key = providers.lower()
        if key == "auto":
            return [PROVIDERS["cuda"], PROVIDERS["cpu"]] if cuda_usable() else [PROVIDERS["cpu"]]
        if key in PROVIDERS:
            return [PROVIDERS[key]] + ([PROVIDERS["cpu"]] if key != "cpu" else [])
        return [providers]
    return list(providers)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class OnnxLoss:
    """An exported loss graph in an onnxruntime session.

    Args:
        model: path to an ``.onnx`` file, serialized bytes, or an ``onnx.ModelProto``.
        providers: ``"auto"`` (CUDA when it can really load, else CPU), ``"cpu"``, ``"cuda"``, or a
            list of onnxruntime provider names.
        sess_options: optional ``onnxruntime.SessionOptions``.
        validate: check input values against the domains in the graph's metadata before running
            (labels in ``[0, C)`` or ``ignore_index``, probabilities, 0/1 targets and masks in
            ``[0, 1]``, per-class parameter lists of length C) and raise the torch loss's message.
            ``False`` skips these value checks (shapes and dtypes are always checked); the graph
            itself still answers NaN for out-of-domain labels and targets.

    Calling it with inputs (positional in graph order, or by name; numpy arrays or torch tensors)
    returns a float for a scalar single output, an array for a tensor output, or a dict
    ``{output_name: value}`` when the graph has several outputs. ``.provider`` is the provider that
    actually runs, ``.metadata`` the graph's ``metadata_props``.
    """

    def __init__(
        self, model: Any, providers: str | Sequence[str] = "auto", sess_options: Any = None, validate: bool = True
    ) -> None:
        import onnxruntime as ort

        self.validate = validate
        self.source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else "<model>"
        if isinstance(model, (str, os.PathLike)):
            if not os.path.isfile(model):
                raise OnnxLossError(f"OnnxLoss: no such file: {self.source}")
            data: Any = self.source
        elif isinstance(model, (bytes, bytearray)):
            data = bytes(model)
        elif hasattr(model, "SerializeToString"):
            data = model.SerializeToString()
        else:
            raise InputTypeError(f"OnnxLoss: model must be a path, bytes or onnx.ModelProto; got {type(model).__name__}")
        if sess_options is None:
            sess_options = ort.SessionOptions()
            sess_options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(data, sess_options=sess_options, providers=_providers(providers))
        except Exception as e:  # onnxruntime raises several private exception types
            raw = data if isinstance(data, bytes) else _read_bytes(data)
            why = graph_problem(raw) or error_line(e)
            raise OnnxLossError(f"OnnxLoss: {self.source} is not a loadable ONNX model: {why}") from None
        self.inputs = self.session.get_inputs()
        self.outputs = [o.name for o in self.session.get_outputs()]
        meta = self.session.get_modelmeta()
        self.metadata: dict[str, str] = dict(meta.custom_metadata_map)
        if meta.producer_name == "lossgraph" and METADATA_END not in self.metadata:  # cut at a field boundary
            raise OnnxLossError(
                f"OnnxLoss: {self.source} is not a loadable ONNX model: the file is truncated "
                f"(a lossgraph graph without the end of its metadata)"
            )
        self.metadata.pop(METADATA_END, None)

    @property
    def provider(self) -> str:
        """The provider that runs the graph (first of the session's providers)."""
        return self.session.get_providers()[0]

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def loss_name(self) -> str | None:
        return self.metadata.get("lossgraph.loss")

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.metadata.get("lossgraph.params", "{}"))

    def feeds(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        """Validate and convert inputs against the graph's declared inputs; the dict ``run`` takes."""
        names = self.input_names
        loss = self.loss_name or os.path.basename(self.source)
        if len(args) > len(names):
            raise OnnxLossError(f"{loss}: the graph takes {len(names)} inputs ({', '.join(names)}); got {len(args)}")
        given = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise OnnxLossError(f"{loss}: unknown input {k!r}; the graph takes {', '.join(names)}")
            if k in given:
                raise OnnxLossError(f"{loss}: input {k!r} given twice")
            given[k] = v
        missing = [n for n in names if n not in given]
        if missing:
            raise OnnxLossError(f"{loss}: missing input(s) {', '.join(missing)}; the graph takes {', '.join(names)}")

        feeds: dict[str, np.ndarray] = {}
        arrays: dict[str, np.ndarray] = {}
        bound: dict[str, tuple[int, str]] = {}
        labels = json.loads(self.metadata.get("lossgraph.labels", "{}"))
        for spec in self.inputs:
            x = to_numpy(given[spec.name])
            if not isinstance(x, np.ndarray):
                raise InputTypeError(f"{loss}: {spec.name} must be an array or tensor; got a {type(x).__name__}")
            want = _ORT_TYPES.get(spec.type)
            if want is None:
                raise OnnxLossError(f"{loss}: input {spec.name} has unsupported type {spec.type}")
            kind, want_kind = dtype_kind(x.dtype), dtype_kind(np.dtype(want))
            floats_ok = labels.get(spec.name, {}).get("floats", False)  # whole-valued 0/1 float labels
            if want_kind == "f" and kind not in "fb" or want_kind in "ib" and kind not in ("ibf" if floats_ok else "ib"):
                what = "a float" if want_kind == "f" else "an integer or 0/1 float" if floats_ok else "an integer"
                raise InputTypeError(f"{loss}: {spec.name} must be {what} array ({np.dtype(want).name}); got dtype {x.dtype}")
            sym = [d if isinstance(d, (int, str)) and d is not None else "?" for d in spec.shape]
            shape = tuple(int(d) for d in x.shape)
            if len(shape) != len(sym):
                raise OnnxLossError(f"{loss}: {spec.name} must have shape {fmt_shape(sym)}; got {fmt_shape(shape)}")
            for d, s in zip(shape, sym):
                if isinstance(s, int) and d != s:
                    raise OnnxLossError(f"{loss}: {spec.name} must have shape {fmt_shape(sym)}; got {fmt_shape(shape)}")
                if isinstance(s, str) and s != "?":
                    if s in bound and bound[s][0] != d:
                        other = bound[s][1]
                        raise OnnxLossError(
                            f"{loss}: {spec.name} must have shape {fmt_shape(sym)} matching {other} "
                            f"({s} = {bound[s][0]}); got {fmt_shape(shape)}"
                        )
                    bound.setdefault(s, (d, spec.name))
            arrays[spec.name] = x
            check_not_empty(loss, spec.name, shape, sym, json.loads(self.metadata.get("lossgraph.empty_dims", "[]")))
        self._check_derived(loss, bound)
        low = json.loads(self.metadata.get("lossgraph.min_dims", "{}"))
        small = {s: bound[s] for s in low if s in bound and bound[s][0] < low[s]}
        if small:
            s, (d, name) = next(iter(small.items()))
            raise OnnxLossError(
                f"{loss}: {name} is too small: {s} = {d}, the graph needs {s} >= {low[s]} "
                f"(minimum sizes {', '.join(f'{k} >= {v}' for k, v in low.items())})"
            )
        if self.validate:
            self._check_values(loss, arrays, {k: v[0] for k, v in bound.items()})
        for spec in self.inputs:
            x = arrays[spec.name]
            if x.dtype.kind == "f" and np.dtype(_ORT_TYPES[spec.type]).kind in "iu":  # whole values, when validated
                x = np.where(np.isfinite(x) & (x == np.round(x)), x, -1)  # else the graph's guard answers NaN
            feeds[spec.name] = np.ascontiguousarray(x, dtype=_ORT_TYPES[spec.type])
        return feeds

    def _check_values(self, loss: str, arrays: Mapping[str, np.ndarray], sizes: Mapping[str, int]) -> None:
        """The value domains recorded in the metadata, with the torch losses' messages."""
        labels = json.loads(self.metadata.get("lossgraph.labels", "{}"))
        domains = json.loads(self.metadata.get("lossgraph.input_domains", "{}"))
        for name, x in arrays.items():
            if name in labels:
                info = labels[name]
                classes = eval_dims(info["classes"], sizes)
                check_labels(loss, name, x, classes, info["ignore_index"], allow_float=info["floats"])
            elif domains.get(name) in UNIT_DOMAINS:
                what = "probabilities in [0, 1]" if domains[name] == "probabilities" else "in [0, 1]"
                check_unit_interval(loss, name, x, what, UNIT_DOMAINS[domains[name]])
        check_class_lists(loss, self.params, sizes.get("C"))

    def _check_derived(self, loss: str, bound: Mapping[str, tuple[int, str]]) -> None:
        """Dims the graph derives from others (``lossgraph.derived_dims``, e.g. N = H0*W0 + ...) must agree."""
        derived = json.loads(self.metadata.get("lossgraph.derived_dims", "{}"))
        sizes = {k: v[0] for k, v in bound.items()}
        for name, expr in derived.items():
            if name not in bound:
                continue
            want = eval_dims(expr, sizes)
            if sizes[name] != want:
                raise OnnxLossError(
                    f"{loss}: {bound[name][1]} has {name} = {sizes[name]}; the other inputs give {name} = {expr} = {want}"
                )

    def run(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        """All outputs as a dict of arrays."""
        values = self.session.run(None, self.feeds(*args, **kwargs))
        return dict(zip(self.outputs, values))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.run(*args, **kwargs)
        if len(out) == 1:
            (value,) = out.values()
            return float(value) if value.ndim == 0 else value
        return {k: (float(v) if v.ndim == 0 else v) for k, v in out.items()}

    def __repr__(self) -> str:
        return f"OnnxLoss({self.source!r}, loss={self.loss_name!r}, provider={self.provider!r})"
