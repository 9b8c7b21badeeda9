# SPDX-License-Identifier: GPL-3.0-or-later
"""Starting weights: a network read back out of its own ONNX export (plain and mirror-averaged,
checked against the file), grown deeper without changing its outputs, and `--init` taking both."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).parent))
from standin_faces import standin_source  # noqa: E402

from training.export import export  # noqa: E402
from training.network import FaceAnythingNet, get_config  # noqa: E402
from training.network.mirror import MirrorAveraged  # noqa: E402
from training.network.shift import ShiftAveraged  # noqa: E402
from training.network.weights import (  # noqa: E402
    WeightsError, grow_deeper, load_onnx_weights, state_dict_from_onnx)
from training.train import load_model, parse_args, train  # noqa: E402

UNUSED = {f"decoder.fusion.3.skip.body.{i}.{k}" for i in (1, 3) for k in ("weight", "bias")}


@pytest.fixture(scope="module")
def trained():
    """test-tiny with every parameter moved off its initial value (as a trained network is)."""
    torch.manual_seed(3)
    model = FaceAnythingNet(get_config("test-tiny")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _outputs(model, size=42):
    x = torch.randn(1, 2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.eval()(x)


def test_a_plain_export_gives_back_every_weight_the_graph_uses(trained, tmp_path):
    path = export(trained, tmp_path / "plain.onnx", 42)
    fresh = FaceAnythingNet(get_config("test-tiny"))
    state, missing = state_dict_from_onnx(path, fresh)
    assert set(missing) == UNUSED  # the coarsest fusion never has a coarser path to skip
    for key, value in trained.state_dict().items():
        if key not in UNUSED:
            assert torch.equal(state[key], value), key  # linear weights: transposed back
    assert any("mlp" in k for k in state)


@pytest.mark.parametrize("wrap", ["mirror", "shift", "shift+mirror"])
def test_an_averaged_export_is_read_back_and_checked(trained, tmp_path, wrap):
    net = MirrorAveraged(trained) if "mirror" in wrap else trained
    net = ShiftAveraged(net) if "shift" in wrap else net
    path = export(net.eval(), tmp_path / "averaged.onnx", 42)
    model = load_onnx_weights(path, get_config("test-tiny"))
    want, got = _outputs(trained), _outputs(model)
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_the_wrong_config_is_refused_with_a_reason(trained, tmp_path):
    path = export(trained, tmp_path / "plain.onnx", 42)
    with pytest.raises(WeightsError, match="different network config"):
        load_onnx_weights(path, get_config("test-tiny", width=48, heads=2))
    # same shapes, two more blocks the file does not have: only running it tells
    with pytest.raises(WeightsError, match="does not reproduce"):
        load_onnx_weights(path, get_config("test-deep"))
    with pytest.raises(WeightsError, match="no ONNX file"):
        load_onnx_weights(tmp_path / "absent.onnx", get_config("test-tiny"))


def test_growing_deeper_keeps_every_output_and_the_new_blocks_can_learn(trained):
    grown = grow_deeper(trained, get_config("test-deep"))
    assert len(grown.encoder.blocks) == 6
    want, got = _outputs(trained), _outputs(grown)
    for key in want:
        assert torch.allclose(want[key], got[key], atol=1e-6), key
    # the pass-through blocks' LayerScales are 0, and they get a gradient
    gamma = grown.encoder.blocks[4].ls1.gamma
    assert float(gamma.detach().abs().max()) == 0.0
    out = grown.train()(torch.randn(1, 2, 3, 28, 28))
    (out["depth"].mean() + out["canonical"].pow(2).mean()).backward()
    assert float(gamma.grad.abs().max()) > 0


def test_a_grow_scale_opens_the_new_blocks_at_once(trained):
    grown = grow_deeper(trained, get_config("test-deep"), scale=0.02)
    for i in (4, 5):
        for ls in (grown.encoder.blocks[i].ls1, grown.encoder.blocks[i].ls2):
            assert torch.equal(ls.gamma.detach(), torch.full_like(ls.gamma, 0.02))
    # the old blocks are untouched, the output moves a little but not much
    for i in range(4):
        assert torch.equal(grown.encoder.blocks[i].ls1.gamma, trained.encoder.blocks[i].ls1.gamma)
    want, got = _outputs(trained), _outputs(grown)
    moved = max(float((want[k] - got[k]).abs().max() / want[k].std()) for k in want)
    assert 1e-6 < moved < 0.5
    # unlike at scale 0, the new blocks' own weights get a gradient from the first step
    out = grown.train()(torch.randn(1, 2, 3, 28, 28))
    (out["depth"].mean() + out["canonical"].pow(2).mean()).backward()
    assert float(grown.encoder.blocks[5].attn.qkv.weight.grad.abs().max()) > 0
    closed = grow_deeper(trained, get_config("test-deep"))
    out = closed.train()(torch.randn(1, 2, 3, 28, 28))
    (out["depth"].mean() + out["canonical"].pow(2).mean()).backward()
    assert float(closed.encoder.blocks[5].attn.qkv.weight.grad.abs().max()) == 0


def test_growing_refuses_what_would_change_the_network(trained):
    with pytest.raises(WeightsError, match="width"):
        grow_deeper(trained, get_config("test-deep", width=48))
    with pytest.raises(WeightsError, match="taps"):
        grow_deeper(trained, get_config("test-deep", taps=(0, 1, 4, 5)))
    with pytest.raises(WeightsError, match="cannot grow 4 blocks into 3"):
        grow_deeper(trained, get_config("test-tiny", depth=3, taps=(0, 1, 2, 2)))


def _args(out, *extra):
    return parse_args(["--size", "28", "--window", "2", "--batch", "2", "--steps", "1",
                       "--pool", "2", "--fresh", "0", "--val-windows", "2", "--val-every", "1000",
                       "--ckpt-every", "5", "--warmup", "2", "--lr", "1e-4", "--out", str(out),
                       *extra])


def test_init_from_an_onnx_file_grows_it_into_the_run_config(trained, tmp_path):
    path = export(MirrorAveraged(trained).eval(), tmp_path / "start.onnx", 28)
    record = train(_args(tmp_path / "run", "--config", "test-deep", "--init", str(path),
                         "--init-config", "test-tiny"), standin_source)
    assert record["step"] == 1
    after, ckpt = load_model(tmp_path / "run" / "last.pt")
    assert ckpt["config"]["depth"] == 6
    # one small step from the file's weights
    start = trained.state_dict()
    for key in ("encoder.embed.weight", "encoder.blocks.0.attn.qkv.weight", "camera.mlp.0.weight"):
        assert float((after.state_dict()[key] - start[key]).abs().max()) < 1e-3, key
    with pytest.raises(SystemExit, match="--init .*start.onnx.*does not reproduce"):
        train(_args(tmp_path / "bad", "--config", "test-deep", "--init", str(path)),
              standin_source)
