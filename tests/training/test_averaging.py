# SPDX-License-Identifier: GPL-3.0-or-later
"""Weight averaging (training.average) and the snapshots training keeps for it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from standin_faces import standin_source  # noqa: E402

from training.average import AverageError, average_checkpoints, main  # noqa: E402
from training.network import FaceAnythingNet, get_config  # noqa: E402
from training.train import load_model, parse_args, save, train  # noqa: E402


def _saved(path, config="test-tiny", seed=0):
    torch.manual_seed(seed)
    model = FaceAnythingNet(get_config(config))
    save(path, model, torch.optim.AdamW(model.parameters()), seed, argparse.Namespace(size=28),
         0.0)
    return model


def test_the_average_is_the_mean_of_every_weight(tmp_path):
    models = [_saved(tmp_path / f"{i}.pt", seed=i) for i in range(3)]
    ckpt = average_checkpoints([tmp_path / f"{i}.pt" for i in range(3)])
    assert "optimizer" not in ckpt and ckpt["step"] == 2
    for name, value in ckpt["model"].items():
        mean = sum(m.state_dict()[name] for m in models) / 3
        assert torch.allclose(value, mean, atol=1e-6), name
    torch.save(ckpt, tmp_path / "avg.pt")
    model, _ = load_model(tmp_path / "avg.pt")
    out = model(torch.zeros(1, 1, 3, 28, 28))
    assert torch.isfinite(out["depth"]).all()


def test_other_networks_and_no_checkpoints_are_refused(tmp_path):
    _saved(tmp_path / "a.pt")
    _saved(tmp_path / "b.pt", config="test-deep")
    with pytest.raises(AverageError, match="another network"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(AverageError, match="no checkpoints"):
        average_checkpoints([])
    with pytest.raises(SystemExit, match="another network"):
        main([str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out", str(tmp_path / "c.pt")])


def test_training_keeps_snapshots_that_average_into_a_checkpoint(tmp_path):
    args = parse_args(["--config", "test-tiny", "--size", "28", "--window", "2", "--batch", "2",
                       "--steps", "5", "--pool", "2", "--fresh", "0", "--val-windows", "2",
                       "--val-every", "1000", "--ckpt-every", "5", "--warmup", "2",
                       "--lr", "3e-3", "--snapshot-every", "2", "--out", str(tmp_path)])
    train(args, standin_source)
    snaps = sorted((tmp_path / "snap").glob("*.pt"))
    assert [p.name for p in snaps] == ["0000002.pt", "0000004.pt", "0000005.pt"]
    first = torch.load(snaps[0], weights_only=False)
    assert "optimizer" not in first and first["step"] == 2
    out = main([str(p) for p in snaps] + ["--out", str(tmp_path / "avg.pt")])
    model, ckpt = load_model(out)
    assert ckpt["step"] == 5 and len(ckpt["averaged"]) == 3
    last = torch.load(tmp_path / "last.pt", weights_only=False)["model"]
    assert any(not torch.equal(model.state_dict()[k], last[k]) for k in last)


def test_the_moving_average_follows_the_weights_step_by_step(tmp_path):
    args = parse_args(["--config", "test-tiny", "--size", "28", "--window", "2", "--batch", "2",
                       "--steps", "4", "--pool", "2", "--fresh", "0", "--val-windows", "2",
                       "--val-every", "1000", "--ckpt-every", "2", "--warmup", "2",
                       "--lr", "3e-3", "--ema", "0.5", "--snapshot-every", "1",
                       "--out", str(tmp_path)])
    record = train(args, standin_source)
    assert set(record["val_ema"]) == set(record["val"])
    torch.manual_seed(args.seed)  # the weights training started from
    expected = FaceAnythingNet(get_config("test-tiny")).state_dict()
    for step in range(1, 5):
        weights = torch.load(tmp_path / "snap" / f"{step:07d}.pt", weights_only=False)["model"]
        expected = {k: 0.5 * v + 0.5 * weights[k] for k, v in expected.items()}
    ema = torch.load(tmp_path / "ema.pt", weights_only=False)
    assert ema["step"] == 4 and "optimizer" not in ema
    for name, value in ema["model"].items():
        torch.testing.assert_close(value, expected[name], atol=1e-6, rtol=1e-5)
    with pytest.raises(SystemExit):  # refused before any render process starts
        parse_args(["--config", "test-tiny", "--ema", "1.5", "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
