# SPDX-License-Identifier: GPL-3.0-or-later
"""ONNX export of the tiny random config: the add-on's contract checker accepts it, ONNX Runtime
opens it, and its outputs match torch (dynamic N, S, H, W; fp32 and fp16; fixed size; mirror
averaging)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from face_anything_addon.core.contract import describe_model  # noqa: E402
from face_anything_addon.core.session import open_session  # noqa: E402
from training.export import TEMPLATE, TOLERANCE, export, parity, spread  # noqa: E402
from training.network import FaceAnythingNet, get_config  # noqa: E402
from training.network.mirror import MirrorAveraged, symmetric_template  # noqa: E402


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


@pytest.fixture()
def camera_aware():
    """The tiny config with its camera head's last layer randomised (untrained, it predicts the
    image centre whatever the input, which would hide a wrong principal-point rule)."""
    torch.manual_seed(1)
    net = FaceAnythingNet(get_config("test-tiny")).eval()
    torch.nn.init.normal_(net.camera.mlp[-1].weight, std=0.5)
    torch.nn.init.normal_(net.camera.mlp[-1].bias, std=0.2)
    return net


def test_mirror_averaging_brings_mirrored_predictions_back_correctly(camera_aware):
    """On a left-right symmetric frame the averaged prediction must itself be symmetric: depth
    and mask mirror onto themselves, canonical x onto its negative (the template is symmetric
    about x = 0), the principal point lies on the centre line."""
    net = MirrorAveraged(camera_aware).eval()
    half = torch.randn(1, 2, 3, 28, 21)
    images = torch.cat([half, half.flip(-1)], -1)  # 42 wide, symmetric
    with torch.no_grad():
        out = net(images)
        plain = camera_aware(images)
    torch.testing.assert_close(out["depth"], out["depth"].flip(-1))
    torch.testing.assert_close(out["mask"], out["mask"].flip(-1))
    c = out["canonical"]
    torch.testing.assert_close(c[..., 0], -c[..., 0].flip(-1))
    torch.testing.assert_close(c[..., 1:], c[..., 1:].flip(-2))
    assert torch.allclose(out["intrinsics"][..., 0, 2], torch.tensor(21.0), atol=1e-4)
    # the network alone is neither: the averaging did the work
    assert not torch.allclose(plain["canonical"][..., 0], -plain["canonical"][..., 0].flip(-1),
                              atol=1e-3)
    assert not torch.allclose(plain["intrinsics"][..., 0, 2], torch.tensor(21.0), atol=1e-2)


def test_mirror_averaged_export_matches_torch(camera_aware, tmp_path):
    net = MirrorAveraged(camera_aware).eval()
    path = export(net, tmp_path / "mirror.onnx", 42, landmarks=False)
    assert describe_model(path).input_size == 42
    for size, n, s in (((42, 42), 1, 2), ((28, 56), 2, 1)):
        errors = parity(net, path, size, n=n, s=s)
        assert max(errors.values()) < TOLERANCE["float32"], (size, errors)


def test_the_bundled_template_is_symmetric_and_a_lopsided_one_is_not():
    canonical = np.load(TEMPLATE)["canonical"]
    assert symmetric_template(canonical)
    lopsided = canonical.copy()
    lopsided[np.argmax(lopsided[:, 0]), 0] += 0.01
    assert not symmetric_template(lopsided)


def test_fp16_parity_judges_near_constant_outputs_at_fp16_precision(tmp_path):
    """A trained model's confidences hardly vary on the parity check's noise input (1.0000 to
    1.0001: below fp16's step of 1e-3 at 1.0). Such an output is judged against 10 fp16 steps
    of its magnitude, not against a spread fp16 cannot represent; a real error still fails."""
    torch.manual_seed(0)
    net = FaceAnythingNet(get_config("test-tiny")).eval()
    last = net.depth_head.body[-1]
    with torch.no_grad():  # depth confidence = 1 + exp(-9 + tiny variation), about 1.00012
        last.weight[1].mul_(1e-3)
        last.bias[1] = -9.0
    path = export(net, tmp_path / "flat16.onnx", 42, fp16=True, landmarks=False)
    errors = parity(net, path, (42, 42))
    assert errors["depth_conf"] < TOLERANCE["float16"], errors
    assert spread(np.array([1.0, 1.0001]), fp16=True) == pytest.approx(1e-2 * 1.0001)
    assert spread(np.array([1.0, 1.0001]), fp16=False) == pytest.approx(1e-3 * 1.0001)
    assert spread(np.array([0.0, 2.0]), fp16=True) == 2.0
    with torch.no_grad():  # the torch model now differs from the file: parity must see it
        last.bias[0] += 0.5
    assert parity(net, path, (42, 42))["depth"] > TOLERANCE["float16"]
