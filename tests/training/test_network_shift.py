# SPDX-License-Identifier: GPL-3.0-or-later
"""Shift averaging (`training.network.shift`): the moved predictions come back to the right
pixels and the right principal point, a translation-equivariant network is left unchanged away
from the edges, and the export (alone and on top of mirror averaging) matches torch."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from training.export import TOLERANCE, export, parity  # noqa: E402
from training.network import FaceAnythingNet, get_config  # noqa: E402
from training.network.mirror import MirrorAveraged  # noqa: E402
from training.network.shift import ShiftAveraged, move  # noqa: E402


def test_move_and_back_is_exact_inside_and_repeats_the_edge():
    x = torch.randn(2, 3, 4, 20, 17)
    there = move(x, 3, 3)
    torch.testing.assert_close(there[..., 3:, 3:], x[..., :-3, :-3])
    torch.testing.assert_close(there[..., :3, 3:], x[..., :1, :-3].expand(-1, -1, -1, 3, -1))
    back = move(there, -3, -3)
    torch.testing.assert_close(back[..., :-3, :-3], x[..., :-3, :-3])
    torch.testing.assert_close(back[..., -3:, :-3], back[..., -4:-3, :-3].expand(-1, -1, -1, 3, -1))
    assert move(torch.randn(5, 7, 9), 2, 2).shape == (5, 7, 9)


class Pointwise(torch.nn.Module):
    """Translation-equivariant stand-in with the network's outputs: every map is a function of
    its own pixel; the principal point is the brightest pixel's position (it moves with the
    frame, as a trained network's does not)."""

    cfg = get_config("test-tiny")

    def forward(self, images):
        n, s, _, h, w = images.shape
        grey = images.mean(2)
        peak = grey.reshape(n, s, -1).argmax(-1)
        k = torch.zeros(n, s, 3, 3)
        k[..., 0, 0] = k[..., 1, 1] = 50.0
        k[..., 0, 2] = (peak % w).float() + 0.5
        k[..., 1, 2] = torch.div(peak, w, rounding_mode="floor").float() + 0.5
        k[..., 2, 2] = 1.0
        logit = images[:, :, 1] - images[:, :, 2]
        return {"depth": torch.exp(grey), "depth_conf": 1 + grey.abs(),
                "canonical": images.permute(0, 1, 3, 4, 2), "canonical_conf": 2 + grey,
                "intrinsics": k, "mask_logit": logit, "mask": torch.sigmoid(logit)}


class Centred(Pointwise):
    """The stand-in with the camera of a network trained on centred cameras: the image centre,
    whatever it is shown."""

    def forward(self, images):
        out = super().forward(images)
        out["intrinsics"][..., 0, 2] = images.shape[-1] / 2
        out["intrinsics"][..., 1, 2] = images.shape[-2] / 2
        return out


def test_an_equivariant_network_is_unchanged_away_from_the_edges():
    net = Pointwise()
    images = torch.rand(2, 3, 3, 28, 35)
    images[1, 2, :, 9, 20] = 5.0  # one frame's brightest pixel, well inside
    with torch.no_grad():
        plain, avg = net(images), ShiftAveraged(net).eval()(images)
    inner = (slice(None), slice(None), slice(7, -7), slice(7, -7))
    for key in ("depth", "depth_conf", "canonical", "canonical_conf", "mask", "mask_logit"):
        torch.testing.assert_close(avg[key][inner], plain[key][inner], msg=key)
    # the camera is the unmoved frames' own, not averaged with the moved frames'
    torch.testing.assert_close(avg["intrinsics"], plain["intrinsics"])
    assert float(avg["intrinsics"][1, 2, 0, 2]) == 20.5 and float(avg["intrinsics"][1, 2, 1, 2]) == 9.5
    assert ShiftAveraged(net).shift == 7  # half a patch
    with torch.no_grad():  # a centred camera stays centred (not moved half a shift back)
        k = ShiftAveraged(Centred())(images)["intrinsics"]
    assert torch.all(k[..., 0, 2] == 17.5) and torch.all(k[..., 1, 2] == 14.0)


def test_on_the_network_it_averages_two_different_predictions():
    torch.manual_seed(4)
    net = FaceAnythingNet(get_config("test-tiny")).eval()
    images = torch.randn(1, 2, 3, 42, 42)
    with torch.no_grad():
        plain, avg = net(images), ShiftAveraged(net)(images)
        moved = net(move(images, 7, 7))
    back = move(moved["depth"], -7, -7)
    torch.testing.assert_close(avg["depth"], (plain["depth"] + back) / 2)
    assert float((avg["depth"] - plain["depth"]).abs().max()) > 1e-4
    assert avg["canonical"].shape == plain["canonical"].shape == (1, 2, 42, 42, 3)


@pytest.mark.parametrize("mirrored", [False, True])
def test_shift_averaged_export_matches_torch(mirrored, tmp_path):
    torch.manual_seed(5)
    base = FaceAnythingNet(get_config("test-tiny"))
    torch.nn.init.normal_(base.camera.mlp[-1].weight, std=0.5)  # a camera that depends on the frame
    net = ShiftAveraged(MirrorAveraged(base) if mirrored else base).eval()
    path = export(net, tmp_path / "shift.onnx", 42, landmarks=False)
    for size, n, s in (((42, 42), 1, 2), ((28, 56), 2, 1)):
        errors = parity(net, path, size, n=n, s=s)
        assert max(errors.values()) < TOLERANCE["float32"], (size, errors)


def test_the_export_command_stacks_both_averagings_and_the_file_reads_back(tmp_path):
    from face_anything_addon.core.contract import describe_model
    from training.export import main
    from training.network.weights import load_onnx_weights

    torch.manual_seed(6)
    net = FaceAnythingNet(get_config("test-tiny"))
    ckpt = tmp_path / "last.pt"
    torch.save({"model": net.state_dict(), "config": net.cfg.to_dict(), "size": 28}, ckpt)
    out = tmp_path / "both.onnx"
    main([str(ckpt), str(out), "--input-size", "28", "--mirror-average", "--shift-average",
          "--depth-units", "relative", "--name", "test net, both averaged"])
    assert describe_model(out).depth_units == "relative"
    back = load_onnx_weights(out, get_config("test-tiny"))
    for key, value in net.state_dict().items():
        assert torch.equal(back.state_dict()[key], value) or "fusion.3.skip" in key, key
    # an exported file exported again (here without the averagings): the same network
    again = tmp_path / "again.onnx"
    main([str(out), str(again), "--config", "test-tiny"])
    assert describe_model(again).input_size == 28
    assert describe_model(again).depth_units == "relative"  # kept from the file
    assert describe_model(again).name == "test net, both averaged"  # kept too, unless --name
    plain = load_onnx_weights(again, get_config("test-tiny"))
    for key, value in net.state_dict().items():
        assert torch.equal(plain.state_dict()[key], value) or "fusion.3.skip" in key, key
    with pytest.raises(SystemExit, match="--config"):
        main([str(out), str(tmp_path / "x.onnx")])
    with pytest.raises(SystemExit, match="different network config"):
        main([str(out), str(tmp_path / "x.onnx"), "--config", "cpu-tiny"])
