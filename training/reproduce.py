# SPDX-License-Identifier: GPL-3.0-or-later
"""One command that reproduces the bundled default model: every training stage it went through,
in order, each from the weights (and rendered windows) of the one before, then the export.

    .venv/bin/python -m training.reproduce [--out out/reproduce] [--dry-run] [--scale 0.1]

About 21.5 hours of training on 2 CPU cores (the stages' time budgets, below). Each stage writes
its own folder under --out; a finished stage leaves `done.json` and is skipped when the command
is run again, an interrupted one is resumed from its `last.pt` (model, optimiser, step, time).
Training is cut by wall-clock budgets and the data are random draws, so a rerun gives a model of
the same recipe, not the same bytes. --scale multiplies every budget (a short trial of the whole
chain); --dry-run prints the commands.
"""
from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

NAME = ("Face Anything CPU-deep (synthetic MakeHuman faces, v15: v7 grown to 10 blocks and trained "
        "on at 196, weights averaged, then with the depth shape loss in two stages and the mask's "
        "soft IoU loss; mirror- and shift-averaged)")
EXPORT = ("--input-size", "196", "--depth-units", "relative", "--mirror-average", "--shift-average")

_BASE = ("--config cpu-tiny --size 140 --window 2 --single 0.3 --batch 2 --min-pool 8 "
         "--val-windows 8 --threads 1")
_AT_196 = _BASE.replace("--size 140", "--size 196")  # the size the bundled model runs at
# the relief-weighted loss of v3 onwards (docs/network.md: the trial that chose it)
_RELIEF = "--loss depth=0.05 --loss depth_relief=1.0 --loss depth_grad=0.5"


def _fine_tune_at_196(lr: str, seed: int, config: str = "cpu-tiny") -> str:
    """A fine-tuning stage at 196 x 196: fresh windows from one render process, kept in memory."""
    common = _AT_196.replace("--config cpu-tiny", f"--config {config}")
    return (f"{common} --steps 1000000 --lr {lr} --warmup 30 --workers 1 --fresh 1 --pool 4000 "
            f"--val-every 300 --ckpt-every 100 --seed {seed} --no-pool-cache {_RELIEF}")


@dataclass(frozen=True)
class Stage:
    name: str
    minutes: float
    args: str  # training.train arguments, without --out / --max-minutes / --init / --replay
    init: str = ""  # stage whose weights it starts from ("NAME/best.pt" or "NAME/last.pt")
    replay: tuple[str, ...] = ()  # stages whose rendered windows (their pool/) fill the pool
    # > 0: NAME/averaged.pt, the mean of the run's last `average` snapshots (its args must keep
    # them: --snapshot-every; the last snapshot is the final weights)
    average: int = 0


STAGES = (
    # v1: from scratch, one render process beside the training core
    Stage("v1", 26, f"{_BASE} --steps 100000 --lr 8e-4 --warmup 100 --pool 2000 --workers 1 "
                    "--val-every 200 --ckpt-every 50 --seed 0"),
    # v2: v1's weights, fresh optimiser and schedule, fresh windows all along
    Stage("v2", 118, f"{_BASE} --steps 1000000 --lr 5e-4 --warmup 50 --pool 6000 --workers 1 "
                     "--val-every 250 --ckpt-every 100 --seed 2", init="v1/best.pt"),
    # v3: v2's rendered windows only (no rendering), depth shape weighted up: trial, then run
    Stage("v3-trial", 14, f"{_BASE} --steps 1000000 --lr 3e-4 --warmup 30 --workers 0 --fresh 0 "
                          f"--pool 1500 --val-every 150 --ckpt-every 100 --seed 5 {_RELIEF}",
          init="v2/last.pt", replay=("v2",)),
    Stage("v3", 80, f"{_BASE} --steps 1000000 --lr 3e-4 --warmup 30 --workers 0 --fresh 0 "
                    f"--pool 3000 --val-every 250 --ckpt-every 100 --seed 7 {_RELIEF}",
          init="v3-trial/last.pt", replay=("v2",)),
    # v4: v3's weights, fresh windows from one render process mixed with v2's
    Stage("v4", 120, f"{_BASE} --steps 1000000 --lr 2.5e-4 --warmup 30 --workers 1 --fresh 1 "
                     f"--pool 4000 --val-every 300 --ckpt-every 100 --seed 11 {_RELIEF}",
          init="v3/last.pt", replay=("v2",)),
    # v5: v4's weights, fresh windows (kept in memory only) mixed with v2's and v4's
    Stage("v5", 130, f"{_BASE} --steps 1000000 --lr 2e-4 --warmup 30 --workers 1 --fresh 1 "
                     f"--pool 4000 --val-every 300 --ckpt-every 100 --seed 13 --no-pool-cache "
                     f"{_RELIEF}", init="v4/last.pt", replay=("v2", "v4")),
    # v6: v5's weights fine-tuned at 196 x 196, the size the model runs at, on fresh windows
    # rendered at that size (no replay: the earlier stages' windows are 140 x 140)
    Stage("v6", 108, _fine_tune_at_196(lr="2e-4", seed=17), init="v5/last.pt"),
    # v7: v6's weights, more of the same at 196 with a lower peak learning rate, new identities
    Stage("v7", 125, _fine_tune_at_196(lr="1.5e-4", seed=19), init="v6/last.pt"),
    # v10: v7 grown from 6 to 10 encoder blocks (cpu-deep), the new blocks' LayerScales started
    # at 0.02 (v8 and v9 were tries off this chain: the card)
    Stage("v10", 120, _fine_tune_at_196(lr="1.5e-4", seed=31, config="cpu-deep")
          + " --grow-scale 0.02", init="v7/last.pt"),
    # v11: v10 trained on at a 3x higher rate; the mean of its last 10 snapshots is exported
    Stage("v11", 95, _fine_tune_at_196(lr="5e-4", seed=37, config="cpu-deep").replace(
        "--warmup 30", "--warmup 50") + " --snapshot-every 300", init="v10/last.pt", average=10),
    # v12: v11's averaged weights trained on, a moving average of the weights kept (exported)
    Stage("v12", 92, _fine_tune_at_196(lr="4e-4", seed=43, config="cpu-deep")
          + " --ema 0.998", init="v11/averaged.pt"),
    # v13: v12's moving average trained on with the scale-and-shift invariant depth shape loss
    # added (training.losses: depth_shape), a moving average kept (exported)
    Stage("v13", 95, _fine_tune_at_196(lr="3e-4", seed=44, config="cpu-deep")
          + " --ema 0.998 --loss depth_shape=3.0", init="v12/ema.pt"),
    # v14: v13's moving average trained on with the depth shape loss at weight 5 and a lower
    # peak rate, a moving average kept (exported)
    Stage("v14", 92, _fine_tune_at_196(lr="2e-4", seed=45, config="cpu-deep")
          + " --ema 0.998 --loss depth_shape=5.0", init="v13/ema.pt"),
    # v15: v14's moving average trained on with the mask's soft intersection-over-union loss
    # added (training.losses: mask_iou), a moving average kept (exported)
    Stage("v15", 95, _fine_tune_at_196(lr="1.5e-4", seed=46, config="cpu-deep")
          + " --ema 0.998 --loss depth_shape=5.0 --loss mask_iou=1.0", init="v14/ema.pt"),
)
FINAL = "v15/ema.pt"  # the checkpoint exported as the bundled model


