"""Which nodes of an ONNX graph onnxruntime's CUDA execution provider has no kernel for (torch-free).

Every node is checked as (domain, op, opset, input and output types) against the kernel
registrations of the CUDA provider of the pinned onnxruntime-gpu build, vendored in
``cuda_kernels.json`` beside this module. That table is onnxruntime's own registry, read with
``onnxruntime.capi._pybind_state.get_all_opkernel_def()`` from the installed onnxruntime-gpu wheel
(``benchmarks/cuda/kernel_table.py`` regenerates it; on a machine without CUDA it loads the
provider library against stub CUDA libraries, which is enough to build the registry).

A node runs on CUDA when a kernel of its op and domain matches the way onnxruntime matches them
(``KernelRegistry::VerifyKernelDef``):

* version: the node's *since version* (the version of the op's schema in force at the model's opset,
  from ``onnx.defs.get_schema``) equals the kernel's start version, or lies inside the kernel's
  closed ``[start, end]`` range;
* types: for every type constraint of the kernel (``T``, ``T1``, ``Tind``, ...), the first actual
  argument of every formal input and output declared with that constraint (per the op schema) has
  one of the kernel's types.

On top of the registry, the provider's ``GetCapability`` rejects two node forms it has kernels for:
``ArgMax``/``ArgMin`` with ``select_last_index=1`` and ``ConvTranspose`` with asymmetric pads.
Nodes the provider deliberately leaves to the CPU although it has a kernel (small int64 shape
computations, ``GetCpuPreferredNodes``) are not fallbacks and are not listed.

    >>> from lossgraph.export.cuda_audit import kernel_table
    >>> kernel_table().version
    '1.31.1'
"""

from __future__ import annotations

import collections
import functools
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TABLE = os.path.join(os.path.dirname(__file__), "cuda_kernels.json")
PROVIDER = "CUDAExecutionProvider"
INF_VERSION = 2147483647  # onnxruntime's open end of a version range (INT_MAX)


@dataclass(frozen=True)
class Kernel:
    """One registered kernel: versions ``[start, end]`` and allowed types per type constraint."""

    start: int
    end: int
    types: Mapping[str, frozenset[str]]

    def covers(self, since: int) -> bool:
        """onnxruntime's version rule: exact start, or inside a closed range."""
        return self.start == since or (self.start < since <= self.end and self.end != INF_VERSION)


@dataclass
class KernelTable:
    """The CUDA kernels of one onnxruntime build, by ``(domain, op)``; domain ``""`` is ai.onnx."""

    version: str
    source: str
    kernels: dict[tuple[str, str], list[Kernel]]

    def of(self, domain: str, op: str) -> list[Kernel]:
        return self.kernels.get((_domain(domain), op), [])


def _domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


@functools.lru_cache(maxsize=4)
def kernel_table(path: str = TABLE) -> KernelTable:
    """Load a kernel table written by :func:`write_table` (default: the vendored pinned build)."""
    with open(path) as f:
        data = json.load(f)
    kernels: dict[tuple[str, str], list[Kernel]] = collections.defaultdict(list)
    for domain, op, start, end, types in data["kernels"]:
        kernels[(domain, op)].append(Kernel(start, end, {k: frozenset(v) for k, v in types.items()}))
    return KernelTable(data["onnxruntime"], data["source"], dict(kernels))


def registered_kernels() -> list[list[Any]]:
    """The CUDA provider's kernel registrations of the onnxruntime in this process, as table rows.

    Needs a loadable CUDA provider library (a GPU machine, or stub CUDA libraries on
    ``LD_LIBRARY_PATH``); a provider library that fails to load crashes the process, so call this
    in a subprocess where that can happen.
    """
    from onnxruntime.capi import _pybind_state as C

    rows = [
        [d.domain, d.op_name, d.version_range[0], d.version_range[1], {k: sorted(v) for k, v in sorted(d.type_constraints.items())}]
        for d in C.get_all_opkernel_def()
        if d.provider == PROVIDER
    ]
    return sorted(rows, key=lambda r: (r[0], r[1], r[2], r[3]))


