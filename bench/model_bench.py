# SPDX-License-Identifier: GPL-3.0-or-later
"""Speed of the bundled model on the CPU, the number its issue sets (at least 5 frames per second
on 2 cores at its default resolution), in two ways:

- network: bare `session.run` on windows of 1 and of 4 frames at the model's input size, as the
  add-on's session opens it (all cores);
- capture: the add-on's whole prediction pipeline on 1080p frames as the add-on's readers give
  them (reduced in pixel blocks where the pipeline asks: `bench.pipeline_bench.ReaderFrames`,
  copies made on an untimed first run), face region 'auto' (the face-finding pass on whole
  frames, then every frame on its face crop), window 1 (the add-on's default); frames per
  second of footage, both passes and the pipeline's own work included;
  and again with a lens's distortion undone (`core.lens_distortion.UndistortedFrames`, as Clip's
  Camera and `--distortion` read footage: only each crop's pixels are undistorted; the sampling
  maps made anew for each run, as for each capture).

    .venv/bin/python -m bench.model_bench [--model M.onnx] [--frames 40] [--reps 5]

Prints one JSON object (bench/run.py records it).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bench.pipeline_bench import ReaderFrames
from face_anything_addon.core.contract import describe_model
from face_anything_addon.core.frames import Frame
from face_anything_addon.core.pipeline import Pipeline, PipelineError, PipelineSettings
from face_anything_addon.core.session import open_session

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "face_anything_addon" / "assets" / "face_anything_default.onnx"


def face_frames(count: int, width: int = 1920, height: int = 1080) -> list[Frame]:
    """1080p frames of a bright ellipse (a face-sized blob on a darker background) drifting a
    little: something the face-finding pass may or may not take for a face; the capture figure
    falls back to the whole frame when it does not (`found` says which)."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    out = []
    for i in range(count):
        cx, cy = width / 2 + 3 * i, height / 2
        inside = ((xx - cx) / 300) ** 2 + ((yy - cy) / 380) ** 2 <= 1
        img = np.full((height, width, 3), 0.2, np.float32)
        img[inside] = (0.85, 0.65, 0.55)
        out.append(Frame(i + 1, img))
    return out


def network_fps(session, window: int, reps: int, frames: int) -> dict:
    h, w = session.description.fixed_size or (session.description.input_size,) * 2
    x = np.random.default_rng(0).standard_normal((1, window, 3, h, w)).astype(np.float32)
    session.run(x)
    runs = max(1, frames // window)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(runs):
            session.run(x)
        times.append((time.perf_counter() - t0) / (runs * window))
    return {"window": window, "input": [h, w], "fps_median": round(1 / float(np.median(times)), 1),
            "fps_best": round(1 / float(np.min(times)), 1), "reps": reps,
            "frames_per_rep": runs * window}


LENS = ("POLYNOMIAL", (-0.12, 0.02, 0.0), 1400.0)  # a wide lens's barrel distortion


def capture_fps(session, frames, reps: int, undistort: bool = False) -> dict:
    from face_anything_addon.core.lens_distortion import LensDistortion, UndistortedFrames

    times, found = [], True
    w, h = frames.size
    for rep in range(reps + 1):  # the first, untimed: the reader's reduced copies are made
        settings = PipelineSettings(window=1, face_region="auto")
        t0 = time.perf_counter()
        source = frames
        if undistort:  # a new capture: its own sampling maps
            model, coefficients, focal = LENS
            source = UndistortedFrames(frames, LensDistortion(model, coefficients, focal,
                                                              (w / 2, h / 2), (w, h)))
        try:
            for _ in Pipeline(session, settings).run(source, total=len(frames)):
                pass
        except PipelineError:  # no face found in the blob: time the whole frame instead
            found = False
            for _ in Pipeline(session, PipelineSettings(window=1, face_region="full")).run(
                    source, total=len(frames)):
                pass
        if rep:
            times.append((time.perf_counter() - t0) / len(frames))
    return {"frames": len(frames), "footage": "1920x1080 footage", "face_found": found,
            "fps_median": round(1 / float(np.median(times)), 1),
            "fps_best": round(1 / float(np.min(times)), 1), "reps": reps}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=BUNDLED)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args(argv)
    desc = describe_model(a.model)
    session = open_session(desc, "CPU")
    frames = ReaderFrames(face_frames(a.frames))
    result = {"model": a.model.name, "name": desc.name, "bytes": a.model.stat().st_size,
              "load_average_1min": round(os.getloadavg()[0], 2),
              "network": [network_fps(session, w, a.reps, a.frames) for w in (1, 4)],
              "capture": capture_fps(session, frames, max(1, a.reps // 2)),
              "capture_undistorted": capture_fps(session, frames, max(1, a.reps // 2), True)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
