"""The offline CUDA audit: every node of every catalog graph has a kernel in onnxruntime's CUDA provider.

The rules are checked on hand-built one-node graphs against facts from onnxruntime's own operator
documentation (docs/OperatorKernels.md, CUDAExecutionProvider section: Acos and
SoftmaxCrossEntropyLoss absent, CumSum 14+ with T including int32, Clip 13+ without int32,
GatherND naming its indices constraint ``indices``, ReduceSum 13+ with double), independent of the
vendored table the audit reads; then the whole catalog goes through ``lossgraph inspect --cuda``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from lossgraph.export.cuda_audit import TABLE, audit_model, kernel_table
from onnx import TensorProto, helper

from lossgraph import catalog
from lossgraph.cli import main as cli_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAPHS = [(n, k, g) for n in catalog.names() for k in range(len(catalog.get(n).cases)) for g in (False, True)]


def one_node(op, inputs, output_type, attrs=None, opset=18, domain="", consts=()):
    """A graph of one ``op`` node on typed inputs ``[(name, TensorProto type)]``, plus Constant nodes."""
    nodes = [helper.make_node("Constant", [], [name], value=helper.make_tensor(name, t, [], [v])) for name, t, v in consts]
    names = [n for n, _ in inputs] + [c[0] for c in consts]
    nodes.append(helper.make_node(op, names, ["y"], name=f"{op.lower()}_node", domain=domain, **(attrs or {})))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, None) for n, t in inputs],
                              [helper.make_tensor_value_info("y", output_type, None)])
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def only_node(model):
    audit = audit_model(model)
    return audit.nodes[-1]


def test_op_without_cuda_kernel_falls_back():
    node = only_node(one_node("Acos", [("x", TensorProto.FLOAT)], TensorProto.FLOAT))
    assert not node.on_cuda and "no CUDA kernel for Acos" in node.reason


def test_softmax_cross_entropy_loss_falls_back():
    m = one_node("SoftmaxCrossEntropyLoss", [("x", TensorProto.FLOAT), ("t", TensorProto.INT64)], TensorProto.FLOAT)
    assert not only_node(m).on_cuda


def test_int32_cumsum_has_a_kernel():
    node = only_node(one_node("CumSum", [("x", TensorProto.INT32), ("axis", TensorProto.INT64)], TensorProto.INT32))
    assert node.on_cuda and node.since == 14


def test_type_constraint_mapped_to_its_inputs():
    # Clip 13+: T = double, float, float16, int64, int8, uint64, uint8 on CUDA; min/max share T
    ok = one_node("Clip", [("x", TensorProto.INT64)], TensorProto.INT64, consts=[("lo", TensorProto.INT64, 0)])
    bad = one_node("Clip", [("x", TensorProto.INT32)], TensorProto.INT32, consts=[("lo", TensorProto.INT32, 0)])
    assert only_node(ok).on_cuda
    node = only_node(bad)
    assert not node.on_cuda and node.reason.startswith("type: T = int32")
    assert node.inputs == ["tensor(int32)", "tensor(int32)"]  # the Constant's type is known too


def test_variadic_input_checked_on_its_first_argument():
    # Concat 13+ on CUDA: T has no string (the CPU kernel has)
    ok = one_node("Concat", [("a", TensorProto.FLOAT), ("b", TensorProto.FLOAT), ("c", TensorProto.FLOAT)], TensorProto.FLOAT,
                  attrs={"axis": 0})
    bad = one_node("Concat", [("a", TensorProto.STRING), ("b", TensorProto.STRING)], TensorProto.STRING, attrs={"axis": 0})
    assert only_node(ok).on_cuda
    assert only_node(bad).reason.startswith("type: T = string")


def test_constraint_named_after_a_formal_input():
    # GatherND's kernel constrains "indices" (a formal input name), not a type string
    m = one_node("GatherND", [("x", TensorProto.DOUBLE), ("i", TensorProto.INT64)], TensorProto.DOUBLE)
    assert only_node(m).on_cuda


def test_since_version_decides_the_kernel():
    # at opset 18 ReduceSum is still ReduceSum-13 and ReduceMean is ReduceMean-18; both have double kernels
    node = only_node(one_node("ReduceSum", [("x", TensorProto.DOUBLE), ("axes", TensorProto.INT64)], TensorProto.DOUBLE))
    assert node.since == 13 and node.on_cuda
    node = only_node(one_node("ReduceMean", [("x", TensorProto.DOUBLE), ("axes", TensorProto.INT64)], TensorProto.DOUBLE))
    assert node.since == 18 and node.on_cuda
    # onnxruntime matches an open range "6+" only at its start: Elu-22 (opset 22) is not Elu-6
    assert only_node(one_node("Elu", [("x", TensorProto.FLOAT)], TensorProto.FLOAT)).on_cuda
    node = only_node(one_node("Elu", [("x", TensorProto.FLOAT)], TensorProto.FLOAT, opset=22))
    assert node.since == 22 and not node.on_cuda and "version 22" in node.reason


def test_capability_rule_select_last_index():
    m = one_node("ArgMax", [("x", TensorProto.FLOAT)], TensorProto.INT64, attrs={"select_last_index": 1, "axis": 0})
    node = only_node(m)
    assert not node.on_cuda and "select_last_index" in node.reason
    assert only_node(one_node("ArgMax", [("x", TensorProto.FLOAT)], TensorProto.INT64, attrs={"axis": 0})).on_cuda


def test_vendored_table_is_the_pinned_build():
    """The table names the onnxruntime in use, and reading the installed build again gives it exactly."""
    table = kernel_table()
    assert table.version == onnxruntime.__version__, "regenerate: python benchmarks/cuda/kernel_table.py --stub -o export/cuda_kernels.json"
    assert sum(map(len, table.kernels.values())) > 1000


def test_kernel_table_regenerates_identically(tmp_path):
    """kernel_table.py --stub reads the installed provider library again: the same table as vendored."""
    out = tmp_path / "k.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "cuda", "kernel_table.py"), "--stub", "-o", str(out),
                        "--compare", TABLE], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(TABLE) as f:
        assert json.loads(out.read_text())["kernels"] == json.load(f)["kernels"]


@pytest.mark.parametrize("name,case,grad", GRAPHS)
def test_catalog_graph_runs_on_cuda(name, case, grad, graphs, capsys):
    """lossgraph inspect --cuda over every exported graph (value and gradient): no CPU fallback."""
    spec = catalog.get(name)
    c = spec.cases[case]
    path = graphs.get(spec, spec.resolve(c.params), c.export_dims, grad)
    code = cli_main(["inspect", path, "--cuda", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["nodes"] == len(onnx.load(path).graph.node) > 0
    assert code == 0 and report["fallbacks"] == [], report["fallbacks"]


def test_inspect_cuda_lists_fallbacks(tmp_path, capsys):
    path = tmp_path / "acos.onnx"
    onnx.save(one_node("Acos", [("x", TensorProto.FLOAT)], TensorProto.FLOAT), path)
    assert cli_main(["inspect", str(path), "--cuda"]) == 1
    out = capsys.readouterr().out
    assert "CPU  Acos-7(float): no CUDA kernel for Acos" in out and "1 of 1 nodes would fall back" in out


def test_audit_is_torch_free(tmp_path):
    path = tmp_path / "cumsum.onnx"
    onnx.save(one_node("CumSum", [("x", TensorProto.INT32), ("axis", TensorProto.INT64)], TensorProto.INT32), path)
    code = ("import sys; from lossgraph.export.cuda_audit import audit_file; "
            f"a = audit_file({str(path)!r}); assert not a.fallbacks; assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_audit_agrees_with_onnxruntime_cpu_on_types():
    """Sanity of the type bookkeeping: the types the audit infers are the ones onnxruntime reports."""
    m = one_node("CumSum", [("x", TensorProto.INT32), ("axis", TensorProto.INT64)], TensorProto.INT32)
    sess = onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": np.arange(4, dtype=np.int32), "axis": np.array(0)})[0]
    assert y.dtype == np.int32 and only_node(m).outputs == ["tensor(int32)"]
