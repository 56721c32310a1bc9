"""Graph bundles: every catalog entry's graphs in the ONNX model-zoo layout, with a manifest.

``lossgraph export --all -o DIR [--with-grad] [--jobs N]`` writes::

    DIR/manifest.json
    DIR/<graph>/model.onnx
    DIR/<graph>/test_data_set_0/input_0.pb ... output_0.pb ...   (TensorProto, graph order)

one ``<graph>`` per catalog entry and parameter set (the defaults, named ``<loss>``, and each parity
case's parameters, ``<loss>-<8 hex of their hash>``), and with ``--with-grad`` a ``<graph>-grad``
beside each (outputs ``loss``..., ``grad_<input>``...). The test data are inputs at the case's first
run dims (seed 1, not the export dims: the graph is dynamic) and the float64 reference's outputs and
gradients cast to the graph's output types, so standard ONNX test runners check any runtime against
the reference; ``tolerance`` in the manifest gives the bounds the parity check uses.

Reading a bundle is torch-free: :func:`load` / :func:`find`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lossgraph import catalog
from lossgraph._checks import InputError

MANIFEST = "manifest.json"
FORMAT = "lossgraph-bundle/1"
TEST_SEED = 1


def params_id(params: Mapping[str, Any]) -> str:
    """8 hex digits naming a resolved parameter set."""
    return hashlib.sha1(json.dumps(dict(params), sort_keys=True).encode()).hexdigest()[:8]


def plan(names: list[str] | None = None, with_grad: bool = False) -> list[dict[str, Any]]:
    """The graphs of a bundle: per entry, its defaults and each case's parameters (once each), the
    value graph and with ``with_grad`` the gradient graph (entries with no differentiable input have none)."""
    out = []
    for name in names or catalog.names():
        spec = catalog.get(name)
        seen = set()
        for params, case in [(spec.resolve(), None), *((spec.resolve(c.params), c) for c in spec.cases)]:
            key = json.dumps(params, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            same = case or next((c for c in spec.cases if spec.resolve(c.params) == params), spec.cases[0])
            export_dims = dict(case.export_dims if case else spec.export_dims)
            folder = name if case is None else f"{name}-{params_id(params)}"
            for grad in (False, True)[: 1 + (with_grad and bool(spec.grad_inputs(params)))]:
                out.append({"name": name, "params": params, "default": case is None, "with_grad": grad,
                            "folder": folder + ("-grad" if grad else ""), "export_dims": export_dims,
                            "test_dims": dict(same.run_dims[0])})
    return out


def write_graph(item: Mapping[str, Any], directory: str) -> dict[str, Any]:
    """Export one planned graph into ``directory/<folder>`` with its test data; its manifest entry.
    (Runs in worker processes: imports torch through the exporter.)"""
    import onnx
    from onnx import numpy_helper

    from lossgraph.parity import reference_eval

    from .parallel import export_graph

    spec = catalog.get(item["name"])
    params = item["params"]
    folder = os.path.join(directory, item["folder"])
    data = os.path.join(folder, "test_data_set_0")
    os.makedirs(data, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    seconds = export_graph(item["name"], params, item["export_dims"], item["with_grad"], path)
    model = onnx.load(path)
    meta = {p.key: p.value for p in model.metadata_props}

    inputs = spec.example_inputs(item["test_dims"], seed=TEST_SEED, params=params)
    value, grads = reference_eval(spec, inputs, params, grad=item["with_grad"])
    expected = {**value, **{f"grad_{k}": g for k, g in grads.items()}}
    declared = {i.name: i for i in spec.input_specs(params)}
    ins, outs = [], []
    for k, vi in enumerate(model.graph.input):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        _save(numpy_helper.from_array(np.asarray(inputs[vi.name], dtype=dtype), vi.name), os.path.join(data, f"input_{k}.pb"))
        dims = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
        ins.append({"name": vi.name, "dims": dims, "dtype": np.dtype(dtype).name, "domain": declared[vi.name].domain})
    rules = json.loads(meta.get("lossgraph.aggregation", "{}"))
    for k, vi in enumerate(model.graph.output):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        _save(numpy_helper.from_array(np.asarray(expected[vi.name], dtype=dtype), vi.name), os.path.join(data, f"output_{k}.pb"))
        is_grad = vi.name.startswith("grad_")
        outs.append({"name": vi.name, "dtype": np.dtype(dtype).name,
                     "aggregation": rules.get(vi.name, "none" if is_grad else "mean")})
    with open(path, "rb") as f:
        blob = f.read()
    return {
        "name": item["name"], "params": params, "default": item["default"], "with_grad": item["with_grad"],
        "folder": item["folder"], "model": f"{item['folder']}/model.onnx", "sha256": hashlib.sha256(blob).hexdigest(),
        "bytes": len(blob), "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": ins, "outputs": outs, "export_dims": item["export_dims"],
        "test_data": {"folder": f"{item['folder']}/test_data_set_0", "dims": item["test_dims"], "seed": TEST_SEED,
                      "expected": "float64 reference, cast to the output dtype"},
        "tolerance": {"rtol": spec.rtol, "atol": spec.atol, "grad_rtol_of_max": spec.grad_rtol},
        "export_seconds": round(seconds, 2),
    }


def _save(tensor: Any, path: str) -> None:
    with open(path, "wb") as f:
        f.write(tensor.SerializeToString())


def write_bundle(
    directory: str | os.PathLike,
    names: list[str] | None = None,
    *,
    with_grad: bool = False,
    jobs: int = 1,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Export the catalog (or ``names``) into ``directory`` in ``jobs`` processes; the manifest
    (also written to ``directory/manifest.json``). Needs torch (the exporter)."""
    from lossgraph._version import __version__

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    items = plan(names, with_grad)
    if jobs <= 1:
        entries = []
        for item in items:
            entries.append(write_graph(item, directory))
            if progress:
                progress(entries[-1])
    else:
        from .parallel import worker_pool

        with worker_pool(jobs) as pool:  # pyramids (a minimum size, 40-110 s an export) first
            order = sorted(range(len(items)), key=lambda i: not catalog.get(items[i]["name"]).min_sizes(items[i]["params"]))
            futures = {i: pool.submit(write_graph, items[i], directory) for i in order}
            entries = []
            for i in range(len(items)):
                entries.append(futures[i].result())
                if progress:
                    progress(entries[-1])
    import onnx
    import torch

    manifest = {
        "format": FORMAT,
        "versions": {"lossgraph": __version__, "torch": torch.__version__, "onnx": onnx.__version__},
        "with_grad": with_grad,
        "graphs": entries,
    }
    with open(os.path.join(directory, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a graph bundle folder (ResultsError-free: InputError when missing or damaged)."""
    path = os.path.join(os.fspath(directory), MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{os.fspath(directory)} is not a lossgraph bundle: no {MANIFEST}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON: {e}") from None
    if manifest.get("format") != FORMAT:
        raise InputError(f"{path}: format must be {FORMAT!r}; got {manifest.get('format')!r}")
    return manifest


def find(directory: str | os.PathLike, name: str, *, with_grad: bool = False, **params: Any) -> dict[str, Any]:
    """The manifest entry of ``name`` with ``params`` (over the defaults) in the bundle at ``directory``,
    its ``path`` added; a missing graph or a file whose sha256 differs from the manifest's raises InputError."""
    spec = catalog.get(name)
    want = spec.resolve(params)
    manifest = read_manifest(directory)
    same_name = [g for g in manifest["graphs"] if g["name"] == name]
    for g in same_name:
        if g["params"] == json.loads(json.dumps(want)) and g["with_grad"] == with_grad:
            path = os.path.join(os.fspath(directory), g["model"])
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            if digest != g["sha256"]:
                raise InputError(f"{path}: sha256 {digest[:12]}... differs from the manifest's {g['sha256'][:12]}... (file changed)")
            return {**g, "path": path}
    kinds = "gradient graph" if with_grad else "graph"
    have = "; ".join(json.dumps(g["params"], sort_keys=True) for g in same_name if g["with_grad"] == with_grad) or "none"
    raise InputError(f"bundle {os.fspath(directory)} has no {kinds} of {name} with {json.dumps(want, sort_keys=True)}; it has: {have}")


def load(directory: str | os.PathLike, name: str, *, with_grad: bool = False, providers: str = "auto", **params: Any):
    """The graph of ``name`` with ``params`` from the bundle at ``directory``, in an
    :class:`~lossgraph.export.OnnxLoss` (torch-free).

        >>> run = load("graphs/", "lovasz_softmax", per_image=True)   # doctest: +SKIP
    """
    from .runner import OnnxLoss

    return OnnxLoss(find(directory, name, with_grad=with_grad, **params)["path"], providers=providers)
