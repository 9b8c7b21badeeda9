# SPDX-License-Identifier: GPL-3.0-or-later
"""The capture solve's expression fit (`core/expression_fit.py`) on the bundled template: speed,
and what it recovers from tracked meshes with known expression weights and noise.

Each frame: the bundled template (4,766 vertices, 52 ARKit targets) with random weights (each
target on with probability 0.2, its weight uniform in [0.2, 0.9]), posed (yaw up to 0.5 rad,
pitch 0.2, roll 0.1, 45-55 cm from the camera), the far half of the head unseen (as a frontal
camera sees it), and i.i.d. Gaussian noise on every coordinate (the tracking's noise). Timed:
`ExpressionModel.fit` over all frames (the one-off build of the model apart), best of 3 passes,
with the process's CPU time and the load average beside it (the machine is shared).

Run: .venv/bin/python -m bench.expression_bench [--frames 240]
Prints one JSON line (bench/run.py records it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from face_anything_addon.core.capture_run import bundled_templates
from face_anything_addon.core.expression_fit import DEFAULT_PRIOR_M, ExpressionModel
from face_anything_addon.core.template import Template
from tests.synthetic_maps import rotation


def frames_of(template: Template, count: int, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    rest = template.metric.astype(np.float64)
    deltas = template.blendshape_deltas.astype(np.float64)
    k = len(deltas)
    weights = np.where(rng.random((count, k)) < 0.2, rng.uniform(0.2, 0.9, (count, k)), 0.0)
    shapes = rest + np.einsum("nk,kvc->nvc", weights, deltas)
    positions = np.empty_like(shapes)
    for i in range(count):
        r = rotation(rng.uniform(-0.5, 0.5), rng.uniform(-0.2, 0.2), rng.uniform(-0.1, 0.1))
        positions[i] = shapes[i] @ r.T + [0.0, 0.0, rng.uniform(0.45, 0.55)]
    centre = positions.mean(1, keepdims=True)
    seen = positions[..., 2] < centre[..., 2]  # the half nearer the camera
    return weights, positions, positions + rng.normal(0, noise, positions.shape), seen


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=240)
    p.add_argument("--passes", type=int, default=3)
    a = p.parse_args(argv)
    template = Template.load(next(iter(bundled_templates().values())))
    t0 = time.perf_counter()
    model = ExpressionModel(template.metric, template.blendshape_deltas)
    build_s = time.perf_counter() - t0
    rows = []
    for noise_mm in (0.0, 1.0, 3.0):
        truth_w, truth, noisy, seen = frames_of(template, a.frames, noise_mm / 1000)
        best = cpu = None
        for _ in range(a.passes):
            c0, w0 = time.process_time(), time.perf_counter()
            fit = model.fit(noisy, seen)
            wall, used = time.perf_counter() - w0, time.process_time() - c0
            if best is None or wall < best:
                best, cpu = wall, used
        raw_mm = 1000 * np.linalg.norm(noisy - truth, axis=2).mean()
        fit_mm = 1000 * np.linalg.norm(fit.positions - truth, axis=2).mean()
        rows.append({"noise_mm": noise_mm, "frames": a.frames,
                     "ms_per_frame": round(1000 * best / a.frames, 2),
                     "cpu_ms_per_frame": round(1000 * cpu / a.frames, 2),
                     "weight_error": round(float(np.abs(fit.weights - truth_w).mean()), 4),
                     "tracked_mm": round(float(raw_mm), 3), "fitted_mm": round(float(fit_mm), 3)})
    json.dump({"vertices": template.vertex_count, "targets": model.count,
               "prior_mm": DEFAULT_PRIOR_M * 1000, "build_s": round(build_s, 2),
               "load_average_1min": round(os.getloadavg()[0], 2), "rows": rows}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
