# SPDX-License-Identifier: GPL-3.0-or-later
"""The geometry core (inversion + lift + pose + fill + markers) against the published approach
(a k-d tree over every confident pixel's canonical coordinate per frame, nearest pixel centre),
on exact rasterised maps of a known deforming, moving face mesh.

Run: .venv/bin/python -m bench.geometry_bench [--frames N] [--size 504] [--grid 71]
Prints one JSON line (the lead's bench/run.py records it).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from face_anything_addon.core.solve import CaptureSolver, SolveSettings, project
from tests.synthetic_maps import camera, face_mesh, posed, prediction, render, synthetic_template


def shot(mesh, frames: int, size: int, k):
    """A talking, turning head at 25 fps: small, smooth changes from frame to frame."""
    out = []
    for i in range(frames):
        t = i / 25
        pts = posed(mesh, amount=0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t),
                    yaw=0.4 * np.sin(2 * np.pi * 0.4 * t), pitch=0.1 * np.sin(2 * np.pi * 0.3 * t),
                    t=(0.01 * np.sin(t), 0.0, 0.45))
        out.append(render(mesh, pts, k, (size, size)))
    return out


def reference_track(pred, targets: np.ndarray, threshold: float = 0.02):
    """The published approach: nearest confident pixel centre in canonical space."""
    from scipy.spatial import cKDTree

    valid = pred.face_weight > 0.5
    ys, xs = np.nonzero(valid)
    tree = cKDTree(pred.canonical[ys, xs])
    dist, idx = tree.query(targets, distance_upper_bound=threshold)
    found = np.isfinite(dist)
    uv = np.full((len(targets), 2), np.nan)
    uv[found] = np.stack([xs[idx[found]] + 0.5, ys[idx[found]] + 0.5], 1)
    return uv, found


def run(frames: int, size: int, grid: int, noise: float = 0.0, occlude: float = 0.0,
        compare: bool = True) -> dict:
    mesh = face_mesh(grid)
    scale = float(np.abs(mesh.rest).max())
    k = camera((size, size), size * 2.0)
    renders = shot(mesh, frames, size, k)
    template = synthetic_template(mesh, {f"lm{i}": i * (len(mesh.rest) // 60) for i in range(60)})
    occluded = None
    if occlude:
        occluded = np.zeros((size, size), bool)
        face_cols = np.nonzero(renders[0].weight.any(0))[0]
        width = int((face_cols.max() - face_cols.min()) * occlude)
        occluded[:, face_cols.min():face_cols.min() + width] = True  # a band over the face
    preds = [prediction(r, i, scale, noise=noise, seed=i, occluded=occluded)
             for i, r in enumerate(renders)]
    solver = CaptureSolver(template, SolveSettings())
    solver.add(preds[0])  # the first frame's cold start is not the steady state
    t0 = time.perf_counter()
    for p in preds[1:]:
        solver.add(p)
    per_frame = (time.perf_counter() - t0) / (frames - 1)
    t0 = time.perf_counter()
    cap = solver.finish(camera=k, footage_name="bench", footage_size=(size, size), fps=25,
                        model=None, settings={})
    finish = (time.perf_counter() - t0) / frames
    ours = []
    for i, r in enumerate(renders):
        vis = cap.visibility[i] & r.visible
        ours.append(np.linalg.norm(project(k, cap.positions[i]) - r.uv, axis=1)[vis])
    ours = np.concatenate(ours)
    result = {"size": size, "vertices": len(mesh.rest), "frames": frames, "noise": noise,
              "occluded_fraction": occlude,
              "ours_ms_per_frame": round(1000 * (per_frame + finish), 2),
              "ours_fps": round(1 / (per_frame + finish), 1),
              "ours_median_px": round(float(np.median(ours)), 4),
              "ours_visible_fraction": round(float(cap.visibility.mean()), 3)}
    if compare:
        ref, ref_t = [], 0.0
        for i, (r, p) in enumerate(zip(renders, preds)):
            t0 = time.perf_counter()
            uv, found = reference_track(p, template.canonical)
            ref_t += time.perf_counter() - t0
            vis = found & r.visible
            ref.append(np.linalg.norm(uv[vis] - r.uv[vis], axis=1))
        ref = np.concatenate(ref)
        result.update({"reference_ms_per_frame": round(1000 * ref_t / frames, 2),
                       "reference_median_px": round(float(np.median(ref)), 4),
                       "error_ratio": round(float(np.median(ref) / np.median(ours)), 1)})
    return result


def inversion_only_ms(size: int, grid: int) -> float:
    """Per-frame time of the inversion step alone (warm-started), for the like-for-like speed
    comparison with the reference's tracking step."""
    from face_anything_addon.core.inversion import CanonicalMap, invert

    mesh = face_mesh(grid)
    scale = float(np.abs(mesh.rest).max())
    k = camera((size, size), size * 2.0)
    a, b = shot(mesh, 2, size, k)
    pa, pb = prediction(a, 0, scale), prediction(b, 1, scale)
    targets = (mesh.rest / scale).astype(np.float32)
    p0, _, _ = invert(CanonicalMap(pa.canonical, pa.face_weight), targets)
    t0 = time.perf_counter()
    for _ in range(10):
        invert(CanonicalMap(pb.canonical, pb.face_weight), targets, p0)
    return 1000 * (time.perf_counter() - t0) / 10


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--size", type=int, default=504)
    p.add_argument("--grid", type=int, default=71)
    a = p.parse_args(argv)
    main_run = run(a.frames, a.size, a.grid)
    inv_ms = inversion_only_ms(a.size, a.grid)
    main_run["ours_inversion_ms_per_frame"] = round(inv_ms, 2)
    main_run["speedup_inversion_vs_reference"] = round(main_run["reference_ms_per_frame"] / inv_ms,
                                                       1)
    curves = [run(max(4, a.frames // 3), 256, 51, noise=n, compare=True)
              for n in (0.0, 0.002, 0.005, 0.01)]
    curves += [run(max(4, a.frames // 3), 256, 51, occlude=o, compare=True) for o in (0.2, 0.4)]
    json.dump({"main": main_run, "curves": curves}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
