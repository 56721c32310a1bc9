"""Write the runtime reproducers in this folder (see README.md): one tiny ONNX graph per runtime
fault found by the runtime matrix, in the model-zoo layout (``NAME/model.onnx``,
``NAME/test_data_set_0/input_0.pb``, ``output_0.pb``: the output the ONNX spec gives, from NumPy).

    python tests/data/make_reproducers.py
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def _write(name: str, nodes, inputs, outputs, feeds, expected, initializers=()) -> None:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="lossgraph-reproducer",
                              ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    data = os.path.join(HERE, name, "test_data_set_0")
    os.makedirs(data, exist_ok=True)
    onnx.save(model, os.path.join(HERE, name, "model.onnx"))
    for k, (i, x) in enumerate(zip(inputs, feeds)):
        onnx.save_tensor(numpy_helper.from_array(x, i.name), os.path.join(data, f"input_{k}.pb"))
    for k, (o, y) in enumerate(zip(outputs, expected)):
        onnx.save_tensor(numpy_helper.from_array(y, o.name), os.path.join(data, f"output_{k}.pb"))


def logsoftmax_underflow() -> None:
    """LogSoftmax of logits more than ~87 below the row maximum: log(softmax) underflows (tract:
    about -87.3, then -inf; onnx's reference evaluator: -inf); the exact value is x - logsumexp(x)."""
    x = np.array([[0.0, -50.0, -88.0, -100.0, -200.0]], np.float32)
    m = x.max(1, keepdims=True)
    y = (x - m - np.log(np.exp(x - m).sum(1, keepdims=True))).astype(np.float32)
    _write("logsoftmax_underflow", [helper.make_node("LogSoftmax", ["x"], ["y"], axis=1)],
           [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "C"])],
           [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "C"])], [x], [y])


def constantofshape_default_dtype() -> None:
    """ConstantOfShape without ``value``: the spec's default is a float32 0; tract types it float64,
    and its analysis fails at the MatMul with a float32 weight."""
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
    w = np.array([[1.0, -1.0], [0.5, 2.0]], np.float32)
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("ConstantOfShape", ["s"], ["z"]),
             helper.make_node("Add", ["z", "x"], ["xz"]), helper.make_node("MatMul", ["xz", "w"], ["y"])]
    _write("constantofshape_default_dtype", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
           [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [x], [x @ w],
           [numpy_helper.from_array(w, "w")])


def pad_negative() -> None:
    """Pad with negative pads (a crop, legal ONNX since opset 11): onnx's reference evaluator raises
    "index can't contain negative values"."""
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    pads = numpy_helper.from_array(np.array([-1, -1, -1, -1], np.int64), "pads")
    _write("pad_negative", [helper.make_node("Pad", ["x", "pads"], ["y"])],
           [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["H", "W"])],
           [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["H2", "W2"])], [x], [x[1:-1, 1:-1]], [pads])


def reducesum_long_axis() -> None:
    """ReduceSum of 16,384 float32 values (uniform in [0, 1), seed 0) over the innermost axis alone, and
    of the same values as 128x128 over two axes. tract's sum over the innermost axis alone is the
    sequential float32 running sum (bit for bit): 4.8e-6 off (relative); over two axes 1.4e-7;
    onnxruntime 8e-8, OpenVINO 2e-8, NumPy's pairwise sum 3.9e-8 on both."""
    x = np.random.default_rng(0).random((1, 16384), dtype=np.float32)
    total = x.astype(np.float64).sum(1).astype(np.float32)
    axes1 = numpy_helper.from_array(np.array([1], np.int64), "axes1")
    axes12 = numpy_helper.from_array(np.array([1, 2], np.int64), "axes12")
    square = numpy_helper.from_array(np.array([-1, 128, 128], np.int64), "square")
    nodes = [helper.make_node("ReduceSum", ["x", "axes1"], ["y_one_axis"], keepdims=0),
             helper.make_node("Reshape", ["x", "square"], ["x_square"]),
             helper.make_node("ReduceSum", ["x_square", "axes12"], ["y_two_axes"], keepdims=0)]
    _write("reducesum_long_axis", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16384])],
           [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N"]) for y in ("y_one_axis", "y_two_axes")],
           [x], [total, total], [axes1, axes12, square])


if __name__ == "__main__":
    logsoftmax_underflow()
    constantofshape_default_dtype()
    pad_negative()
    reducesum_long_axis()
