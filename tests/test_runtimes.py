"""The catalog's graphs in runtimes other than onnxruntime: OpenVINO, onnx's reference evaluator, tract.

Every parity case's value and gradient graph (the session's exports, shared with test_catalog_parity:
no extra export) runs in each runtime at the case's first run dims and is compared, like the parity
check, with torch (value graph) and the float64 reference (gradient graph). Known runtime faults
(``KNOWN_FAILURES``) are strict expected failures with their cause: a runtime that starts passing
one fails here until the entry goes. The reproducers in tests/data show each fault on a tiny graph.
Also: the runtime adapters, the matrix and the graph bundle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from lossgraph import catalog, matrix
from lossgraph.export import runtimes
from lossgraph.export.bundle import find, load, plan, write_graph
from lossgraph.parity import Row, compare, eager_results, record_graphs

OTHERS = ("openvino", "onnx-reference", "tract")
DATA = os.path.join(os.path.dirname(__file__), "data")


def _params():
    for name in catalog.names():
        spec = catalog.get(name)
        for k, case in enumerate(spec.cases):
            graphs = ("value", "gradient") if spec.grad_inputs(case.params) else ("value",)
            for rt in OTHERS:
                for g in graphs:
                    key = (rt, name, g)
                    why = runtimes.KNOWN_FAILURES.get(key) if key not in runtimes.LARGE_ONLY else None
                    marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
                    yield pytest.param(name, k, rt, g, marks=marks, id=f"{name}-{k}-{rt}-{g}")


@pytest.mark.parametrize("name,case,runtime,graph", list(_params()))
def test_graph_in_runtime(name, case, runtime, graph, graphs):
    spec = catalog.get(name)
    case = spec.cases[case]
    params = spec.resolve(case.params)
    loaded = runtimes.load(graphs.get(spec, params, case.export_dims, graph == "gradient"), runtime)
    inputs = spec.example_inputs(case.run_dims[0], seed=1, params=params)
    row = Row(name, dict(case.params), dict(case.run_dims[0]), dict(case.export_dims), runtime=runtime)
    exp = eager_results(spec, params, inputs, row)
    out = loaded.run(**inputs)
    record_graphs(spec, params, row, exp, out if graph == "value" else None, out if graph == "gradient" else None)
    assert row.ok, "; ".join(row.failures)
    assert ("onnx~torch" if graph == "value" else "grad-graph value~ref") in row.errors  # it really compared


def test_known_failures_name_real_graphs():
    for rt, name, graph in runtimes.KNOWN_FAILURES:
        assert rt in OTHERS and graph in ("value", "gradient")
        assert graph == "value" or catalog.get(name).grad_inputs()


# --- upstream reproducers: each runtime fault on a tiny graph --------------------------------------


def _repro(name: str) -> tuple[str, dict[str, np.ndarray], list[np.ndarray]]:
    """A reproducer's model path, inputs and the outputs the ONNX spec gives (model-zoo layout)."""
    folder = os.path.join(DATA, name)
    model = onnx.load(os.path.join(folder, "model.onnx"))
    data = os.path.join(folder, "test_data_set_0")
    feeds = {i.name: numpy_helper.to_array(onnx.load_tensor(os.path.join(data, f"input_{k}.pb"))) for k, i in enumerate(model.graph.input)}
    outs = [numpy_helper.to_array(onnx.load_tensor(os.path.join(data, f"output_{k}.pb"))) for k in range(len(model.graph.output))]
    return os.path.join(folder, "model.onnx"), feeds, outs


def _agrees(path: str, runtime: str, feeds, expected) -> None:
    got = list(runtimes.load(path, runtime).run(**feeds).values())
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype, f"dtype {g.dtype}, the spec gives {e.dtype}"
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,runtime,why", [pytest.param(*r, marks=pytest.mark.xfail(strict=True, reason=r[2]), id=f"{r[0]}-{r[1]}")
                                              for r in runtimes.REPRODUCERS])
def test_reproducer_still_fails_upstream(name, runtime, why):
    """The faulty runtime gives the spec's output: expected to fail until the runtime is fixed."""
    path, feeds, expected = _repro(name)
    _agrees(path, runtime, feeds, expected)


@pytest.mark.parametrize("name", sorted({r[0] for r in runtimes.REPRODUCERS}))
def test_reproducer_is_valid_and_right_in_onnxruntime_and_openvino(name):
    """The reproducers are valid graphs that onnxruntime and OpenVINO run as the spec says."""
    path, feeds, expected = _repro(name)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    for rt in ("onnxruntime", "openvino"):
        _agrees(path, rt, feeds, expected)


def test_a_tract_panic_is_an_error_of_that_graph_only():
    """tract aborts the process it runs in on a panic: the adapter's child process dies, not pytest,
    the panic's message is the error, and the next graph runs in a new child."""
    path, feeds, _ = _repro("pad_negative")
    with pytest.raises(RuntimeError, match=r"tract aborted its process .*panic: ndarray: could not broadcast"):
        runtimes.load(path, "tract").run(**feeds)
    path, feeds, _ = _repro("constantofshape_default_dtype")
    with pytest.raises(RuntimeError, match="MatMul|analyse|Failed"):  # the other reproducer: an ordinary error
        runtimes.load(path, "tract").run(**feeds)
    path, feeds, _ = _repro("logsoftmax_underflow")
    got = runtimes.load(path, "tract").run(**feeds)
    assert np.isfinite(list(got.values())[0][0, :4]).all()  # it ran (and still shows its own fault at -inf)


# --- the adapters and the matrix --------------------------------------------------------------------


