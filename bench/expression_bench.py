# SPDX-License-Identifier: GPL-3.0-or-later
"""The capture solve's expression fit (`core/expression_fit.py`) on the bundled template: speed,
and what it recovers from tracked meshes with known expression weights, identity and noise.

Each frame: one actor's head (the bundled template's neutral face moved by its identity shapes,
each weight drawn from a unit Gaussian: a typical synthetic head) with random expression weights
(each of the 52 ARKit targets on with probability 0.2, its weight uniform in [0.2, 0.9]), posed
(yaw up to 0.5 rad, pitch 0.2, roll 0.1, 45-55 cm from the camera), the far half of the head
unseen (as a frontal camera sees it), and i.i.d. Gaussian noise on every coordinate (the
tracking's noise). Timed: the solve's fit (`CaptureSolver.fit_expressions`, its default settings:
the actor's face fitted first, then every frame) over all frames, best of 3 passes, with the
process's CPU time and the load average beside it (the machine is shared); and the same with
the template's neutral face (`identity_rounds=0`), as before the actor's face was fitted.

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
from face_anything_addon.core.solve import CaptureSolver, SolveSettings
from face_anything_addon.core.template import Template
from tests.synthetic_maps import rotation


def frames_of(template: Template, count: int, noise: float, seed: int = 0):
    """(true weights, true positions, noisy positions, seen, the actor's neutral face)."""
    rng = np.random.default_rng(seed)
    identity = template.identity_deltas.astype(np.float64)
    rest = template.metric.astype(np.float64) + np.tensordot(
        rng.normal(0, 1, len(identity)), identity, 1)
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
    return weights, positions, positions + rng.normal(0, noise, positions.shape), seen, rest


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=240)
    p.add_argument("--passes", type=int, default=3)
    a = p.parse_args(argv)
    template = Template.load(next(iter(bundled_templates().values())))
    default = SolveSettings()
    rows = []
    for face, settings in (("actor", default), ("template", SolveSettings(identity_rounds=0))):
        solver = CaptureSolver(template, settings)
        for noise_mm in (0.0, 1.0, 3.0):
            truth_w, truth, noisy, seen, actor = frames_of(template, a.frames, noise_mm / 1000)
            best = cpu = None
            for _ in range(a.passes):
                c0, w0 = time.process_time(), time.perf_counter()
                fit = solver.fit_expressions(noisy, seen)
                wall, used = time.perf_counter() - w0, time.process_time() - c0
                if best is None or wall < best:
                    best, cpu = wall, used
            raw_mm = 1000 * np.linalg.norm(noisy - truth, axis=2).mean()
            fit_mm = 1000 * np.linalg.norm(fit.positions - truth, axis=2).mean()
            rest_mm = 1000 * np.linalg.norm(fit.rest - actor, axis=1).mean()
            rows.append({"face": face, "noise_mm": noise_mm, "frames": a.frames,
                         "ms_per_frame": round(1000 * best / a.frames, 2),
                         "cpu_ms_per_frame": round(1000 * cpu / a.frames, 2),
                         "weight_error": round(float(np.abs(fit.weights - truth_w).mean()), 4),
                         "tracked_mm": round(float(raw_mm), 3),
                         "fitted_mm": round(float(fit_mm), 3),
                         "neutral_face_mm": round(float(rest_mm), 3)})
    json.dump({"vertices": template.vertex_count, "targets": len(template.blendshape_names),
               "identity_shapes": len(template.identity_deltas),
               "prior_mm": default.expression_prior_mm,
               "identity_prior_mm": default.identity_prior_mm,
               "identity_rounds": default.identity_rounds, "depth_weight": default.depth_weight,
               "load_average_1min": round(os.getloadavg()[0], 2), "rows": rows}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
