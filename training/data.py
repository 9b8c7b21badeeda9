# SPDX-License-Identifier: GPL-3.0-or-later
"""Datasets of synthetic faces: the API training code uses (see docs/synthetic-data.md).

`SyntheticFaces(split, size=256, window=S, seed=0)` is a map-style torch Dataset; item i is one
clip of S frames (S = 1: single frames) rendered on the fly, deterministically from
(seed, split, i). Splits draw identities from disjoint seed ranges (`IDENTITY_RANGES`), so no
face of the validation or test split is ever seen in training.

`validation_set()` is the fixed validation set: written once to `training/.cache/` and
regenerated identically on demand (`python -m training.data --check` proves it).
`write_cache` / `CachedFaces` keep rendered samples on disk for faster-than-rendering reading.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .assets import CACHE_DIR

# identity seeds [start, stop) per split: disjoint ranges
IDENTITY_RANGES = {"train": (0, 1 << 30), "val": (1 << 30, (1 << 30) + (1 << 29)),
                   "test": ((1 << 30) + (1 << 29), 1 << 31)}
SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
KEYS = ("images", "depth", "canonical", "mask", "intrinsics", "vertex_xy", "vertex_visible")
EXTRA_KEYS = ("region", "vertex_depth", "head_pose", "blendshapes")
VALIDATION_VERSION = 1


def identity_seed(split: str, index: int, num_identities: int | None = None) -> int:
    """The identity seed of item `index` of a split (num_identities: cycle over that many)."""
    start, stop = IDENTITY_RANGES[split]
    n = min(num_identities or (stop - start), stop - start)
    return start + (index * 2654435761) % n if n == stop - start else start + index % n


def clip_seed(seed: int, split: str, index: int) -> int:
    """The seed of everything but the identity in item `index` (62 bits)."""
    state = np.random.SeedSequence([seed, SPLIT_CODE[split], index]).generate_state(1, np.uint64)
    return int(state[0]) >> 2


@contextmanager
def single_thread():
    """Render with one torch thread (fast for this workload, and bit-reproducible)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _engine(device):
    from .head_model import load_head_model
    from .render import Renderer
    model = load_head_model()
    return model, Renderer(model, device)


def to_sample(out: dict[str, torch.Tensor], identity: int) -> dict[str, torch.Tensor]:
    """Renderer output -> the documented sample layout ([S, ...] tensors)."""
    sample = {"images": out["rgb"].float() / 255, "depth": out["depth"],
              "canonical": out["canonical"], "mask": out["mask"],
              "intrinsics": out["intrinsics"], "vertex_xy": out["vertex_xy"],
              "vertex_visible": out["vertex_visible"]}
    for key in EXTRA_KEYS:
        sample[key] = out[key]
    sample["identity"] = torch.tensor(identity)
    return sample


