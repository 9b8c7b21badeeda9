# SPDX-License-Identifier: GPL-3.0-or-later
"""Tiny contract-conforming ONNX models, built with onnx's helpers, for tests.

The graph computes real, checkable values from its input:
  depth          = (depth_scale * (1 + mean over RGB of the normalised input)**2 + 0.5)
                   * exp(window_drift * mean of the whole window)   (window_drift: default 0)
  depth_conf     = 1 + exp(mean)            canonical_conf = depth_conf
  canonical      = the normalised input, channels last
  intrinsics     = [[W, 0, W/2], [0, W, H/2], [0, 0, 1]] for each frame (focal = input width)
  mask           = sigmoid(mean)            (only with mask=True)
Every knob breaks one part of the contract so the checker's errors can be tested.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

T = TensorProto


def contract_metadata(**overrides) -> dict[str, str]:
    meta = {"contract": "1", "patch_size": "14", "input_size": "28", "mean": "0.5,0.5,0.5",
            "std": "0.25,0.25,0.25", "max_window": "4", "depth_units": "metric",
            "canonical_space": "test-space", "name": "tiny test model"}
    meta.update(overrides)
    return {f"faceanything.{k}": v for k, v in meta.items() if v is not None}


def make_model(path: Path, *, height=None, width=None, input_type=T.FLOAT, rank=5,
               metadata: dict | None = None, drop_output: str = "", canonical_channels: int = 3,
               mask: bool = False, external_data: bool = False, opset: int = 17,
               extra_input: bool = False, input_name: str = "images",
               depth_scale: float = 1.0, window_drift: float = 0.0) -> Path:
    dims = ["N", "S", 3, height or "H", width or "W"][:rank] if rank <= 5 else \
        ["N", "S", 3, "H", "W"] + [1] * (rank - 5)
    inputs = [helper.make_tensor_value_info(input_name, input_type, dims)]
    nodes = [helper.make_node("Cast", [input_name], ["x"], to=T.FLOAT)]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("extra", T.FLOAT, [1]))
    scale = np.full(256, depth_scale, np.float32)  # an initializer big enough to go external
    inits = [numpy_helper.from_array(scale, "scale_table"),
             numpy_helper.from_array(np.array([0], np.int64), "i0"),
             numpy_helper.from_array(np.array([1.0], np.float32), "one"),
             numpy_helper.from_array(np.array([0.5], np.float32), "half"),
             numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
             numpy_helper.from_array(np.array([3, 3], np.int64), "k33"),
             numpy_helper.from_array(np.array([0], np.int64), "s0"),
             numpy_helper.from_array(np.array([2], np.int64), "s2"),
             numpy_helper.from_array(np.array([3], np.int64), "i3"),
             numpy_helper.from_array(np.array([4], np.int64), "i4"),
             numpy_helper.from_array(np.array([canonical_channels], np.int64), "channels"),
             numpy_helper.from_array(np.array([window_drift], np.float32), "drift"),
             numpy_helper.from_array(np.array([4], np.int64), "sq")]
    nodes += [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[2], keepdims=0),
        helper.make_node("Gather", ["scale_table", "i0"], ["s"]),
        helper.make_node("Add", ["m", "one"], ["m1"]),
        helper.make_node("Mul", ["m1", "m1"], ["m2"]),
        helper.make_node("Mul", ["m2", "s"], ["m3"]),
        helper.make_node("Add", ["m3", "half"], ["d0"]),
        # depth scale that depends on the whole window (as a relative-depth network's does):
        # d0 * exp(window_drift * mean of the window)
        helper.make_node("ReduceMean", ["x"], ["wm"], axes=[1, 2, 3, 4], keepdims=1),
        helper.make_node("Mul", ["wm", "drift"], ["wd"]),
        helper.make_node("Exp", ["wd"], ["wscale"]),
        helper.make_node("Squeeze", ["wscale", "sq"], ["wscale4"]),
        helper.make_node("Mul", ["d0", "wscale4"], ["depth"]),
        helper.make_node("Exp", ["m"], ["em"]),
        helper.make_node("Add", ["em", "one"], ["depth_conf"]),
        helper.make_node("Identity", ["depth_conf"], ["canonical_conf"]),
        helper.make_node("Transpose", ["x"], ["ct"], perm=[0, 1, 3, 4, 2]),
        helper.make_node("Slice", ["ct", "s0", "channels", "i4"], ["canonical"]),
        helper.make_node("Sigmoid", ["m"], ["mask"]),
        # intrinsics from the input's shape
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "s0", "s2"], ["ns"]),
        helper.make_node("Gather", ["shape", "i3"], ["h_i"]),
        helper.make_node("Gather", ["shape", "i4"], ["w_i"]),
        helper.make_node("Cast", ["h_i"], ["h"], to=T.FLOAT),
        helper.make_node("Cast", ["w_i"], ["w"], to=T.FLOAT),
        helper.make_node("Mul", ["w", "half"], ["cx"]),
        helper.make_node("Mul", ["h", "half"], ["cy"]),
        helper.make_node("Concat", ["w", "zero", "cx", "zero", "w", "cy", "zero", "zero", "one"],
                         ["k9"], axis=0),
        helper.make_node("Reshape", ["k9", "k33"], ["k"]),
        helper.make_node("Concat", ["ns", "k33"], ["kshape"], axis=0),
        helper.make_node("Expand", ["k", "kshape"], ["intrinsics"]),
    ]
    maps = ["N", "S", height or "H", width or "W"]
    outputs = {
        "depth": helper.make_tensor_value_info("depth", T.FLOAT, maps),
        "depth_conf": helper.make_tensor_value_info("depth_conf", T.FLOAT, maps),
        "canonical": helper.make_tensor_value_info("canonical", T.FLOAT,
                                                   maps + [canonical_channels]),
        "canonical_conf": helper.make_tensor_value_info("canonical_conf", T.FLOAT, maps),
        "intrinsics": helper.make_tensor_value_info("intrinsics", T.FLOAT, ["N", "S", 3, 3]),
    }
    if mask:
        outputs["mask"] = helper.make_tensor_value_info("mask", T.FLOAT, maps)
    outputs.pop(drop_output, None)
    graph = helper.make_graph(nodes, "tiny_face_anything", inputs, list(outputs.values()), inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    meta = contract_metadata() if metadata is None else metadata
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    path = Path(path)
    if external_data:
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, path)
    return path
