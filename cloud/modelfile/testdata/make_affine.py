"""Makes affine.onnx: y = x * [1, 2, 3] + 0.5, x float32 [batch, 3], opset 13.

Run with Debian's python3 and python3-onnx: /usr/bin/python3 make_affine.py
"""
import numpy as np
import onnx
from onnx import TensorProto, helper

x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
w = helper.make_tensor("w", TensorProto.FLOAT, [3], np.array([1.0, 2.0, 3.0], dtype=np.float32).tobytes(), raw=True)
b = helper.make_tensor("b", TensorProto.FLOAT, [3], [0.5, 0.5, 0.5])
g = helper.make_graph(
    [helper.make_node("Mul", ["x", "w"], ["t"], name="mul"), helper.make_node("Add", ["t", "b"], ["y"], name="add")],
    "affine", [x], [y], [w, b])
m = helper.make_model(g, producer_name="mlfleet-testdata", opset_imports=[helper.make_opsetid("", 13)])
m.ir_version = 8
onnx.checker.check_model(m)
onnx.save(m, "affine.onnx")
