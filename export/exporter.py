"""torch -> ONNX export of catalog losses: named inputs/outputs, dynamic dims, metadata, checks.

Uses the dynamo exporter (``torch.onnx.export(..., dynamo=True)``) at opset 18 or newer (at 17 it
writes a ReduceMean attribute onnxruntime refuses). With ``with_grad=True`` the exported module
computes ``torch.autograd.grad`` inside ``torch.enable_grad()``, so the graph also outputs
``grad_<input>`` for every differentiable input.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from lossgraph import catalog
from lossgraph._checks import InputError, InputTypeError, check_shapes
from lossgraph._functional import tracing
from lossgraph._params import check_class_lists
from lossgraph._version import __version__

from .runner import METADATA_END

DEFAULT_OPSET = 18
#: the newest opset the installed onnx defines (onnxruntime 1.31 loads up to 26; OnnxLoss says so)
MAX_OPSET = onnx.defs.onnx_opset_version()


class ValueAndGrad(nn.Module):
    """Wrap a loss: ``forward(*inputs) -> (*outputs, *grads)``.

    The gradient is that of ``outputs[grad_of]`` (the sum of all outputs when ``grad_of`` is None;
    the sum of the elements for ``reduction='none'``) with respect to the inputs at ``grad_index``.
    ``torch.func.grad_and_value`` is traced once with ``make_fx(tracing_mode="symbolic")`` into a
    joint forward+backward FX graph, which the exporter then takes like any module. (Calling
    ``torch.autograd.grad`` inside ``forward`` fails to export for sigmoid, exp, pow, softmax, sqrt,
    relu: "fake tensor in the exported program constant's list".)
    """

    def __init__(
        self,
        loss: nn.Module,
        output_names: Sequence[str],
        grad_index: Sequence[int],
        grad_of: str | None,
        example_args: Sequence[torch.Tensor],
        guard: InputGuard | None = None,
    ):
        super().__init__()
        names = tuple(output_names)
        self.guard = guard

        def value(*xs: torch.Tensor):
            outs = _as_tuple(loss(*xs), names)
            target = sum(o.sum() for o in outs) if grad_of is None else outs[names.index(grad_of)].sum()
            return target, outs

        joint = torch.func.grad_and_value(value, argnums=tuple(grad_index), has_aux=True)
        with tracing(), _quiet():
            self.joint = make_fx(joint, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example_args)

    def forward(self, *inputs: torch.Tensor):
        if self.guard is None:
            grads, (_, outs) = self.joint(*inputs)
            return (*outs, *grads)
        safe, factor = self.guard.prepare(inputs)
        grads, (_, outs) = self.joint(*safe)
        return tuple(InputGuard.scale(o, factor) for o in (*outs, *grads))


class InputGuard(nn.Module):
    """A loss whose every float output turns NaN (value and gradient) when an input is out of its
    domain: a label outside ``[0, classes)`` other than ``ignore_index``, a non-differentiable bounded
    input (0/1 targets, masks in ``[0, 1]``, centerness in ``[0, 1]`` or -1) outside its range, or a
    NaN or inf in a prediction (also where the loss masks it out, as in eager torch).

    A graph cannot raise, and torch and the reference raise on these inputs: this keeps every runtime
    from turning them into a finite, believable number. ``OnnxLoss`` checks the same domains from the
    graph's metadata and raises the torch message before running.
    """

    def __init__(self, loss: nn.Module, inputs: Sequence[catalog.Input], ignore_index: int | None):
        super().__init__()
        self.loss = loss
        self.inputs = tuple(inputs)
        self.ignore_index = ignore_index

    def prepare(self, xs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """``(inputs, factor)``: the inputs with out-of-range labels replaced by 0 (so no gather indexes
        out of bounds and every runtime reaches the guard), and a float scalar, NaN when some input is
        out of its domain and 1 otherwise (None: no input has a bounded domain)."""
        xs = list(xs)
        dims: dict[str, Any] = {}
        for spec, x in zip(self.inputs, xs):
            for k, s in enumerate(spec.shape):
                if isinstance(s, str):
                    dims.setdefault(s, x.shape[k])
        flags = []
        for k, (spec, x) in enumerate(zip(self.inputs, xs)):
            if spec.domain == "labels":
                assert spec.classes is not None  # labels declare their classes (catalog.Input)
                bad = (x < 0) | (x >= catalog.eval_dims(spec.classes, dims, torch.sym_max))
                if self.ignore_index is not None:
                    bad = bad & (x != self.ignore_index)
                xs[k] = torch.where(bad, torch.zeros_like(x), x)
            elif spec.domain in catalog.UNIT_DOMAINS and not spec.grad:
                bad = (x < 0) | (x > 1)
                extra = catalog.UNIT_DOMAINS[spec.domain]
                if extra is not None:
                    bad = bad & (x != extra)
            else:
                bad = None
            if bad is not None:
                flags.append(bad.any())
            if spec.grad:  # a NaN or inf in a prediction (masked out or not): NaN, as in eager
                flags.append(~torch.isfinite(x).all())
        if not flags:
            return xs, None
        bad = flags[0]
        for f in flags[1:]:
            bad = bad | f
        nan = torch.full((), float("nan"), device=bad.device)
        return xs, torch.where(bad, nan, torch.ones_like(nan))

    @staticmethod
    def scale(out: torch.Tensor, factor: torch.Tensor | None) -> torch.Tensor:
        """``out · factor`` for a float output (an exact no-op when the factor is 1)."""
        if factor is None or not out.is_floating_point():
            return out
        return out * factor.to(out.dtype)

    def forward(self, *xs: torch.Tensor) -> Any:
        safe, factor = self.prepare(xs)
        out = self.loss(*safe)
        if isinstance(out, Mapping):
            return {k: self.scale(v, factor) for k, v in out.items()}
        if isinstance(out, torch.Tensor):
            return self.scale(out, factor)
        return tuple(self.scale(v, factor) for v in out)


class _Outputs(nn.Module):
    """Flatten a loss returning a dict into a tuple in catalog output order."""

    def __init__(self, loss: nn.Module, output_names: Sequence[str]):
        super().__init__()
        self.loss = loss
        self.output_names = tuple(output_names)

    def forward(self, *inputs: torch.Tensor):
        return _as_tuple(self.loss(*inputs), self.output_names)


def _as_tuple(out: Any, names: Sequence[str]) -> tuple[torch.Tensor, ...]:
    if isinstance(out, Mapping):
        return tuple(out[n] for n in names)
    if isinstance(out, torch.Tensor):
        return (out,)
    return tuple(out)


def _to_tensor(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def to_onnx(
    loss: nn.Module,
    example_inputs: Sequence[Any] | Mapping[str, Any],
    path: str | os.PathLike | None = None,
    *,
    opset: int | None = None,
    dynamic: bool = True,
    with_grad: bool = False,
) -> onnx.ModelProto:
    """Export a catalog loss module to ONNX and return the ``ModelProto`` (also written to ``path``).

    Args:
        loss: a lossgraph module (``spec.build(...)`` or ``lg.LovaszSoftmax(...)``).
        example_inputs: tensors or arrays, in input order or by name. Export at sizes > 1 that differ
            between dimensions; the graph then runs at any size (1 pixel included).
        path: where to write the ``.onnx`` file (optional).
        opset: ONNX opset (default 18; lower is refused, see module docstring).
        dynamic: make the spec's symbolic dims (B, C, H, W, N, ...) dynamic, named as in the spec.
        with_grad: also output ``grad_<input>`` for each differentiable input (a loss with none,
            such as a metric, gives its value graph).

    The graph carries ``metadata_props`` (version, loss name, parameters, input domains) and passes
    ``onnx.checker.check_model(full_check=True)``.
    """
    name = getattr(type(loss), "name", None)
    if name is None or not hasattr(loss, "params"):
        raise InputTypeError(f"to_onnx: loss must be a lossgraph module (spec.build(...)); got {type(loss).__name__}")
    spec = catalog.get(name)
    params: Mapping[str, Any] = loss.params  # type: ignore[assignment]  # LossModule.params, a dict
    ins = spec.input_specs(params)
    outs = spec.output_names(params)
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or not DEFAULT_OPSET <= opset <= MAX_OPSET:
        raise InputError(
            f"to_onnx: opset must be an integer in [{DEFAULT_OPSET}, {MAX_OPSET}] (below {DEFAULT_OPSET} the dynamo "
            f"exporter's graphs fail in onnxruntime; {MAX_OPSET} is the newest this onnx knows); got {opset!r}"
        )

    if isinstance(example_inputs, Mapping):
        missing = [i.name for i in ins if i.name not in example_inputs]
        if missing:
            raise InputError(f"to_onnx: {name}: example_inputs lacks {', '.join(missing)}")
        given = [example_inputs[i.name] for i in ins]
    else:
        given = list(example_inputs)
        if len(given) != len(ins):
            names = ", ".join(i.name for i in ins)
            raise InputError(f"to_onnx: {name} takes {len(ins)} inputs ({names}); got {len(given)}")
    args = tuple(_to_tensor(a) for a in given)
    sizes = check_shapes(f"to_onnx: {name}", [(i.name, a, i.shape) for i, a in zip(ins, args)])
    check_class_lists(f"to_onnx: {name}", params, sizes.get("C"))

    grad_index = [k for k, i in enumerate(ins) if i.grad]
    guarded = InputGuard(loss, ins, params.get("ignore_index"))
    if with_grad and grad_index:  # a loss with no differentiable input (a metric): the value graph
        module: nn.Module = ValueAndGrad(loss, outs, grad_index, spec.grad_of, args, guard=guarded)
        out_names = [*outs, *(f"grad_{ins[k].name}" for k in grad_index)]
    else:
        module = _Outputs(guarded, outs)
        out_names = list(outs)

    dynamic_shapes = None
    if dynamic:
        # a Derived dim (N = H0*W0 + ...) is left to torch.export to infer (Dim.AUTO)
        lows = spec.min_sizes(params)
        dims = {s: torch.export.Dim.AUTO if isinstance(s, catalog.Derived)
                else torch.export.Dim(s, min=lows[s]) if s in lows else torch.export.Dim(s)
                for i in ins for s in i.shape if isinstance(s, str)}
        dynamic_shapes = (tuple({k: dims[s] for k, s in enumerate(i.shape) if isinstance(s, str)} for i in ins),)

    module.eval()
    with tracing(), _quiet(), _torchlib_registry_once():
        # Guards the symbolic shape solver cannot prove (sizes like 2·(H // 2) in pyramids) become
        # runtime asserts instead of specialising the dims; the default export then falls back slowly.
        # A spec dim the code fixes (C = 1 in a binary loss) violates its Dim: torch.onnx.export's own
        # fallbacks handle that, so the module goes there as before.
        try:
            exported: Any = torch.export.export(
                module, args, dynamic_shapes=dynamic_shapes, strict=False,
                prefer_deferred_runtime_asserts_over_guards=True,
            )
        except torch._dynamo.exc.UserError:
            exported = module
        program = torch.onnx.export(
            exported,
            args,
            dynamo=True,
            input_names=[i.name for i in ins],
            output_names=out_names,
            dynamic_shapes=dynamic_shapes,  # for a program: only names the ONNX dims (B, H, ...)
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    assert program is not None  # dynamo=True always returns a program
    model = program.model_proto
    written = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if written != opset:
        raise InputError(f"to_onnx: the exporter wrote opset {written} where opset {opset} was asked; use {written}")
    _name_derived_dims(model, ins)
    _explicit_constant_of_shape(model)
    onnx.helper.set_model_props(model, {**spec.metadata(params), "lossgraph.torch_version": torch.__version__})
    model.producer_name = "lossgraph"
    model.producer_version = __version__
    model.doc_string = f"lossgraph {spec.name} {json.dumps(params, sort_keys=True)}" + (" with gradients" if with_grad and grad_index else "")
    model.metadata_props.add(key=METADATA_END, value="")  # last: a file cut before it is known to be cut
    onnx.checker.check_model(model, full_check=True)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


def _explicit_constant_of_shape(model: onnx.ModelProto) -> None:
    """Give every ``ConstantOfShape`` its ``value`` (float32 0, the ONNX default, which the exporter
    leaves implicit for ``zeros``): tract 0.23 takes the missing value as float64, and its analysis then
    fails at the next MatMul with a float32 operand (tests/data/README.md)."""
    zero = onnx.helper.make_tensor("value", onnx.TensorProto.FLOAT, [1], [0.0])
    for node in [*model.graph.node, *(n for f in model.functions for n in f.node)]:
        if node.op_type == "ConstantOfShape" and not any(a.name == "value" for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("value", zero))


def _name_derived_dims(model: onnx.ModelProto, ins: Sequence[catalog.Input]) -> None:
    """Graph inputs show a derived dim by its name (``N``), not torch.export's expression for it."""
    for vi, i in zip(model.graph.input, ins):
        for d, s in zip(vi.type.tensor_type.shape.dim, i.shape):
            if isinstance(s, catalog.Derived):
                d.dim_param = str(s)