def test_unknown_runtime_is_a_one_line_error():
    with pytest.raises(ValueError, match="--runtime takes names from onnxruntime, openvino"):
        runtimes.parse_runtimes("onnxruntime,tensorrt")


def test_openvino_runs_at_f32_precision(graphs):
    """The adapter asks OpenVINO for f32: its CPU default may be bf16 (5.5 % off on the Laplacian gradient)."""
    spec = catalog.get("soft_dice")
    case = spec.cases[0]
    loaded = runtimes.load(graphs.get(spec, spec.resolve(case.params), case.export_dims, False), "openvino")
    assert str(loaded.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")


def test_matrix_cells_and_readme_block(tmp_path):
    ok = Row("dice", {}, {"B": 1}, None, {"onnx~torch": 0.0, "grad-graph value~ref": 0.0}, runtime="tract")
    bad = Row("dice", {}, {"B": 2}, None, {"onnx~torch": 0.0, "onnx grad~ref": float("inf")}, False,
              ["gradient graph: tract cannot load the graph: boom"], runtime="tract")
    metric = Row("iou", {}, {"B": 1}, None, {"onnx~torch": 0.0}, runtime="tract")
    assert matrix.cell_status([ok, bad], "value") == "pass"
    assert matrix.cell_status([ok, bad], "gradient") == "tract cannot load the graph: boom"
    assert matrix.cell_status([metric], "gradient") is None
    text = matrix.to_markdown([ok, bad, metric], known={("tract", "dice", "gradient"): "tract bug X"})
    assert "| dice | `defaults` | pass / fail [1] |" in text and "| iou | `defaults` | pass / - |" in text
    assert "1. tract bug X" in text and "tract 2/3" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{matrix.BEGIN}\nold\n{matrix.END}\n\nafter\n")
    matrix.write([ok], str(readme))
    body = readme.read_text()
    assert "old" not in body and body.endswith("after\n") and body.count(matrix.BEGIN) == 1


def test_readme_matrix_has_every_entry_and_runtime():
    """The README block lists every catalog parity case in the four runtimes, with no unexplained failure."""
    text = open(os.path.join(os.path.dirname(DATA), "..", "README.md")).read()
    block = text.split(matrix.BEGIN)[1].split(matrix.END)[0]
    assert "| loss | params | onnxruntime | openvino | onnx-reference | tract |" in block
    rows = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| loss")]
    assert len(rows) == sum(len({json.dumps(c.params, sort_keys=True) for c in catalog.get(n).cases}) for n in catalog.names())
    assert "unexplained" not in block


# --- the graph bundle -------------------------------------------------------------------------------


def test_bundle_plan_covers_defaults_and_cases():
    items = plan(["dice"], with_grad=True)
    spec = catalog.get("dice")
    sets = {json.dumps(spec.resolve(c.params), sort_keys=True) for c in spec.cases} | {json.dumps(spec.resolve(), sort_keys=True)}
    assert len(items) == 2 * len(sets) and len({i["folder"] for i in items}) == len(items)
    assert {i["folder"] for i in items if i["default"]} == {"dice", "dice-grad"}
    assert plan(["iou"], with_grad=True) == plan(["iou"], with_grad=False)  # a metric: no gradient graph


def test_bundle_entry_test_data_and_torch_free_load(tmp_path):
    """A bundle graph with its model-zoo test data: onnxruntime's outputs equal the stored reference
    outputs (value and gradient); ``load`` finds it by parameters without importing torch."""
    (item,) = [i for i in plan(["soft_dice"], with_grad=True) if i["default"] and i["with_grad"]]
    entry = write_graph(item, str(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "lossgraph-bundle/1", "graphs": [entry]}))
    data = tmp_path / entry["test_data"]["folder"]
    ins = [numpy_helper.to_array(onnx.load_tensor(str(data / f"input_{k}.pb"))) for k in range(len(entry["inputs"]))]
    outs = [numpy_helper.to_array(onnx.load_tensor(str(data / f"output_{k}.pb"))) for k in range(len(entry["outputs"]))]
    got = runtimes.load(tmp_path / entry["model"], "onnxruntime").run(**{i["name"]: x for i, x in zip(entry["inputs"], ins)})
    spec = catalog.get("soft_dice")
    err, ok = compare(got["loss"], outs[0], spec.rtol, spec.atol)
    assert ok, err
    err, ok = compare(got[entry["outputs"][1]["name"]], outs[1], spec.grad_rtol, spec.grad_rtol * np.abs(outs[1]).max())
    assert ok, err
    assert [o["name"] for o in entry["outputs"]] == [o.name for o in onnx.load(str(tmp_path / entry["model"])).graph.output]
    assert entry["opset"] >= 18 and len(entry["sha256"]) == 64
    code = (f"import sys, lossgraph.export as e; r = e.load({str(tmp_path)!r}, 'soft_dice', with_grad=True, providers='cpu');"
            "print(r.loss_name, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["soft_dice", "False"]
    with pytest.raises(ValueError, match="has no graph of soft_dice"):
        find(tmp_path, "soft_dice", smooth=3.0)
    (tmp_path / entry["model"]).write_bytes((tmp_path / entry["model"]).read_bytes() + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        load(tmp_path, "soft_dice", with_grad=True)


def test_exported_model_names_its_producer(graphs):
    from lossgraph import __version__

    spec = catalog.get("soft_dice")
    model = onnx.load(graphs.get(spec, spec.resolve(spec.cases[0].params), spec.cases[0].export_dims, False))
    meta = {p.key: p.value for p in model.metadata_props}
    assert (model.producer_name, model.producer_version) == ("lossgraph", __version__)
    assert model.doc_string.startswith("lossgraph soft_dice {") and "torch_version" in "".join(meta)
