# SPDX-License-Identifier: GPL-3.0-or-later
"""A capacity check: how well, and how fast, a network fits a few fixed windows.

Trains a copy of a model on the same few windows every step and scores it, every `--every`
steps, on those very windows, with `training.evaluate`'s metrics (depth relief error, mask
IoU, canonical error, the camera; at the windows' own size). A network that cannot fit the
windows it trains on cannot reach a target on unseen ones; one that fits them but scores far
worse on the validation split needs more data and steps rather than another design.

    .venv/bin/python -m training.fit_check face_anything_addon/assets/face_anything_default.onnx \
        --config cpu-tiny --windows out/train-cpu-tiny/val --count 4 --minutes 14 --lr 3e-4
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from training.evaluate import evaluate
from training.losses import face_losses
from training.network import FaceAnythingNet, get_config
from training.train import (SOURCES, collate, initial_model, load_model, load_windows,
                            loss_weights, normalise, pack, take)

def window_scores(model: FaceAnythingNet, windows: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """`training.evaluate`'s metrics of the model on `windows` (each predicted as one clip)."""
    was_training = model.training
    model.eval()

    def predict(images: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = model(normalise(torch.as_tensor(images)[None], model.cfg))
        return {k: v[0].numpy() for k, v in out.items()}

    try:
        return evaluate(predict, [{k: v.numpy() for k, v in w.items()} for w in windows],
                        metric=False)
    finally:
        model.train(was_training)


def fit(model: FaceAnythingNet, windows: list[dict[str, torch.Tensor]], lr: float, weights,
        steps: int = 0, minutes: float = 0.0, every: int = 25, log=None) -> list[dict]:
    """Train on `windows` alone, all of them every step (AdamW, constant `lr`, clipping at 1),
    for `steps` steps or `minutes`, whichever ends first (0: no limit of that kind). Returns the
    scored records."""
    if not steps and not minutes:
        raise ValueError("give steps or minutes")
    batch = collate(windows, single=False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    start, step = time.time(), 0
    records = [{"step": 0, "seconds": 0.0, **window_scores(model, windows)}]

    def done() -> bool:
        return ((steps and step >= steps)
                or (minutes and time.time() - start > minutes * 60))

    while not done():
        terms = face_losses(model(normalise(batch["images"], model.cfg)), batch, weights)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % every == 0 or done():
            records.append({"step": step, "seconds": round(time.time() - start, 1),
                            "loss": round(float(terms["total"].detach()), 4),
                            **window_scores(model, windows)})
            if log:
                log(json.dumps(records[-1]))
    return records


def fixed_windows(args: argparse.Namespace) -> list[dict]:
    """`--count` windows from `--windows` (packed .npz) or rendered from the engine's
    validation identities."""
    if args.windows:
        found = load_windows(args.windows)
        if len(found) < args.count:
            raise SystemExit(f"--windows {args.windows}: {len(found)} windows, --count asks "
                             f"for {args.count}")
        return [take(w) for w in found[:args.count]]
    src = SOURCES["engine"]("val", args.size, args.window, args.seed)
    return [take(pack(next(src))) for _ in range(args.count)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="a checkpoint (.pt) or an exported model (.onnx)")
    p.add_argument("--config", default="cpu-tiny",
                   help="the network config of an .onnx file (a checkpoint names its own)")
    p.add_argument("--windows", type=Path, help="a folder of packed windows (a run's val/)")
    p.add_argument("--count", type=int, default=4, help="windows to fit")
    p.add_argument("--size", type=int, default=196, help="render size without --windows")
    p.add_argument("--window", type=int, default=2, help="frames per rendered window")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--minutes", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--every", type=int, default=25, help="score every this many steps")
    p.add_argument("--loss", action="append", default=[], metavar="TERM=WEIGHT")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="write the records here (JSON)")
    args = p.parse_args(argv)
    if not args.steps and not args.minutes:
        p.error("give --steps or --minutes")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.model.suffix == ".onnx":
        model = initial_model(args.model, get_config(args.config))
    else:
        model = load_model(args.model)[0]
    records = fit(model, fixed_windows(args), args.lr, loss_weights(args.loss), args.steps, args.minutes,
                  args.every, log=print)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                        "records": records}, indent=1))
    return records


if __name__ == "__main__":
    main()