def write_table(rows: Iterable[list[Any]], path: str, version: str, source: str) -> None:
    """Write ``rows`` (from :func:`registered_kernels`) as a kernel table, one kernel a line."""
    rows = list(rows)
    lines = ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in rows)
    head = json.dumps({"onnxruntime": version, "provider": PROVIDER, "source": source, "count": len(rows)})[:-1]
    with open(path, "w") as f:
        f.write(f'{head}, "kernels": [\n{lines}\n]}}\n')


# --- the audit ---------------------------------------------------------------------------------------


@dataclass
class NodeCheck:
    """One node as the audit saw it; ``reason`` says why it would fall back to the CPU (None: CUDA)."""

    name: str
    domain: str
    op: str
    since: int | None
    inputs: list[str | None]
    outputs: list[str | None]
    reason: str | None = None

    @property
    def on_cuda(self) -> bool:
        return self.reason is None

    def key(self) -> str:
        """``op(types)`` — the form fallbacks are grouped by."""
        shown = ", ".join(map(_short, self.inputs))
        return f"{self.domain + '.' if self.domain else ''}{self.op}-{self.since}({shown})"


@dataclass
class Audit:
    """The audit of one graph: every node, and the ops it uses."""

    path: str
    nodes: list[NodeCheck] = field(default_factory=list)

    @property
    def fallbacks(self) -> list[NodeCheck]:
        return [n for n in self.nodes if not n.on_cuda]

    @property
    def ops(self) -> collections.Counter:
        return collections.Counter((n.domain or "ai.onnx", n.op) for n in self.nodes)


def _short(t: str | None) -> str:
    return "-" if t is None else t.replace("tensor(", "").rstrip(")")


def _value_types(graph: Any) -> dict[str, str]:
    """``tensor(float)``-style type of every value with a known type in ``graph``."""
    types: dict[str, str] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = f"tensor({_elem_name(vi.type.tensor_type.elem_type)})"
    for init in graph.initializer:
        types[init.name] = f"tensor({_elem_name(init.data_type)})"
    return types


def _elem_name(elem_type: int) -> str:
    """ONNX element type -> onnxruntime's name (``float``, ``double``, ``int64``, ``bool``, ...)."""
    import onnx

    return onnx.TensorProto.DataType.Name(elem_type).lower()


def _formal_args(formals: Any, actual: Iterable[str]) -> list[tuple[Any, str]]:
    """Pair each present actual argument with its formal parameter; a variadic last formal takes the rest."""
    from onnx.defs import OpSchema

    VARIADIC = OpSchema.FormalParameterOption.Variadic
    pairs = []
    names = list(actual)
    for i, a in enumerate(names):
        if not formals:
            break
        formal = formals[min(i, len(formals) - 1)]
        if i >= len(formals) and formal.option != VARIADIC:
            break
        pairs.append((formal, a))
    return pairs


def _constraint_args(schema: Any, node: Any, constraint: str) -> list[str]:
    """Actual value names bound to ``constraint``: the first argument of each formal input/output
    whose type string, or whose name, is ``constraint`` (onnxruntime's kernel type-string resolver)."""
    found = []
    for formals, actual in ((schema.inputs, node.input), (schema.outputs, node.output)):
        seen = set()
        for formal, name in _formal_args(formals, actual):
            if formal.name in seen:  # variadic: only the first argument is checked
                continue
            seen.add(formal.name)
            if name and (formal.type_str == constraint or formal.name == constraint):
                found.append(name)
    return found


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _capability_reason(node: Any) -> str | None:
    """Node forms the CUDA provider's GetCapability refuses though a kernel is registered."""
    if node.op_type in ("ArgMax", "ArgMin") and _attr(node, "select_last_index", 0):
        return "select_last_index=1 is not supported by the CUDA kernel"
    if node.op_type == "ConvTranspose":
        pads = list(_attr(node, "pads", []) or [])
        half = len(pads) // 2
        if pads[:half] != pads[half:]:
            return f"asymmetric pads {pads} (cuDNN needs symmetric padding)"
    return None