_REGISTRIES: dict[Any, Any] = {}


@contextlib.contextmanager
def _torchlib_registry_once() -> Iterator[None]:
    """Build torch.onnx's aten -> ONNX registry once per opset in this process.

    ``torch.onnx.export`` (torch 2.13, ``_compat.export_compat``) rebuilds it from torchlib on every
    call: 0.5-1.1 s of a 1.5-3 s export (cProfile of ``dice``), about a quarter of ``check --all``'s
    export time. The registry is only read once built (we pass no custom translation table), so one
    per opset serves every export. Where the private API differs, nothing is patched.
    """
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        yield
        return
    cls = _registration.ONNXRegistry
    original = cls.__dict__.get("from_torchlib")
    if not isinstance(original, classmethod):
        yield
        return
    build = original.__func__

    def once(klass: Any, opset_version: Any = None, **kwargs: Any) -> Any:
        args = () if opset_version is None else (opset_version,)
        key = (klass, opset_version, tuple(sorted(kwargs.items())))
        if key not in _REGISTRIES:
            _REGISTRIES[key] = build(klass, *args, **kwargs)
        return _REGISTRIES[key]

    setattr(cls, "from_torchlib", classmethod(once))  # noqa: B010 - a patch for the duration of the export
    try:
        yield
    finally:
        setattr(cls, "from_torchlib", original)  # noqa: B010


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress prints, warnings and torchvision notices.

    ``onnx_ir`` is among them: onnxscript's ``aten_index_put`` lowering (ArcFace's gradient graph)
    builds ``Constant(value_ints=[])``, and onnx_ir logs "Attribute type is ambiguous because it is
    an empty sequence ... Defaulted to INTS" for it, INTS being the right type there.
    """
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