def stage_argv(stage: Stage, out: Path, scale: float = 1.0,
               overrides: dict[str, str | dict[str, str]] | None = None) -> list[str]:
    """The training.train arguments of `stage` under `out`; an interrupted stage resumes.
    `overrides` replace the values of options (tests: a tiny config): a string replaces (or
    adds) the option, a dict maps the stage's value to another (cpu-tiny -> test-tiny, ...)."""
    argv = shlex.split(stage.args)
    for key, value in (overrides or {}).items():
        if key in argv:
            i = argv.index(key) + 1
            argv[i] = value.get(argv[i], argv[i]) if isinstance(value, dict) else value
        elif not isinstance(value, dict):
            argv += [key, value]
    folder = out / stage.name
    argv += ["--out", str(folder), "--max-minutes", f"{stage.minutes * scale:g}"]
    if stage.init:
        argv += ["--init", str(out / stage.init)]
    for earlier in stage.replay:
        argv += ["--replay", str(out / earlier / "pool")]
    if (folder / "last.pt").exists():
        argv.append("--resume")
    return argv


def average_stage(stage: Stage, out: Path) -> Path:
    """Writes NAME/averaged.pt: the mean of the stage's last `stage.average` snapshots."""
    from .average import AverageError, average_checkpoints
    import torch

    snaps = sorted((out / stage.name / "snap").glob("*.pt"))[-stage.average:]
    if not snaps:
        raise AverageError(f"stage {stage.name} kept no snapshots in {out / stage.name / 'snap'} "
                           "(its arguments need --snapshot-every)")
    target = out / stage.name / "averaged.pt"
    torch.save(average_checkpoints(snaps), target)
    return target


def reproduce(out: Path, scale: float = 1.0, dry_run: bool = False, source=None,
              overrides: dict[str, str | dict[str, str]] | None = None, stages=STAGES,
              final: str = FINAL, export_args: tuple[str, ...] = EXPORT) -> Path:
    """Runs the stages not yet done, then exports `final` to out/face_anything_default.onnx."""
    from . import export
    from .train import parse_args, train

    onnx = out / "face_anything_default.onnx"
    for stage in stages:
        done = out / stage.name / "done.json"
        argv = stage_argv(stage, out, scale, overrides)
        mark = "# done: " if done.exists() else ""
        print(mark + "python -m training.train " + shlex.join(argv), flush=True)
        record = None if dry_run or done.exists() else train(parse_args(argv), source)
        if stage.average:
            print(f"{mark}python -m training.average {out / stage.name / 'snap'}/<its last "
                  f"{stage.average}>.pt --out {out / stage.name / 'averaged.pt'}", flush=True)
            if record is not None:
                average_stage(stage, out)
        if record is not None:
            done.write_text(json.dumps({"argv": argv, "last": record}, indent=1) + "\n")
    export_argv = [str(out / final), str(onnx), *export_args, "--name", NAME]
    print("python -m training.export " + shlex.join(export_argv), flush=True)
    if not dry_run:
        export.main(export_argv)
    return onnx


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/reproduce"))
    p.add_argument("--scale", type=float, default=1.0, help="multiply every stage's minutes")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    a = p.parse_args(argv)
    reproduce(a.out, a.scale, a.dry_run)


if __name__ == "__main__":
    main()