class SyntheticFaces(Dataset):
    """Clips of synthetic faces rendered on demand.

    split: "train", "val" or "test"; size: image side (square, pixels); window: frames per item
    (S); seed: changes every clip's pose, expression, light, props, background and effects (not
    the identities of the split); length: items per epoch; num_identities: cycle over this many
    identities (default: a fresh identity per item); device: where to render ("cpu", "cuda").
    Each item is a dict of tensors: images [S,3,H,W] float in [0, 1], depth [S,H,W] metres
    (0: no surface), canonical [S,H,W,3] (0 off the template), mask [S,H,W] (1: template
    surface), intrinsics [S,3,3], vertex_xy [S,V,2], vertex_visible [S,V] bool, plus region
    [S,H,W], vertex_depth [S,V], head_pose [S,4,4], blendshapes [S,52] and identity [].
    """

    def __init__(self, split: str = "train", size: int = 256, window: int = 1, seed: int = 0,
                 length: int = 100_000, num_identities: int | None = None,
                 device: str = "cpu", effects: bool = True, props: bool = True):
        if split not in IDENTITY_RANGES:
            raise ValueError(f"split must be one of {list(IDENTITY_RANGES)}")
        self.split, self.size, self.window, self.seed = split, size, window, seed
        self.length, self.num_identities = length, num_identities
        self.device, self.effects, self.props = device, effects, props
        self._engine = None

    def __len__(self) -> int:
        return self.length

    def __getstate__(self) -> dict:  # workers build their own engine
        return {**self.__dict__, "_engine": None}

    def frames(self, index: int):
        """The scene description (list of scene.Frame) of item `index`."""
        from .sequences import make_clip
        model = self._model()
        ident = identity_seed(self.split, index, self.num_identities)
        return make_clip(model, ident, clip_seed(self.seed, self.split, index), self.window,
                         self.size, self.size, props=self.props, effects=self.effects), ident

    def _model(self):
        if self._engine is None:
            self._engine = _engine(self.device)
        return self._engine[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        frames, ident = self.frames(index)
        with torch.no_grad():
            out = self._engine[1].render(frames, self.size, self.size, effects=self.effects)
        return to_sample(out, ident)

    def batch(self, indices) -> list[dict[str, torch.Tensor]]:
        """Several items rendered as one batch (much faster on a GPU); same values as items."""
        self._model()
        clips = [self.frames(i) for i in indices]
        frames = [f for clip, _ in clips for f in clip]
        with torch.no_grad():
            out = self._engine[1].render(frames, self.size, self.size, effects=self.effects)
        s = self.window
        return [to_sample({k: v[j * s:(j + 1) * s] for k, v in out.items()}, ident)
                for j, (_, ident) in enumerate(clips)]


def worker_init(_: int) -> None:
    """DataLoader worker_init_fn: one torch thread per worker process."""
    torch.set_num_threads(1)


# ---- the fixed validation set --------------------------------------------------------------------
def _validation_path(size: int) -> Path:
    return CACHE_DIR / f"validation_v{VALIDATION_VERSION}_{size}.npz"


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def render_validation(size: int = 256, frames: int = 64, clips: int = 8,
                      window: int = 8) -> dict[str, np.ndarray]:
    """The validation set's arrays: `frames` single frames then `clips` clips of `window`
    frames, all of the "val" split with seed 0, stacked along the first axis."""
    parts: dict[str, list[np.ndarray]] = {}
    with single_thread():
        for ds, count in ((SyntheticFaces("val", size, 1, seed=0, length=frames), frames),
                          (SyntheticFaces("val", size, window, seed=1, length=clips), clips)):
            for i in range(count):
                item = ds[i]
                item["images"] = (item["images"] * 255).round().to(torch.uint8)
                for key, value in item.items():
                    v = value.numpy()
                    parts.setdefault(key, []).append(v if v.ndim and key != "identity" else
                                                     np.broadcast_to(v, (value.shape[0] if v.ndim
                                                                         else ds.window,)))
    return {k: np.concatenate(v) for k, v in parts.items()}


def write_validation(size: int = 256, path: Path | None = None) -> Path:
    arrays = render_validation(size)
    path = path or _validation_path(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    path.with_suffix(".json").write_text(json.dumps(
        {"version": VALIDATION_VERSION, "size": size, "sha256": _digest(arrays),
         "frames": int(arrays["images"].shape[0]), "torch": torch.__version__}, indent=1))
    return path


def validation_set(size: int = 256) -> dict[str, torch.Tensor]:
    """The fixed validation set (written on first use): images [N,3,H,W] uint8, depth, canonical,
    mask, intrinsics, vertex_xy, vertex_visible, ... for N = 64 single frames followed by 8
    clips of 8 frames (frames 64 + 8 k .. 64 + 8 k + 7 are clip k)."""
    path = _validation_path(size)
    if not path.exists():
        write_validation(size)
    with np.load(path) as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


def check_validation(size: int = 256) -> bool:
    """Regenerate the validation set and compare it with the stored one, bit for bit."""
    path = _validation_path(size)
    if not path.exists():
        write_validation(size)
    stored = json.loads(path.with_suffix(".json").read_text())["sha256"]
    return _digest(render_validation(size)) == stored


# ---- an offline cache of rendered samples --------------------------------------------------------
def write_cache(directory: Path, split: str = "train", count: int = 1024, size: int = 256,
                window: int = 1, seed: int = 0, shard: int = 64) -> list[Path]:
    """Render `count` items into shards of `shard` items (npz); read them with CachedFaces."""
    directory.mkdir(parents=True, exist_ok=True)
    ds = SyntheticFaces(split, size, window, seed, length=count)
    paths = []
    for start in range(0, count, shard):
        items = [ds[i] for i in range(start, min(start + shard, count))]
        arrays = {k: np.stack([(it[k] * 255).round().to(torch.uint8).numpy() if k == "images"
                               else it[k].numpy() for it in items]) for k in items[0]}
        p = directory / f"{split}_{size}_w{window}_s{seed}_{start // shard:05d}.npz"
        np.savez_compressed(p, **arrays)
        paths.append(p)
    return paths


class CachedFaces(Dataset):
    """Items written by `write_cache` (same layout as SyntheticFaces items)."""

    def __init__(self, directory: Path, pattern: str = "*.npz"):
        self.paths = sorted(Path(directory).glob(pattern))
        self.counts = []
        for p in self.paths:
            with np.load(p) as data:
                self.counts.append(int(data["images"].shape[0]))
        self.starts = np.cumsum([0] + self.counts)
        self._open: tuple[int, dict] | None = None

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        k = int(np.searchsorted(self.starts, index, side="right") - 1)
        if self._open is None or self._open[0] != k:
            with np.load(self.paths[k]) as data:
                self._open = (k, {key: data[key] for key in data.files})
        j = index - int(self.starts[k])
        item = {key: torch.from_numpy(np.array(v[j])) for key, v in self._open[1].items()}
        item["images"] = item["images"].float() / 255
        return item


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="synthetic face data: validation set and caches")
    p.add_argument("--write-validation", action="store_true")
    p.add_argument("--check", action="store_true", help="regenerate the validation set, compare")
    p.add_argument("--cache", type=Path, help="write an offline cache into this folder")
    p.add_argument("--split", default="train")
    p.add_argument("--count", type=int, default=1024)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--window", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    t = time.time()
    if a.write_validation:
        print(write_validation(a.size))
    if a.check:
        print("validation set regenerates identically:", check_validation(a.size))
    if a.cache:
        print(len(write_cache(a.cache, a.split, a.count, a.size, a.window, a.seed)), "shards")
    print(f"{time.time() - t:.1f} s")


if __name__ == "__main__":
    main()
