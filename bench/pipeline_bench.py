# SPDX-License-Identifier: GPL-3.0-or-later
"""Pipeline benchmarks: overhead over bare `session.run`, and peak memory vs sequence length.

Run through `python3 build.py bench` (all benchmarks) or
`.venv/bin/python -m bench.pipeline_bench overhead|memory [args]`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from face_anything_addon.core.contract import describe_model
from face_anything_addon.core.frames import Frame, from_blender_pixels
from face_anything_addon.core.pipeline import Pipeline, PipelineSettings
from face_anything_addon.core.session import open_session

WIDTH, HEIGHT = 1920, 1080
FACE_BOX = (610.0, 190.0, 1310.0, 890.0)  # a 700 px face in 1080p


def synthetic_frame(number: int, base: np.ndarray) -> Frame:
    """A 1080p frame: a fixed textured base shifted a little per frame (cheap to make)."""
    shift = number % 17
    return Frame(number, np.roll(base, shift, axis=1))


def base_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((HEIGHT // 8, WIDTH // 8, 3), dtype=np.float32)
    return np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)


def blender_buffer(frame: Frame) -> np.ndarray:
    """The frame as Blender hands it over: flat RGBA float32, bottom row first."""
    h, w = frame.image.shape[:2]
    rgba = np.concatenate([frame.image, np.ones((h, w, 1), np.float32)], axis=2)[::-1]
    return np.ascontiguousarray(rgba).ravel()


class ReaderFrames:
    """Frames as the add-on's readers give them: they know the footage size and, asked
    `reduced(n)` by the pipeline, copy each frame out of Blender's buffer as means of n x n
    blocks (`from_blender_pixels`). The copies are made once, on the first (untimed) run, as the
    full-size frames are made before timing: reading is measured on its own (`copy_ms`)."""

    def __init__(self, frames: list[Frame]):
        self.frames, self.size = frames, frames[0].size
        self.asked: list[int] = []
        self._made: dict[int, list[Frame]] = {}

    def reduced(self, factor: int) -> list[Frame]:
        self.asked.append(factor)
        if factor not in self._made:
            self._made[factor] = [
                Frame(f.number, from_blender_pixels(blender_buffer(f), *f.size, 4, factor),
                      f.size, (1 / factor, 1 / factor)) if factor > 1 else f
                for f in self.frames]
        return self._made[factor]

    def __iter__(self):
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)


def copy_ms(frame: Frame, block: int, reps: int = 7) -> float:
    """ms to copy one frame out of Blender's buffer (`from_blender_pixels`) in blocks of
    `block` (1: the plain copy every reader makes), best of `reps`."""
    flat = blender_buffer(frame)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        from_blender_pixels(flat, *frame.size, 4, block)
        best = min(best, time.perf_counter() - t0)
    return round(1000 * best, 2)


class Footage:
    """Re-iterable synthetic footage generated on the fly (never all in memory)."""

    def __init__(self, count: int):
        self.count = count
        self.base = base_image()

    def __iter__(self):
        return (synthetic_frame(i, self.base) for i in range(self.count))


def overhead(model_path: Path, frames: int, resolution: int, region, reps: int = 5,
             pipelined: bool = True, reader: bool = False) -> dict:
    """Pipeline time over the time of bare `session.run` on the very tensors the pipeline feeds
    the model. The machine is shared, so the two are measured in `reps` adjacent pairs (order
    alternating) and the overhead is the median of the pairs' ratios. reader: the frames come
    from a source that reduces them when the pipeline asks (`ReaderFrames`, as the add-on's
    readers do); else full-size 1080p arrays."""
    session = open_session(describe_model(model_path), "CPU")
    options = {"pipelined": pipelined} if "pipelined" in PipelineSettings.__dataclass_fields__ \
        else {}
    settings = PipelineSettings(face_region=region, resolution=resolution, **options)
    footage = [synthetic_frame(i, base_image()) for i in range(frames)]
    if reader:
        footage = ReaderFrames(footage)

    # the exact tensors the pipeline feeds the model, for the bare runs
    inputs = []
    real_run = session.run

    def recording_run(images):
        inputs.append(images.copy())
        return real_run(images)

    session.run = recording_run
    list(Pipeline(session, settings).run(footage))  # warm caches, record inputs
    session.run = real_run

    def pipeline_s() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in Pipeline(session, settings).run(footage):
            pass
        return time.perf_counter() - t0, time.process_time() - c0

    def bare_s() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        for x in inputs:
            session.run(x)
        return time.perf_counter() - t0, time.process_time() - c0

    # the pipeline's own work, with the network replaced by its recorded outputs: a steadier
    # figure than the pairs (no network to share the cores with), best of `reps` runs
    outputs = {}
    for x in inputs:
        outputs.setdefault(x.shape, real_run(x))
    session.run = lambda images: outputs[images.shape]
    own = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in Pipeline(session, settings).run(footage):
            pass
        own.append(time.perf_counter() - t0)
    session.run = real_run

    bare_s()
    pairs = []  # (pipeline wall, pipeline CPU, bare wall, bare CPU)
    for rep in range(reps):
        if rep % 2:
            b = bare_s()
            pairs.append((*pipeline_s(), *b))
        else:
            pairs.append((*pipeline_s(), *bare_s()))
    pipe, pipe_cpu, bare, bare_cpu = np.array(pairs).T
    ratios = pipe / bare
    extra = {}
    if reader:
        block = footage.asked[-1]
        extra = {"frames_in": f"reader, 1/{block}" if block > 1 else "reader, full size",
                 "reader_copy_ms": {"full size": copy_ms(footage.frames[0], 1),
                                    f"1/{block}": copy_ms(footage.frames[0], block)}}
    return {"model": model_path.stem, "resolution": resolution, "region": str(region), **extra,
            "frames": frames, "model_calls": len(inputs), "pipelined": pipelined,
            "input_shape": list(inputs[-1].shape), "reps": reps,
            "pipeline_s": round(float(np.median(pipe)), 3),
            "bare_session_run_s": round(float(np.median(bare)), 3),
            "overhead_pct": round(100 * (float(np.median(ratios)) - 1), 2),
            "overhead_pct_range": [round(100 * (float(r) - 1), 1) for r in
                                   (ratios.min(), ratios.max())],
            # CPU time of the whole process (all threads): the work added, whatever the load
            "cpu_overhead_pct": round(100 * (float(np.median(pipe_cpu / bare_cpu)) - 1), 2),
            "own_ms_per_frame": round(1000 * min(own) / frames, 2),
            "own_pct": round(100 * min(own) / float(np.median(bare)), 2),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory(model_path: Path, frames: int, resolution: int, region) -> dict:
    session = open_session(describe_model(model_path), "CPU")
    footage = Footage(frames)
    next(iter(footage))  # one frame made, as any reader holds one
    baseline = rss_mb()
    peak = [baseline]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.02):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    done = sum(1 for _ in Pipeline(session, PipelineSettings(
        face_region=region, resolution=resolution)).run(footage, total=frames))
    elapsed = time.perf_counter() - t0
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], rss_mb())
    return {"model": model_path.stem, "frames": done, "region": str(region),
            "resolution": resolution, "baseline_rss_mb": round(baseline, 1),
            "peak_rss_mb": round(peak[0], 1), "added_mb": round(peak[0] - baseline, 1),
            "seconds": round(elapsed, 1)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["overhead", "memory"])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--resolution", type=int, default=504)
    p.add_argument("--region", default="box", choices=["box", "full", "auto"])
    p.add_argument("--reps", type=int, default=5, help="overhead: measured pairs")
    p.add_argument("--serial", action="store_true",
                   help="overhead: the network on the calling thread (PipelineSettings.pipelined off)")
    p.add_argument("--reader", action="store_true",
                   help="overhead: frames from a reader that reduces them as the pipeline asks")
    a = p.parse_args(argv)
    region = FACE_BOX if a.region == "box" else a.region
    if a.kind == "overhead":
        result = overhead(a.model, a.frames, a.resolution, region, a.reps, not a.serial,
                          a.reader)
    else:
        result = memory(a.model, a.frames, a.resolution, region)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
