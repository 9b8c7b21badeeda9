# SPDX-License-Identifier: GPL-3.0-or-later
"""ONNX export of the tiny random config: the add-on's contract checker accepts it, ONNX Runtime
opens it, and its outputs match torch (dynamic N, S, H, W; fp32 and fp16; fixed size)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from face_anything_addon.core.contract import describe_model  # noqa: E402
from face_anything_addon.core.session import open_session  # noqa: E402
from training.export import TOLERANCE, export, parity  # noqa: E402
from training.network import FaceAnythingNet, get_config  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return FaceAnythingNet(get_config("test-tiny")).eval()


def test_fp32_export_passes_the_contract_and_matches_torch(tiny, tmp_path):
    path = export(tiny, tmp_path / "tiny.onnx", 56, name="tiny test")
    desc = describe_model(path)
    assert desc.contract == "1" and desc.patch_size == 14 and desc.input_size == 56
    assert desc.depth_units == "metric" and desc.canonical_space == "makehuman-hm08-head-v1"
    assert desc.has_mask and desc.fixed_size is None and desc.input_type == "float32"
    assert desc.max_window == 8 and desc.license == "GPL-3.0-or-later"
    assert len(desc.landmarks) > 10  # from the bundled template
    session = open_session(desc, "CPU")
    assert session.providers == ["CPUExecutionProvider"]
    # dynamic N, S, H, W: other sizes than the export's dummy input
    for size, n, s in (((56, 56), 1, 2), ((42, 70), 2, 3), ((28, 28), 1, 1)):
        errors = parity(tiny, path, size, n=n, s=s)
        assert max(errors.values()) < TOLERANCE["float32"], (size, errors)


def test_fp16_export_matches_torch_within_its_tolerance(tiny, tmp_path):
    path = export(tiny, tmp_path / "tiny16.onnx", 56, fp16=True, landmarks=False)
    desc = describe_model(path)
    assert desc.input_type == "float16"
    open_session(desc, "CPU")
    errors = parity(tiny, path, (56, 42), n=1, s=2)
    assert max(errors.values()) < TOLERANCE["float16"], errors
    assert next(tiny.parameters()).dtype == torch.float32  # the export leaves the model in fp32


def test_fixed_size_export(tiny, tmp_path):
    path = export(tiny, tmp_path / "fixed.onnx", 42, fixed_size=True, landmarks=False)
    desc = describe_model(path)
    assert desc.fixed_size == (42, 42)
    session = open_session(desc, "CPU")
    out = session.run(torch.zeros(2, 3, 3, 42, 42).numpy())
    assert out["canonical"].shape == (2, 3, 42, 42, 3)
