# SPDX-License-Identifier: GPL-3.0-or-later
"""Weight averaging: one checkpoint whose weights are the mean of several of one run's.

Small batches make the weights wander around a minimum from step to step; the mean of
snapshots taken along the end of a run (`training.train --snapshot-every`) sits nearer its
centre than any one of them (stochastic weight averaging). The network has no batch
statistics (layer norms only), so the mean is ready to use as it is.

    .venv/bin/python -m training.average out/run/snap/*.pt --out out/run/average.pt
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


class AverageError(ValueError):
    """Checkpoints that cannot be averaged (none, or of different networks)."""


def average_checkpoints(paths: list[Path]) -> dict:
    """The mean of the checkpoints' model weights, as a checkpoint like the last of them
    (its config, step and arguments; no optimiser state)."""
    if not paths:
        raise AverageError("no checkpoints to average")
    total, last = None, None
    for path in paths:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        state = ckpt["model"]
        if total is None:
            total = {k: v.double().clone() if v.is_floating_point() else v.clone()
                     for k, v in state.items()}
            first = (path, ckpt["config"])
        elif ckpt["config"] != first[1] or state.keys() != total.keys():
            raise AverageError(f"{path} is another network than {first[0]}: only snapshots of "
                               "one config can be averaged")
        else:
            for k, v in state.items():
                if v.is_floating_point():
                    total[k] += v.double()
        last = ckpt
    model = {k: (v / len(paths)).to(last["model"][k].dtype) if v.is_floating_point() else v
             for k, v in total.items()}
    out = {k: v for k, v in last.items() if k not in ("model", "optimizer")}
    out["model"] = model
    out["averaged"] = [str(p) for p in paths]
    return out


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        ckpt = average_checkpoints(args.checkpoints)
    except AverageError as exc:
        raise SystemExit(f"training.average: {exc}") from exc
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, args.out)
    print(f"{args.out}: the mean of {len(args.checkpoints)} checkpoints (steps up to "
          f"{ckpt.get('step')})")
    return args.out


if __name__ == "__main__":
    main()
