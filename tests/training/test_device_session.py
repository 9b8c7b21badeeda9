# SPDX-License-Identifier: GPL-3.0-or-later
"""The prepared GPU session: its returned parts put back together exactly (or refused with the
reason), and a whole `run` on the CPU (test config, stand-in data) whose parts `join` turns into
a checkpoint that loads."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from standin_faces import standin_source  # noqa: E402

from training.device_session import join, join_parts, run, split_file  # noqa: E402
from training.train import load_model  # noqa: E402


def test_split_and_join_give_back_the_same_bytes(tmp_path):
    data = bytes(range(256)) * 1000 + b"tail"
    src = tmp_path / "weights.pt"
    src.write_bytes(data)
    parts = split_file(src, tmp_path / "out", part_bytes=50_000)
    assert len(parts) == 6 and all(p.stat().st_size <= 50_000 for p in parts)
    back = join_parts(tmp_path / "out", "weights.pt", tmp_path / "back.pt")
    assert back.read_bytes() == data


def test_join_refuses_a_missing_or_damaged_part(tmp_path):
    src = tmp_path / "w.pt"
    src.write_bytes(b"x" * 1000)
    parts = split_file(src, tmp_path / "out", part_bytes=300)
    parts[1].write_bytes(b"y" * 300)
    with pytest.raises(ValueError, match=r"w\.pt\.part01 does not match"):
        join_parts(tmp_path / "out", "w.pt", tmp_path / "back.pt")
    parts[2].unlink()
    split_file(src, tmp_path / "out2", part_bytes=300)[2].unlink()
    with pytest.raises(ValueError, match=r"part .*w\.pt\.part02 is missing"):
        join_parts(tmp_path / "out2", "w.pt", tmp_path / "back.pt")
    assert not (tmp_path / "back.pt").exists()
    with pytest.raises(ValueError, match="manifest.json is missing"):
        join_parts(tmp_path, "w.pt", tmp_path / "back.pt")


def test_a_cpu_run_returns_parts_that_join_into_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "returned"
    summary = run(["--out", str(out), "--minutes", "0.15", "--config", "test-tiny", "--size", "28",
                   "--batch", "2", "--workers", "1", "--device", "cpu", "--pool", "16",
                   "--val-windows", "2", "--work", str(tmp_path / "work")], standin_source)
    assert summary["last"]["step"] >= 1 and summary["machine"]["cuda"] in (True, False)
    returned = sorted(p.name for p in out.iterdir())
    assert "summary.json" in returned and "log.jsonl" in returned and "manifest.json" in returned
    assert len(returned) <= 8 and all((out / n).stat().st_size <= 16 * 2 ** 20 for n in returned)
    assert not (tmp_path / "work" / "pool").exists()  # windows kept in memory only
    returned_summary = json.loads((out / "summary.json").read_text())
    assert returned_summary["last_parts"] and returned_summary["ema_parts"]
    assert "--ema" in returned_summary["train_args"]
    averaged, _ = load_model(join([str(out), str(tmp_path / "joined" / "ema.pt"), "--which",
                                   "ema"]))
    kept, _ = load_model(tmp_path / "work" / "ema.pt")
    for (name, a), b in zip(averaged.state_dict().items(), kept.state_dict().values()):
        torch.testing.assert_close(a, b, atol=2e-3 * float(b.abs().max()) + 1e-6, rtol=1e-3)
    dest = join([str(out), str(tmp_path / "joined" / "last.pt")])
    model, ckpt = load_model(dest)
    trained, _ = load_model(tmp_path / "work" / "last.pt")
    assert ckpt["step"] == summary["last"]["step"] and "optimizer" not in ckpt
    for (name, a), b in zip(model.state_dict().items(), trained.state_dict().values()):
        assert a.dtype == b.dtype, name  # fp32 again
        torch.testing.assert_close(a, b, atol=2e-3 * float(b.abs().max()) + 1e-6, rtol=1e-3)
