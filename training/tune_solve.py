# SPDX-License-Identifier: GPL-3.0-or-later
"""Choose the capture solve's settings for a model: every combination of the values given,
scored on validation clips as `training.evaluate_mesh` scores a capture.

    python -m training.tune_solve MODEL.onnx [--seed 777] [--count 48]
        [--cache out/eval/mesh256_w4_n48_s777.npz]
        [--grid identity_prior_mm=1,2,3] [--grid depth_weight=0.1,0.3,1] [--true-tracks]
        [--out TABLE.md]

The network's work is done once: each clip is captured as the add-on captures it, without the
expression fit (the mesh as tracked; the settings below change nothing before the fit), then
every combination refits those tracked meshes (`evaluate_mesh.refit`: the solve's own
`CaptureSolver.fit_expressions`). `--grid FIELD=V1,V2,...` (repeatable) takes any
`core.solve.SolveSettings` field; fields not given keep the add-on's defaults, which are always
one of the rows. `--true-tracks` also fits every combination to the true meshes (what the
settings would give a perfect network). Rows are sorted by `mesh_mm`, lowest first.

Tune on clips the scores are not reported on: the default seed 777 draws other validation
clips than `training.evaluate_mesh`'s (seed 12345), so its table stays a fair measure. The
bundled defaults (identity prior 2 mm, depth weight 0.3) came from this on v15 (the model card).
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from .evaluate_mesh import (capture_clip, fit_true_tracks, mesh_windows, refit, report,
                            score_captures, solve_overrides)

TUNING_SEED = 777


def grid_of(specs: list[str]) -> list[dict]:
    """["FIELD=V1,V2", ...] -> every combination as {field: value} (typed as the field is),
    the add-on's defaults (an empty dict) first."""
    axes = []
    for spec in specs:
        name, _, values = spec.partition("=")
        if not values:
            raise SystemExit(f"--grid {spec}: give FIELD=V1,V2,...")
        axes.append([solve_overrides([f"{name}={v}"]) for v in values.split(",")])
    combos = [{k: v for part in parts for k, v in part.items()}
              for parts in itertools.product(*axes)]
    return [{}] + [c for c in combos if c]


def label(combo: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in combo.items()) or "defaults"


def tune(model: Path, windows: list[dict], combos: list[dict], threads: int = 0,
         true_tracks: bool = False) -> dict[str, dict[str, float]]:
    """{row name: the scores} for every combination, on `model`'s tracked meshes (captured once)
    and, with true_tracks, on the true meshes."""
    raw = [capture_clip(model, np.asarray(w["images"], np.float32), threads, 0.0, False)
           for w in windows]
    results = {}
    for combo in combos:
        results[label(combo)] = score_captures(
            windows, (None if c is None else refit(c, combo) for c in raw))
        if true_tracks:
            results[f"true tracks, {label(combo)}"] = score_captures(
                windows, (fit_true_tracks(w, combo) for w in windows))
    return dict(sorted(results.items(), key=lambda kv: kv[1].get("mesh_mm", np.inf)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--count", type=int, default=48)
    p.add_argument("--seed", type=int, default=TUNING_SEED,
                   help="the clips' seed (default 777: not the clips scores are reported on)")
    p.add_argument("--cache", type=Path, default=None, help="rendered clips with the truth (.npz)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="values of a SolveSettings field to try (repeatable: every combination)")
    p.add_argument("--true-tracks", action="store_true",
                   help="also fit every combination to the true meshes")
    p.add_argument("--out", type=Path, help="also write the table here (and .json beside it)")
    args = p.parse_args(argv)
    combos = grid_of(args.grid)
    windows = mesh_windows(args.size, args.window, args.count, args.cache, args.seed)
    report(tune(args.model, windows, combos, args.threads, args.true_tracks), args.out,
           by_target=False)


if __name__ == "__main__":
    main()
