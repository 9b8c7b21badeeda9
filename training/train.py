# SPDX-License-Identifier: GPL-3.0-or-later
"""Train FaceAnythingNet on the synthetic face engine (CPU or CUDA), with checkpoints and resume.

    python -m training.train --config cpu-tiny --size 140 --threads 1 --workers 1 --out out/run

Windows come from the engine (`--source engine`: make_clip + Renderer; `--source dataset`:
`training.data.SyntheticFaces`) into a replay pool: `--workers` child processes render in the
background (0: `--fresh` windows rendered per step in the loop), every step trains on a batch
drawn from the pool. Windows of `--window` frames are mixed with single frames (`--single`).
Writes `last.pt`, `best.pt` (lowest validation loss), `log.jsonl`, `val/` and `pool/` into
`--out` (with `--ema`, also `ema.pt`: the moving average of the weights); `--resume` continues
from `last.pt`. See docs/network.md for the bundled model's command.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import random
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .losses import LossWeights, face_losses
from .network import FaceAnythingNet, NetConfig, get_config
from .network.weights import WeightsError, grow_deeper, load_onnx_weights

KEYS = ("images", "depth", "canonical", "mask", "intrinsics")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="cpu-tiny", help="network config name (training.network)")
    p.add_argument("--size", type=int, default=168, help="training input size (multiple of 14)")
    p.add_argument("--window", type=int, default=2, help="frames per training window")
    p.add_argument("--single", type=float, default=0.5,
                   help="fraction of batches whose windows are split into single frames")
    p.add_argument("--batch", type=int, default=4, help="windows per batch")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--pool", type=int, default=256, help="replay pool size (windows)")
    p.add_argument("--fresh", type=float, default=1.0, help="new windows rendered per step")
    p.add_argument("--val-windows", type=int, default=16)
    p.add_argument("--source", default="engine", choices=sorted(SOURCES),
                   help="engine: make_clip + Renderer; dataset: training.data.SyntheticFaces")
    p.add_argument("--grey-share", type=float, default=0.0,
                   help="share of engine clips rendered in greyscale (training.sequences.Variety)")
    p.add_argument("--faceless-share", type=float, default=0.0,
                   help="share of engine clips with the head out of the frame (empty mask)")
    p.add_argument("--workers", type=int, default=0,
                   help="background render processes (0: render in the training loop)")
    p.add_argument("--min-pool", type=int, default=1, help="windows in the pool before a step")
    p.add_argument("--val-every", type=int, default=200)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (and save) after this")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="also keep an exponential moving average of the weights (per step, e.g. "
                        "0.998), validated beside the weights and written to OUT/ema.pt; 0: none")
    p.add_argument("--snapshot-every", type=int, default=0, metavar="STEPS",
                   help="also keep the weights every this many steps in OUT/snap/ (model only, "
                        "for training.average; 0: none)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/default"))
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init", type=Path, default=None,
                   help="start from these weights (fresh optimizer and schedule): a checkpoint "
                        "(.pt) or an exported model (.onnx, e.g. the bundled default; its "
                        "weights are read back and checked against the file); a shallower "
                        "network is grown into --config (training.network.weights)")
    p.add_argument("--init-config", default=None,
                   help="the network config of an --init .onnx file (default: --config)")
    p.add_argument("--grow-scale", type=float, default=0.0,
                   help="LayerScale of the blocks added when --init is shallower than --config "
                        "(0: the grown network computes exactly what --init did, but the new "
                        "blocks' weights get no gradient until their scale grows; 0.02: they "
                        "train from the first step; training.network.weights)")
    p.add_argument("--replay", type=Path, action="append", default=[], metavar="DIR",
                   help="also fill the pool from windows an earlier run rendered (its pool/ "
                        "folder; read only, repeatable): with --workers 0 --fresh 0 a run "
                        "trains on them alone, with no rendering")
    p.add_argument("--no-pool-cache", action="store_true",
                   help="with --workers, keep rendered windows in memory only (no OUT/pool/: "
                        "a long run on many workers would fill the disk)")
    p.add_argument("--loss", action="append", default=[], metavar="TERM=WEIGHT",
                   help="override a LossWeights field (training.losses), e.g. depth=0.05 "
                        "(repeatable); validation uses the same weights")
    a = p.parse_args(argv)
    loss_weights(a.loss)  # fails early on a bad override
    if a.ema and not 0.0 < a.ema < 1.0:
        p.error(f"--ema {a.ema}: a decay between 0 and 1, e.g. 0.998 (0: no moving average)")
    return a


def loss_weights(overrides: list[str]) -> LossWeights:
    """LossWeights with `TERM=VALUE` overrides; an unknown term or a bad value is an error."""
    values = {}
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in LossWeights.__dataclass_fields__:
            raise SystemExit(f"--loss {item}: no loss weight {name!r}; the weights are "
                             + ", ".join(LossWeights.__dataclass_fields__))
        try:
            values[name] = float(value)
        except ValueError:
            raise SystemExit(f"--loss {item}: {value!r} is not a number") from None
    return LossWeights(**values)


def dataset_source(split: str, size: int, window: int, seed: int) -> Iterator[dict]:
    """Endless samples of `training.data.SyntheticFaces` (map-style or iterable alike)."""
    from .data import SyntheticFaces

    ds = SyntheticFaces(split, size=size, window=window, seed=seed)
    if hasattr(ds, "__getitem__") and hasattr(ds, "__len__"):
        rng = random.Random(seed)
        while True:
            yield ds[rng.randrange(len(ds))]
    while True:
        yield from ds


VAL_IDENTITY_BASE = 1 << 30  # identity seeds at and above: validation faces only


def engine_source(split: str, size: int, window: int, seed: int,
                  variety=None) -> Iterator[dict]:
    """Endless clips straight from the synthetic engine (`training.sequences.make_clip` +
    `training.render.Renderer`): train and validation use disjoint identity seeds; `variety`
    (`training.sequences.Variety`) adds greyscale and faceless clips."""
    from .head_model import load_head_model
    from .render import Renderer
    from .sequences import make_clip

    head = load_head_model()
    renderer = Renderer(head)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    while True:
        ident = int(rng.integers(0, VAL_IDENTITY_BASE))
        if split != "train":
            ident += VAL_IDENTITY_BASE
        frames = make_clip(head, ident, int(rng.integers(0, 1 << 62)), window, size, size,
                           variety=variety)
        with torch.no_grad():
            out = renderer.render(frames, size, size)
        yield {"images": out["rgb"], "depth": out["depth"], "canonical": out["canonical"],
               "mask": out["mask"], "intrinsics": out["intrinsics"],
               "vertex_xy": out["vertex_xy"], "vertex_visible": out["vertex_visible"],
               "vertex_depth": out["vertex_depth"], "blendshapes": out["blendshapes"]}


SOURCES = {"engine": engine_source, "dataset": dataset_source}


def engine_variety(args: argparse.Namespace):
    """The engine source with `--grey-share` / `--faceless-share` bound, or None when both are
    0 (the plain engine, every earlier run's data)."""
    from functools import partial

    from .sequences import Variety

    grey, faceless = getattr(args, "grey_share", 0.0), getattr(args, "faceless_share", 0.0)
    if not grey and not faceless:
        return None
    if args.source != "engine":
        raise SystemExit("--grey-share and --faceless-share need --source engine")
    try:
        variety = Variety(grey, faceless)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    return partial(engine_source, variety=variety)


def synthetic_source(split: str, size: int, window: int, seed: int,
                     kind: str = "engine") -> Iterator[dict]:
    """Samples of the synthetic engine, by `kind` (see SOURCES)."""
    return SOURCES[kind](split, size, window, seed)


def _render_worker(source, split, size, window, seed, queue, threads: int) -> None:
    """Renders forever. A sample that fails to render is reported on stderr and the source
    restarts with a derived seed, so one bad draw never silently ends the run's data."""
    import sys
    import traceback

    torch.set_num_threads(threads)
    for restart in range(1_000_000):
        try:
            for sample in source(split, size, window, seed + 7_777_777 * restart):
                queue.put(pack(sample))
        except Exception:  # noqa: BLE001 - any render failure: report, then go on
            print(f"render worker: a sample failed (restart {restart + 1}):\n"
                  f"{traceback.format_exc()}", file=sys.stderr, flush=True)


class BackgroundSource:
    """Runs a source in a child process; `poll()` returns what is ready without waiting."""

    def __init__(self, source, split: str, size: int, window: int, seed: int, threads: int = 1,
                 queue_size: int = 8):
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.queue = ctx.Queue(queue_size)
        self.proc = ctx.Process(target=_render_worker, daemon=True,
                                args=(source, split, size, window, seed, self.queue, threads))
        self.proc.start()

    def poll(self, block: bool = False) -> list[dict]:
        import queue as q

        items = []
        try:
            items.append(self.queue.get(block=block, timeout=600 if block else None))
            while True:
                items.append(self.queue.get_nowait())
        except q.Empty:
            pass
        if not items and not self.proc.is_alive():
            raise RuntimeError(f"the background render process ended (exit code "
                               f"{self.proc.exitcode}); its error is on stderr above")
        return items

    def close(self) -> None:
        self.proc.terminate()


def normalise(images: torch.Tensor, cfg: NetConfig) -> torch.Tensor:
    """[..., 3, H, W] in [0, 1] -> (rgb - mean) / std."""
    mean = torch.tensor(cfg.mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std = torch.tensor(cfg.std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - mean) / std


def pack(sample: dict) -> dict[str, np.ndarray]:
    """A window as compact numpy arrays (uint8 images) for queues and caches."""
    out = {}
    for k in KEYS + ("vertex_xy", "vertex_visible"):
        if k not in sample:
            continue
        v = torch.as_tensor(sample[k]).cpu()
        if k == "images" and v.dtype != torch.uint8:
            v = (v.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        out[k] = v.numpy()
    return out


def take(sample: dict) -> dict[str, torch.Tensor]:
    """The keys training needs, as float tensors (a window: leading dim S; images in [0, 1])."""
    out = {}
    for k in KEYS:
        v = torch.as_tensor(sample[k])
        out[k] = v.float() / 255 if v.dtype == torch.uint8 else v.float()
    return out


def collate(samples: list[dict], single: bool) -> dict[str, torch.Tensor]:
    """Windows -> batch [N, S, ...]; `single` turns every frame into its own clip [N*S, 1, ...]."""
    batch = {k: torch.stack([s[k] for s in samples]) for k in KEYS}
    if single:
        batch = {k: v.flatten(0, 1).unsqueeze(1) for k, v in batch.items()}
    return batch


class Merged:
    """Several background sources polled as one."""

    def __init__(self, sources: list[BackgroundSource]):
        self.sources = sources

    def poll(self, block: bool = False) -> list[dict]:
        items = [i for s in self.sources for i in s.poll()]
        while block and not items:
            time.sleep(0.2)
            items = [i for s in self.sources for i in s.poll()]
        return items


class ReplayPool:
    """A fixed-size pool of rendered windows (packed); new ones replace random old ones.

    Windows come from a synchronous iterator (`add(count)` renders that many) or from a
    `BackgroundSource` (`add()` takes whatever is ready). With `cache`, every new window is also
    written there as .npz, and existing files are loaded first (so a resumed run starts full);
    then a random choice of the windows in the `replay` folders (another run's cache) fills the
    rest."""

    def __init__(self, capacity: int, seed: int, source: Iterator[dict] | None = None,
                 background: BackgroundSource | None = None, cache: Path | None = None,
                 replay: Iterable[Path] = ()):
        self.source, self.background, self.capacity, self.cache = source, background, capacity, cache
        self.items: list[dict] = []
        self.rng = random.Random(seed)
        self.credit = 0.0
        self.seen = 0
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            files = sorted(cache.glob("*.npz"))
            self.seen = len(files)
            for f in files[-capacity:]:
                with np.load(f) as z:
                    self.items.append({k: z[k] for k in z.files})
        old = sorted(f for d in replay for f in Path(d).glob("*.npz"))
        for f in self.rng.sample(old, min(len(old), capacity - len(self.items))):
            with np.load(f) as z:
                self.items.append({k: z[k] for k in z.files})

    def _insert(self, item: dict) -> None:
        if self.cache is not None:
            np.savez(self.cache / f"{self.seen:06d}.npz", **item)
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
        else:
            self.items[self.rng.randrange(self.capacity)] = item

    def add(self, count: float = 0.0, minimum: int = 1) -> int:
        """Add new windows; waits until at least `minimum` are in the pool. Returns how many."""
        added = 0
        if self.background is not None:
            while True:
                for item in self.background.poll(block=len(self.items) < minimum):
                    self._insert(item)
                    added += 1
                if len(self.items) >= minimum:
                    return added
        self.credit += count
        while self.credit >= 1 or len(self.items) < minimum:
            self._insert(pack(next(self.source)))
            added += 1
            self.credit = max(self.credit - 1, 0.0)
        return added

    def batch(self, n: int) -> list[dict]:
        return [take(self.items[self.rng.randrange(len(self.items))]) for _ in range(n)]


def lr_at(step: int, args: argparse.Namespace, elapsed: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak over the steps, or over the time
    budget when `--max-minutes` is set (so a run cut by time still ends with a low rate)."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = min((step - args.warmup) / max(args.steps - args.warmup, 1), 1.0)
    if args.max_minutes:
        t = max(t, min(elapsed / (args.max_minutes * 60), 1.0))
    return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class WeightAverage:
    """An exponential moving average of a model's weights, updated after every step:
    small batches make the weights wander from step to step, and their average sits nearer
    the middle of where they wander."""

    def __init__(self, model: FaceAnythingNet, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema {decay}: a decay between 0 and 1, e.g. 0.998")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: FaceAnythingNet) -> None:
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()),
                             1.0 - self.decay)
        for b_mine, b in zip(self.model.buffers(), model.buffers()):
            b_mine.copy_(b)


@torch.no_grad()
def validate(model: FaceAnythingNet, val: list[dict], device: torch.device,
             weights: LossWeights = LossWeights(), bs: int = 4) -> dict:
    """Mean loss terms (weighted by `weights`) over the fixed validation windows."""
    model.eval()
    sums: dict[str, float] = {}
    for i in range(0, len(val), bs):
        batch = to_device(collate(val[i:i + bs], single=False), device)
        out = model(normalise(batch["images"], model.cfg))
        for k, v in face_losses(out, batch, weights).items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(val[i:i + bs])
    model.train()
    return {k: v / len(val) for k, v in sums.items()}


def save(path: Path, model, opt, step: int, args, best: float, elapsed: float = 0.0) -> None:
    """A checkpoint (written whole, then renamed); `opt` None keeps the weights alone."""
    tmp = path.with_suffix(".tmp")
    ckpt = {"model": model.state_dict(), "step": step, "config": model.cfg.to_dict(),
            "args": {k: str(v) for k, v in vars(args).items()}, "size": args.size, "best": best,
            "elapsed": elapsed}
    if opt is not None:
        ckpt["optimizer"] = opt.state_dict()
    torch.save(ckpt, tmp)
    tmp.replace(path)


def initial_model(path: Path, cfg: NetConfig, init_config: str | None = None,
                  grow_scale: float = 0.0) -> FaceAnythingNet:
    """The network `--init` names, in config `cfg`: from a checkpoint or an ONNX export (read
    back and checked), grown deeper when it is shallower than `cfg` (new blocks at LayerScale
    `grow_scale`; at 0 exactly what it computed)."""
    try:
        if path.suffix == ".onnx":
            start = load_onnx_weights(path, get_config(init_config) if init_config else cfg)
        else:
            start, _ = load_model(path)
        return grow_deeper(start, cfg, grow_scale).train()
    except WeightsError as exc:
        raise SystemExit(f"--init {path}: {exc}") from exc


def load_model(path: Path | str, device: str = "cpu") -> tuple[FaceAnythingNet, dict]:
    """A trained network from a checkpoint, in eval mode, and the checkpoint dict."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = FaceAnythingNet(NetConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def load_windows(folder: Path) -> list[dict]:
    """Packed windows saved as .npz in `folder` (sorted by name)."""
    out = []
    for f in sorted(folder.glob("*.npz")):
        with np.load(f) as z:
            out.append({k: z[k] for k in z.files})
    return out


def validation_set(source, args: argparse.Namespace) -> list[dict]:
    """The fixed validation windows: rendered once, kept in OUT/val/."""
    folder = args.out / "val"
    val = load_windows(folder) if folder.is_dir() else []
    if len(val) < args.val_windows:
        folder.mkdir(parents=True, exist_ok=True)
        src = source("val", args.size, args.window, 12345)
        for i in range(len(val)):
            next(src)
        for i in range(len(val), args.val_windows):
            item = pack(next(src))
            np.savez(folder / f"{i:04d}.npz", **item)
            val.append(item)
    return [take(v) for v in val[:args.val_windows]]


def train(args: argparse.Namespace,
          source: Callable[[str, int, int, int], Iterator[dict]] | None = None) -> dict:
    """Run training; returns the last logged record. `source(split, size, window, seed)`
    (default: the one `--source` names)."""
    source = source or engine_variety(args) or SOURCES[args.source]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model = FaceAnythingNet(get_config(args.config))
    step, best, elapsed = 0, float("inf"), 0.0
    last = args.out / "last.pt"
    ckpt = None
    if args.init is not None and not (args.resume and last.exists()):
        model = initial_model(args.init, model.cfg, args.init_config, args.grow_scale)
    if args.resume and last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        step, best, elapsed = ckpt["step"], ckpt.get("best", best), ckpt.get("elapsed", 0.0)
    # the render processes are forked before the model and the optimiser go to the GPU: the
    # children render on the CPU only and never touch CUDA, and the fork copies no GPU state
    workers = [BackgroundSource(source, "train", args.size, args.window, args.seed + 1000 * step + i)
               for i in range(args.workers)]
    model.to(device)
    ema = WeightAverage(model, args.ema) if args.ema else None
    if ema is not None and args.resume and (args.out / "ema.pt").exists():
        ema.model.load_state_dict(torch.load(args.out / "ema.pt", map_location=device,
                                             weights_only=False)["model"])
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
    val = validation_set(source, args)
    cache = args.out / "pool" if args.workers and not args.no_pool_cache else None
    pool = ReplayPool(args.pool, args.seed + step, background=Merged(workers) if workers else None,
                      source=None if workers else source("train", args.size, args.window,
                                                          args.seed + step), cache=cache,
                      replay=args.replay)
    rng = random.Random(args.seed * 7919 + step)
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
           else contextlib.nullcontext())
    log = (args.out / "log.jsonl").open("a")
    start, record = time.time() - elapsed, {}
    weights = loss_weights(args.loss)
    model.train()
    while step < args.steps:
        t0 = time.time()
        pool.add(args.fresh, minimum=args.min_pool)
        t_data = time.time() - t0
        batch = to_device(collate(pool.batch(args.batch), rng.random() < args.single), device)
        for g in opt.param_groups:
            g["lr"] = lr = lr_at(step, args, time.time() - start)
        with amp:
            out = model(normalise(batch["images"], model.cfg))
        terms = face_losses({k: v.float() for k, v in out.items()}, batch, weights)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if ema is not None:
            ema.update(model)
        step += 1
        record = {"step": step, "time": round(time.time() - start, 1), "lr": round(lr, 7),
                  "rendered": pool.seen,
                  "data_s": round(t_data, 3), "step_s": round(time.time() - t0, 3),
                  **{k: round(float(v.detach()), 4) for k, v in terms.items()}}
        stop = bool(args.max_minutes) and time.time() - start > args.max_minutes * 60
        if step % args.val_every == 0 or step == args.steps or stop:
            val_terms = validate(model, val, device, weights)
            record["val"] = {k: round(v, 4) for k, v in val_terms.items()}
            if ema is not None:
                record["val_ema"] = {k: round(v, 4) for k, v in
                                     validate(ema.model, val, device, weights).items()}
            if val_terms["total"] < best:
                best = val_terms["total"]
                save(args.out / "best.pt", model, opt, step, args, best, time.time() - start)
        if step % 10 == 0 or "val" in record:
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(json.dumps(record), flush=True)
        if step % args.ckpt_every == 0 or step == args.steps or stop:
            save(last, model, opt, step, args, best, time.time() - start)
            if ema is not None:
                save(args.out / "ema.pt", ema.model, None, step, args, best,
                     time.time() - start)
        if args.snapshot_every and (step % args.snapshot_every == 0 or step == args.steps
                                    or stop):
            (args.out / "snap").mkdir(exist_ok=True)
            save(args.out / "snap" / f"{step:07d}.pt", model, None, step, args, best,
                 time.time() - start)
        if stop:
            break
    log.close()
    for w in workers:
        w.close()
    return record


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