def check_node(node: Any, opsets: Mapping[str, int], types: Mapping[str, str], table: KernelTable) -> NodeCheck:
    """Would ``node`` get a CUDA kernel? (see the module docstring for the rules)"""
    import onnx

    domain = _domain(node.domain)
    ins = [types.get(n) if n else None for n in node.input]
    outs = [types.get(n) if n else None for n in node.output]
    check = NodeCheck(node.name, domain, node.op_type, None, ins, outs)
    opset = opsets.get(domain)
    try:
        if opset is None:
            raise onnx.defs.SchemaError(f"no opset imported for domain {domain!r}")
        schema = onnx.defs.get_schema(node.op_type, opset, domain)
    except onnx.defs.SchemaError:
        schema = None
    check.since = schema.since_version if schema is not None else None
    kernels = table.of(domain, node.op_type)
    if not kernels:
        check.reason = f"no CUDA kernel for {node.op_type} (domain {domain or 'ai.onnx'})"
        return check
    if schema is None:
        check.reason = f"no ONNX schema for {node.op_type} at opset {opset} (domain {domain or 'ai.onnx'})"
        return check
    versioned = [k for k in kernels if k.covers(schema.since_version)]
    if not versioned:
        spans = ", ".join(f"{k.start}-{'' if k.end == INF_VERSION else k.end}" for k in kernels)
        check.reason = f"no CUDA kernel for {node.op_type} version {schema.since_version} (kernels: {spans})"
        return check
    for kernel in versioned:
        if all(types.get(a) in allowed for c, allowed in kernel.types.items() for a in _constraint_args(schema, node, c)):
            check.reason = _capability_reason(node)
            return check
    union: dict[str, set[str]] = collections.defaultdict(set)
    for kernel in versioned:
        for c, allowed in kernel.types.items():
            union[c] |= allowed
    bad = [f"{c} = {_short(types.get(a))}, CUDA has {', '.join(sorted(map(_short, union[c])))}"
           for c in union for a in _constraint_args(schema, node, c) if types.get(a) not in union[c]]
    check.reason = "type: " + ("; ".join(dict.fromkeys(bad)) or "no kernel for this combination of types")
    return check


def audit_model(model: Any, table: KernelTable | None = None, path: str = "<model>") -> Audit:
    """Check every node of ``model`` (an ``onnx.ModelProto``; local functions are inlined first)."""
    import onnx
    import onnx.inliner

    table = table or kernel_table()
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    if not all(vi.type.tensor_type.elem_type for vi in model.graph.value_info) or not model.graph.value_info:
        model = onnx.shape_inference.infer_shapes(model)
    opsets = {_domain(o.domain): o.version for o in model.opset_import}
    types = _value_types(model.graph)
    audit = Audit(path)
    for node in model.graph.node:
        if node.op_type == "Constant":
            t = _attr(node, "value")
            if t is not None:
                types[node.output[0]] = f"tensor({_elem_name(t.data_type)})"
        audit.nodes.append(check_node(node, opsets, types, table))
    return audit


def audit_file(path: str, table: KernelTable | None = None) -> Audit:
    """:func:`audit_model` of an ``.onnx`` file."""
    import onnx

    return audit_model(onnx.load(path), table, path)


def format_audit(audit: Audit, table: KernelTable | None = None) -> str:
    """Fallback nodes grouped by ``op(types)`` with the reason, then the counts."""
    table = table or kernel_table()
    head = f"CUDA audit against onnxruntime {table.version} {PROVIDER} kernels"
    lines = [f"{head} ({len(audit.nodes)} nodes, {len(audit.ops)} op types)"]
    groups: dict[tuple[str, str | None], list[NodeCheck]] = collections.defaultdict(list)
    for n in audit.fallbacks:
        groups[(n.key(), n.reason)].append(n)
    for (key, reason), nodes in sorted(groups.items()):
        names = ", ".join(n.name for n in nodes[:4]) + (f", ... ({len(nodes)} nodes)" if len(nodes) > 4 else "")
        lines.append(f"  CPU  {key}: {reason} [{names}]")
    lines.append(f"{len(audit.fallbacks)} of {len(audit.nodes)} nodes would fall back to the CPU")
    return "\n".join(lines)
