# SPDX-License-Identifier: GPL-3.0-or-later
"""The one command that reproduces the bundled model: its stages chain weights and rendered
windows, a finished stage is skipped and an interrupted one resumed, and the final checkpoint is
exported to a contract model (a whole run on the test config and the stand-in data)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from standin_faces import standin_source  # noqa: E402

from face_anything_addon.core.contract import describe_model  # noqa: E402
from training.reproduce import FINAL, STAGES, reproduce, stage_argv  # noqa: E402
from training.train import load_model, parse_args  # noqa: E402

# the stages' configs mapped to the test ones (cpu-deep is cpu-tiny grown, test-deep test-tiny)
TINY = {"--config": {"cpu-tiny": "test-tiny", "cpu-deep": "test-deep"},
        "--snapshot-every": {"300": "1"}, "--size": "28", "--val-windows": "2", "--pool": "6",
        "--min-pool": "2", "--steps": "3", "--val-every": "2", "--ckpt-every": "1"}


def test_every_stage_parses_and_starts_from_the_one_before(tmp_path):
    names = [s.name for s in STAGES]
    for i, stage in enumerate(STAGES):
        args = parse_args(stage_argv(stage, tmp_path))
        assert args.out == tmp_path / stage.name and args.max_minutes == stage.minutes
        if i:
            assert args.init is not None and args.init.parent.name in names[:i]
        for folder in args.replay:  # windows rendered by an earlier stage that renders
            earlier = STAGES[names.index(folder.parent.name)]
            assert names.index(earlier.name) < i and parse_args(stage_argv(earlier, tmp_path)).workers
    assert STAGES[0].init == ""


def test_the_chain_runs_skips_what_is_done_and_exports_a_contract_model(tmp_path, capsys):
    out = tmp_path / "run"
    onnx = reproduce(out, scale=0.01, source=standin_source, overrides=TINY,
                     export_args=("--input-size", "28"))
    for stage in STAGES:
        done = json.loads((out / stage.name / "done.json").read_text())
        assert done["last"]["step"] == 3
    assert describe_model(onnx).input_size == 28
    final, _ = load_model(out / FINAL)
    assert (final.cfg.width, final.cfg.depth) == (32, 6)  # grown to test-deep on the way
    # an averaging stage's weights are the mean of its snapshots (3 steps, one kept per step)
    for stage in (s for s in STAGES if s.average):
        snaps = sorted((out / stage.name / "snap").glob("*.pt"))
        assert len(snaps) == 3
        kept = [torch.load(p, weights_only=False)["model"] for p in snaps]
        averaged = torch.load(out / stage.name / "averaged.pt", weights_only=False)["model"]
        assert "encoder.blocks.5.ls1.gamma" in averaged  # the grown network's
        for key, value in averaged.items():
            assert torch.allclose(value, sum(k[key] for k in kept) / 3, atol=1e-6), key
    before = {s.name: (out / s.name / "last.pt").stat().st_mtime_ns for s in STAGES}
    capsys.readouterr()
    reproduce(out, scale=0.01, source=standin_source, overrides=TINY,
              export_args=("--input-size", "28"))
    printed = capsys.readouterr().out
    assert printed.count("# done: python -m training.train") == len(STAGES)
    assert printed.count("# done: python -m training.average") == sum(bool(s.average)
                                                                      for s in STAGES)
    assert before == {s.name: (out / s.name / "last.pt").stat().st_mtime_ns for s in STAGES}
    # a stage with a checkpoint but no done.json was interrupted: it resumes
    (out / STAGES[-1].name / "done.json").unlink()
    assert "--resume" in stage_argv(STAGES[-1], out)


def test_dry_run_prints_every_command_and_trains_nothing(tmp_path, capsys):
    reproduce(tmp_path, dry_run=True)
    printed = capsys.readouterr().out.splitlines()
    averages = sum(bool(s.average) for s in STAGES)
    assert len(printed) == len(STAGES) + averages + 1
    assert printed[-1].startswith("python -m training.export")
    assert not any(tmp_path.iterdir())
