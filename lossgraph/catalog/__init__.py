"""The loss catalog: one spec per loss; the CLI, ONNX export, parity tests and benchmarks iterate it.

Torch-free: a spec names its torch module lazily and imports torch only in :meth:`Spec.build`.

    >>> import lossgraph as lg
    >>> spec = lg.catalog.get("lovasz_softmax")
    >>> [i.name for i in spec.input_specs()]
    ['probas', 'labels']
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import InputError
from .._params import check_params

Shape = tuple  # symbolic: dimension names ("B"), fixed ints (4) or Derived dims (N = H0*W0 + ...)
Dims = Mapping[str, int]

#: value domains an input can declare (written into ONNX metadata)
DOMAINS = (
    "logits",  # any real
    "probabilities",  # in [0, 1], summing to 1 over the class axis
    "labels",  # integers in [0, C) or the ignore value
    "binary",  # 0/1 targets stored as floats
    "mask",  # 0/1 region masks
    "alpha",  # alpha mattes in [0, 1]
    "boxes",  # xyxy boxes
    "ltrb",  # distances to the left, top, right, bottom box sides
    "features",  # embeddings
    "parameters",  # learned tensors fed as inputs (e.g. class centers)
    "centerness",  # FCOS centerness targets in [0, 1], -1 marks negative locations
)

#: bounded float domains: values in [0, 1], plus one extra allowed value (or None). Torch, the
#: reference, ``OnnxLoss`` and the graphs' input guard check them (the guard: non-differentiable inputs)
UNIT_DOMAINS: dict[str, float | None] = {"probabilities": None, "binary": None, "mask": None, "centerness": -1.0}


class Derived(str):
    """A dimension computed from others, e.g. ``Derived("N", "H0*W0 + H1*W1")``.

    It is its name wherever a dimension name is expected (shape checks, messages, ONNX dim names);
    the exporter leaves it to ``torch.export`` (``Dim.AUTO``), the graph records ``expr`` in
    ``lossgraph.derived_dims`` and the runner checks it (:func:`eval_dims`).
    """

    expr: str

    def __new__(cls, name: str, expr: str) -> Derived:
        obj = super().__new__(cls, name)
        obj.expr = expr
        return obj


def eval_dims(expr: str | int, dims: Mapping[str, Any], maximum: Callable[[Any, Any], Any] = max) -> Any:
    """Evaluate a sum of products of dimension names and integers (``"H0*W0 + 4"``), or ``max(a, b)``
    of two such expressions, at ``dims``. Sizes are used as given (no ``int()``), so symbolic sizes
    work too; ``maximum`` replaces ``max`` for them (``torch.sym_max``)."""
    expr = str(expr).strip()
    if expr.startswith("max(") and expr.endswith(")"):
        a, b = expr[4:-1].split(",")
        return maximum(eval_dims(a, dims, maximum), eval_dims(b, dims, maximum))
    total: Any = 0
    for term in expr.split("+"):
        prod: Any = 1
        for factor in term.split("*"):
            factor = factor.strip()
            prod = prod * (int(factor) if factor.isdigit() else dims[factor])
        total = total + prod
    return total


@dataclass(frozen=True)
class Input:
    """One named input of a loss: symbolic shape, dtype the graph declares, value domain."""

    name: str
    shape: Shape
    dtype: str = "float32"
    domain: str = "logits"
    grad: bool = False  #: differentiable: gradient graphs and gradient parity cover it
    #: labels: the number of classes, ids in ``[0, classes)`` (or the spec's ``ignore_index``): a dim
    #: expression (``"C"``, ``"C + 1"``, ``"max(C, 2)"``) or a number
    classes: str | int | None = None
    #: labels: whole-valued float tensors are accepted too (binary 0/1 targets)
    floats: bool = False

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"unknown domain {self.domain!r} for input {self.name!r}")
        if (self.domain == "labels") != (self.classes is not None):
            raise ValueError(f"input {self.name!r}: labels, and only labels, declare their number of classes")


@dataclass(frozen=True)
class Case:
    """A parity configuration: parameters, the dims to export at, and the dims to run the graph at."""

    params: Mapping[str, Any]
    export_dims: Dims
    run_dims: Sequence[Dims]


@dataclass(frozen=True)
class Spec:
    """Everything needed to build, export, feed and check one loss.

    Attributes:
        name: catalog name, also the functional / reference function name.
        family: module name of the family (``lovasz``: ``lossgraph/lovasz.py``, ``reference/lovasz.py``).
        module: ``"lossgraph.<family>:<Class>"``, imported lazily by :meth:`build`.
        params: default parameters (the module's keyword arguments).
        inputs: input specs, or a function of the parameters returning them.
        make_inputs: ``(dims, rng, params) -> {name: ndarray}``, seeded example inputs.
        reference: the reference function ``lossgraph.reference.<name>``, a property imported on
            first use (so listing the catalog imports neither numba nor torch).
        outputs: output names (``("loss",)``, or the keys of a loss set), or a function of the params.
        grad_of: the output whose gradient gradient graphs give; ``None``: the sum of all outputs.
        cases: parity configurations (each exported once, run at several shapes).
        grid: extra parameter sets checked torch-vs-reference in eager mode only.
        edges: ``params -> {case_name: {input: array}}``: edge inputs (empty masks, all pixels
            ignored, ...) that the tests run three ways with the first case's graphs.
        min_dims: smallest sizes of symbolic dims (``{"H": 64, "W": 64}``), or a function of the
            params; the export declares them and the runner refuses smaller inputs.
        bench_dims: the realistic size benchmarks time (segmentation 8x21x256x256, matting
            8x1x512x512, FCOS 5 levels of a 512x512 input, boxes N=100k).
        rtol, atol, grad_rtol: tolerances (DESIGN.md defaults); widen only with ``note`` saying why.
        aggregation: ``{output: rule}`` for evaluating saved predictions over a dataset (``mean``,
            ``sum``, ``confusion``; outputs not named: ``mean``), written to the graph metadata
            ``lossgraph.aggregation`` (see ``lossgraph.export.summary``).
    """

    name: str
    family: str
    module: str
    params: Mapping[str, Any]
    inputs: Sequence[Input] | Callable[[Mapping[str, Any]], Sequence[Input]]
    make_inputs: Callable[[Dims, np.random.Generator, Mapping[str, Any]], dict[str, np.ndarray]]
    cases: Sequence[Case]
    outputs: Sequence[str] | Callable[[Mapping[str, Any]], Sequence[str]] = ("loss",)
    grad_of: str | None = "loss"
    grid: Sequence[Mapping[str, Any]] = ()
    edges: Callable[[Mapping[str, Any]], Mapping[str, Mapping[str, np.ndarray]]] | None = None
    bench_dims: Dims | None = None
    min_dims: Dims | Callable[[Mapping[str, Any]], Dims] = field(default_factory=dict)
    rtol: float = 1e-5
    atol: float = 1e-6
    grad_rtol: float = 1e-4
    note: str = ""
    description: str = field(default="")
    aggregation: Mapping[str, str] = field(default_factory=dict)
    #: dims that may be 0 (box losses: N = 0 boxes give 0, or an empty array); any other empty input is
    #: an InputError in torch, the reference and the runner
    empty_dims: Sequence[str] = ()

    # --- parameters -------------------------------------------------------------------------
    def resolve(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overridden by ``params``, each checked against its rule (type and range).

        Raises:
            InputError: an unknown name or a value out of range; InputTypeError: a value of the wrong
            type (``per_image="no"``), each naming the parameter.
        """
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise InputError(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.params)) or 'none'}"
            )
        check_params(self.name, params)
        return {**self.params, **params}

    def input_specs(self, params: Mapping[str, Any] | None = None) -> tuple[Input, ...]:
        p = self.resolve(params)
        return tuple(self.inputs(p) if callable(self.inputs) else self.inputs)

    def output_names(self, params: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        p = self.resolve(params)
        return tuple(self.outputs(p) if callable(self.outputs) else self.outputs)

    def min_sizes(self, params: Mapping[str, Any] | None = None) -> dict[str, int]:
        p = self.resolve(params)
        return dict(self.min_dims(p) if callable(self.min_dims) else self.min_dims)

    def predictions(self, arrays: Sequence[Any], params: Mapping[str, Any] | None = None) -> list[Any]:
        """The differentiable inputs among ``arrays`` (given in input order): the ones whose NaN or inf
        makes the loss NaN. Targets are left out (FCOS regression targets may be anything at negatives)."""
        return [x for x, i in zip(arrays, self.input_specs(params)) if i.grad]

    def grad_inputs(self, params: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        return tuple(i.name for i in self.input_specs(params) if i.grad)

    # --- construction -------------------------------------------------------------------------
    @property
    def reference(self) -> Callable[..., Any]:
        """The reference function of the same name (imports ``lossgraph.reference``, hence numba)."""
        from lossgraph import reference

        return getattr(reference, self.name)  # the catalog contract: one reference per name

    def module_class(self) -> type:
        mod, _, attr = self.module.partition(":")
        return getattr(importlib.import_module(mod), attr)

    def build(self, **params: Any):
        """The torch ``nn.Module`` with ``params`` over the defaults (imports torch)."""
        return self.module_class()(**self.resolve(params))

    @property
    def export_dims(self) -> Dims:
        """Default export sizes: every case's export dims, the first case's where they overlap (so a
        dim only some parameters use, like pairwise boxes' M, has a size too)."""
        dims: dict[str, int] = {}
        for case in reversed(self.cases):
            dims.update(case.export_dims)
        return dims

    def check_dims(self, dims: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> dict[str, int]:
        """Sizes for :meth:`example_inputs`: ``dims`` over :attr:`export_dims`, each a known dimension
        of the inputs, an integer >= 1 and >= its minimum size; one-line InputError otherwise."""
        p = self.resolve(params)
        known = sorted({s for i in self.input_specs(p) for s in i.shape if isinstance(s, str) and not isinstance(s, Derived)})
        unknown = sorted(set(dims) - set(known))
        if unknown:
            raise InputError(f"{self.name}: unknown dimension(s) {', '.join(unknown)}; the inputs use {', '.join(known)}")
        low = self.min_sizes(p)
        for k, v in dims.items():
            least = max(1, low.get(k, 1))
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise InputError(f"{self.name}: dimension {k} must be an integer >= {least}; got {v!r}")
        return {**{k: v for k, v in self.export_dims.items() if k in known}, **dims}

    def example_inputs(
        self, dims: Dims | None = None, seed: int = 0, params: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """Seeded example inputs at ``dims`` (default: :attr:`export_dims`), in input order."""
        p = self.resolve(params)
        dims = dict(self.export_dims if dims is None else dims)
        arrays = self.make_inputs(dims, np.random.default_rng(seed), p)
        order = [i.name for i in self.input_specs(p)]
        return {k: arrays[k] for k in order}

    def ref(self, inputs: Mapping[str, np.ndarray], params: Mapping[str, Any] | None = None, grad: bool = False):
        """Call the reference on named inputs: value, or ``(value, {input: grad})`` with ``grad``."""
        p = self.resolve(params)
        args = [inputs[i.name] for i in self.input_specs(p)]
        if not grad:
            return self.reference(*args, **p)
        value, g = self.reference(*args, **p, grad=True)
        if not isinstance(g, dict):
            (only,) = self.grad_inputs(p)
            g = {only: g}
        return value, g

    def metadata(self, params: Mapping[str, Any] | None = None) -> dict[str, str]:
        """The ONNX ``metadata_props`` of a graph of this loss."""
        from .._version import __version__

        p = self.resolve(params)
        ins = self.input_specs(p)
        meta = {
            "lossgraph.version": __version__,
            "lossgraph.loss": self.name,
            "lossgraph.params": json.dumps(p, sort_keys=True),
            "lossgraph.input_domains": json.dumps({i.name: i.domain for i in ins}),
            "lossgraph.input_shapes": json.dumps({i.name: list(i.shape) for i in ins}),
            "lossgraph.outputs": json.dumps(list(self.output_names(p))),
            "lossgraph.min_dims": json.dumps(self.min_sizes(p)),
            "lossgraph.aggregation": json.dumps({o: self.aggregation.get(o, "mean") for o in self.output_names(p)}),
            "lossgraph.empty_dims": json.dumps(list(self.empty_dims)),
            "lossgraph.labels": json.dumps({i.name: {"classes": str(i.classes), "ignore_index": p.get("ignore_index"),
                                                     "floats": i.floats} for i in ins if i.domain == "labels"}),
        }
        derived = {s: s.expr for i in ins for s in i.shape if isinstance(s, Derived)}
        if derived:
            meta["lossgraph.derived_dims"] = json.dumps(derived)
        return meta


def _collect() -> dict[str, Spec]:
    """Every ``SPECS`` list of the family modules in this package (``_``-prefixed modules are helpers)."""
    import pkgutil

    specs: dict[str, Spec] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        family = importlib.import_module(f"{__name__}.{info.name}")
        for spec in family.SPECS:
            if spec.name in specs:
                raise RuntimeError(f"duplicate catalog name {spec.name!r}")
            specs[spec.name] = spec
    return specs


_SPECS: dict[str, Spec] | None = None


def _all() -> dict[str, Spec]:
    global _SPECS
    if _SPECS is None:
        _SPECS = _collect()
    return _SPECS


class UnknownLoss(InputError, KeyError):
    """A name that is not in the catalog (a :class:`KeyError` too, for ``catalog.get`` callers)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def names() -> list[str]:
    """Sorted catalog names."""
    return sorted(_all())


def get(name: str) -> Spec:
    """The spec of ``name``; KeyError lists the known names."""
    try:
        return _all()[name]
    except KeyError:
        raise UnknownLoss(f"unknown loss {name!r}; known: {', '.join(names())}") from None


def specs() -> list[Spec]:
    """Every spec, in name order."""
    return [_all()[n] for n in names()]
