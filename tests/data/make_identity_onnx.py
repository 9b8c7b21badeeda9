# SPDX-License-Identifier: GPL-3.0-or-later
"""Regenerates identity.onnx: the smallest real ONNX model (y = Identity(x), float32 [1, 3]).

Committed so that environments without the `onnx` package (the Blender 4.2 one) can still run a real
ONNX Runtime session. Run with the development environment: .venv/bin/python tests/data/make_identity_onnx.py
"""
from pathlib import Path

import onnx
from onnx import TensorProto, helper

x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, Path(__file__).with_name("identity.onnx"))
