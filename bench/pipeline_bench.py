# SPDX-License-Identifier: GPL-3.0-or-later
"""Pipeline benchmarks: overhead over bare `session.run`, and peak memory vs sequence length.

Run through `python3 build.py bench` (all benchmarks) or
`.venv/bin/python -m bench.pipeline_bench overhead|memory [args]`.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from face_anything_addon.core.contract import describe_model
from face_anything_addon.core.frames import Frame
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


class Footage:
    """Re-iterable synthetic footage generated on the fly (never all in memory)."""

    def __init__(self, count: int):
        self.count = count
        self.base = base_image()

    def __iter__(self):
        return (synthetic_frame(i, self.base) for i in range(self.count))


def overhead(model_path: Path, frames: int, resolution: int, region) -> dict:
    session = open_session(describe_model(model_path), "CPU")
    settings = PipelineSettings(face_region=region, resolution=resolution)
    footage = [synthetic_frame(i, base_image()) for i in range(frames)]

    # the exact tensors the pipeline feeds the model, for the bare runs
    inputs = []
    real_run = session.run

    def recording_run(images):
        inputs.append(images.copy())
        return real_run(images)

    session.run = recording_run
    list(Pipeline(session, settings).run(footage))  # warm caches, record inputs
    session.run = real_run

    t0 = time.perf_counter()
    for _ in Pipeline(session, settings).run(footage):
        pass
    pipeline_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for x in inputs:
        session.run(x)
    bare_s = time.perf_counter() - t0
    return {"model": model_path.stem, "resolution": resolution, "region": str(region),
            "frames": frames, "model_calls": len(inputs),
            "input_shape": list(inputs[-1].shape), "pipeline_s": round(pipeline_s, 3),
            "bare_session_run_s": round(bare_s, 3),
            "overhead_pct": round(100 * (pipeline_s / bare_s - 1), 2)}


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
    a = p.parse_args(argv)
    region = FACE_BOX if a.region == "box" else a.region
    fn = overhead if a.kind == "overhead" else memory
    json.dump(fn(a.model, a.frames, a.resolution, region), sys.stdout)
    print()


if __name__ == "__main__":
    main()
