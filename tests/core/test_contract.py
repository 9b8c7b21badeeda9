# SPDX-License-Identifier: GPL-3.0-or-later
"""The contract checker: a conforming model is described; each way of breaking it gets its message."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto

from face_anything_addon.core.contract import ContractError, describe_model
from tests.contract_models import contract_metadata, make_model


def test_conforming_model_is_described(tmp_path):
    path = make_model(tmp_path / "m.onnx", mask=True, metadata=contract_metadata(
        landmarks='{"nose_tip": [0, 0.1, 0.9]}', license="CC0-1.0"))
    d = describe_model(path)
    assert (d.contract, d.patch_size, d.input_size, d.max_window) == ("1", 14, 28, 4)
    assert d.mean == (0.5, 0.5, 0.5) and d.std == (0.25, 0.25, 0.25)
    assert d.metric and d.canonical_space == "test-space" and d.has_mask
    assert d.input_type == "float32" and d.fixed_size is None
    assert d.landmarks == {"nose_tip": (0.0, 0.1, 0.9)} and d.license == "CC0-1.0"
    # and it really runs: the header reader and ONNX Runtime agree on the interface
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in s.get_outputs()],
                   s.run(None, {"images": np.zeros((1, 2, 3, 28, 42), np.float32)})))
    assert out["canonical"].shape == (1, 2, 28, 42, 3)
    np.testing.assert_allclose(out["intrinsics"][0, 1], [[42, 0, 21], [0, 42, 14], [0, 0, 1]])


def test_fixed_size_fp16_and_external_data(tmp_path):
    path = make_model(tmp_path / "m.onnx", height=28, width=56, input_type=TensorProto.FLOAT16,
                      external_data=True)
    d = describe_model(path)
    assert d.fixed_size == (28, 56) and d.input_type == "float16"
    assert d.external_files == ("m.onnx.data",)


def broken(tmp_path, **kw):
    return make_model(tmp_path / "m.onnx", **kw)


CASES = {
    "wrong input rank": (dict(rank=4), "input 'images' has rank 4"),
    "integer input": (dict(input_type=TensorProto.INT64), "input 'images' is int64"),
    "no images input": (dict(input_name="pixels"), "no input named 'images'"),
    "extra input": (dict(extra_input=True), "unexpected extra inputs ['extra']"),
    "missing output": (dict(drop_output="canonical_conf"), "missing output 'canonical_conf'"),
    "misshaped canonical": (dict(canonical_channels=4), "output 'canonical' ends in [4]"),
    "patch does not divide": (dict(height=30), "input height 30 is not a multiple of the patch size 14"),
    "input_size": (dict(metadata=contract_metadata(input_size="500")),
                   "input_size 500 is not a multiple of the patch size 14"),
    "unknown contract": (dict(metadata=contract_metadata(contract="7")),
                         "contract version 7 is unknown to this add-on"),
    "no contract": (dict(metadata={}), "not a Face Anything model"),
    "missing metadata": (dict(metadata=contract_metadata(std=None, max_window=None)),
                         "missing metadata faceanything.std, faceanything.max_window"),
    "bad mean": (dict(metadata=contract_metadata(mean="0.5,0.5")), "faceanything.mean = '0.5,0.5'"),
    "bad std": (dict(metadata=contract_metadata(std="0.2,0,0.2")), "positive numbers"),
    "bad units": (dict(metadata=contract_metadata(depth_units="inches")), "depth_units = 'inches'"),
    "bad window": (dict(metadata=contract_metadata(max_window="0")), "max_window = '0'"),
    "bad landmarks": (dict(metadata=contract_metadata(landmarks='{"a": [1, 2]}')),
                      "landmarks is not a JSON object"),
    "old opset": (dict(opset=13), "opset 13 is older than the contract's minimum 17"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_violation_has_its_message(tmp_path, case):
    kwargs, message = CASES[case]
    path = broken(tmp_path, **kwargs)
    with pytest.raises(ContractError, match="Model 'm.onnx': ") as err:
        describe_model(path)
    assert message in str(err.value)


def test_file_level_errors(tmp_path):
    good = make_model(tmp_path / "m.onnx")
    data = good.read_bytes()

    with pytest.raises(ContractError, match="no such file"):
        describe_model(tmp_path / "absent.onnx")
    (tmp_path / "text.onnx").write_text("this is a README, not a model\n" * 20)
    with pytest.raises(ContractError, match="not an ONNX model file"):
        describe_model(tmp_path / "text.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ContractError, match="not an ONNX model file"):
        describe_model(tmp_path / "empty.onnx")
    for cut in (len(data) // 2, len(data) - 3):
        (tmp_path / "cut.onnx").write_bytes(data[:cut])
        with pytest.raises(ContractError, match="truncated"):
            describe_model(tmp_path / "cut.onnx")


def test_external_data_missing_or_short(tmp_path):
    path = make_model(tmp_path / "m.onnx", external_data=True)
    weights = tmp_path / "m.onnx.data"
    blob = weights.read_bytes()
    weights.write_bytes(blob[:100])
    with pytest.raises(ContractError, match="external-data file 'm.onnx.data' is truncated"):
        describe_model(path)
    weights.unlink()
    with pytest.raises(ContractError, match="'m.onnx.data' that is missing: keep it in the same folder"):
        describe_model(path)
