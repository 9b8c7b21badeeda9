# SPDX-License-Identifier: GPL-3.0-or-later
"""Scene building: build_scene on a long shot, against the same build keyed with keyframe_insert;
playback evaluation per frame and .blend size for both animation storages.

Shot: 1,000 frames, a 71 x 71 grid face (5,041 vertices, 9,800 triangles), 60 markers, synthetic
(a rigidly moving, slightly deforming surface ~0.6 m in front of the camera).
Run: .venv/bin/python -m bench.scene_bench [--frames N] [--no-write]
Writes bench/scene_results.json and bench/SCENE.md; prints one JSON line at the end.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
GRID, MARKERS = 71, 60
K = [[1400.0, 0.0, 960.5], [0.0, 1400.0, 540.5], [0.0, 0.0, 1.0]]


def synthetic_capture(frames: int):
    """A Capture of `frames` frames (numbers 1..frames), vectorised."""
    import numpy as np

    from face_anything_addon.core.capture import Capture

    rng = np.random.default_rng(0)
    u, v = np.meshgrid(np.linspace(-0.07, 0.07, GRID), np.linspace(-0.09, 0.09, GRID),
                       indexing="ij")
    rest = np.stack([u, v, -2.0 * (u ** 2 + v ** 2)], -1).reshape(-1, 3).astype(np.float32)
    i, j = np.meshgrid(np.arange(GRID - 1), np.arange(GRID - 1), indexing="ij")
    a = (i * GRID + j).ravel()
    faces = np.concatenate([np.stack([a, a + GRID, a + 1], 1),
                            np.stack([a + 1, a + GRID, a + GRID + 1], 1)]).astype(np.int32)
    t = np.arange(1, frames + 1, dtype=np.float64)
    yaw, pitch = 0.3 * np.sin(t / 40), 0.15 * np.sin(t / 25)
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    rot = np.zeros((frames, 3, 3))
    rot[:, 0, 0], rot[:, 0, 2], rot[:, 1, 1], rot[:, 2, 0], rot[:, 2, 2] = cy, sy, 1, -sy, cy
    tilt = np.zeros((frames, 3, 3))
    tilt[:, 0, 0], tilt[:, 1, 1], tilt[:, 1, 2], tilt[:, 2, 1], tilt[:, 2, 2] = 1, cp, -sp, sp, cp
    pose = np.tile(np.eye(4), (frames, 1, 1))
    pose[:, :3, :3] = rot @ tilt
    pose[:, :3, 3] = np.stack([0.02 * np.sin(t / 30), 0.01 * np.cos(t / 20),
                               0.6 + 0.05 * np.sin(t / 50)], 1)
    wave = 0.003 * np.sin(t[:, None] / 7 + rest[None, :, 0] * 40)
    local = rest[None].repeat(frames, 0)
    local[..., 2] += wave
    positions = (np.einsum("nij,nvj->nvi", pose[:, :3, :3], local)
                 + pose[:, None, :3, 3]).astype(np.float32)
    on = np.linspace(0, len(rest) - 1, MARKERS).astype(int)
    xyz = positions[:, on]
    h = xyz @ np.asarray(K).T
    return Capture(
        template_name="grid", canonical_space="bench", rest_vertices=rest,
        template_canonical=rest * 10, faces=faces,
        uvs=rng.random((len(faces), 3, 2)).astype(np.float32), region_names=["skin", "lips"],
        vertex_region=(np.arange(len(rest)) % 3 - 1).astype(np.int16),
        frame_numbers=np.arange(1, frames + 1, dtype=np.int64), positions=positions,
        visibility=rng.random((frames, len(rest))) > 0.2, head_pose=pose.astype(np.float32),
        intrinsics=np.tile(np.asarray(K), (frames, 1, 1)), camera=np.asarray(K),
        marker_names=[f"marker_{k:02d}" for k in range(MARKERS)],
        marker_xy=(h[..., :2] / h[..., 2:]).astype(np.float32), marker_xyz=xyz,
        marker_visible=rng.random((frames, MARKERS)) > 0.1,
        marker_residual=np.zeros((frames, MARKERS), np.float32), footage_name="bench",
        footage_size=(1920, 1080), fps=24.0, model_name="synthetic", contract_version="1",
        depth_units="metric")


# ------------------------------------------------------------------ the keyframe_insert variant

@contextmanager
def keyframe_insert_build():
    """Inside, build_scene keys everything one `keyframe_insert` at a time (the usual add-on
    way) instead of writing F-curves in bulk; everything else is the same build."""
    import numpy as np

    from face_anything_addon.blender import face_mesh, markers
    from face_anything_addon.blender.axes import points_to_blender

    bulk = face_mesh.add_frame_shape_keys, markers.key_marker, markers.key_head

    def shape_keys(ob, basis, positions, frames, action_name):
        ob.shape_key_add(name="Basis", from_mix=False)
        blocks = [ob.shape_key_add(name=face_mesh.shape_key_name(int(f)), from_mix=False)
                  for f in frames]
        flat = np.ascontiguousarray(positions, np.float32).reshape(len(frames), -1)
        for block, co in zip(blocks, flat):
            face_mesh._points(block).foreach_set("co", co)
        for block, (key_frames, values) in zip(blocks, face_mesh.pulse_keys(frames)):
            for f, value in zip(key_frames.tolist(), values.tolist()):
                block.value = value
                block.keyframe_insert("value", frame=f)
        return ob.data.shape_keys

    def key_marker(ob, frames, xyz_cv, visible):
        ob[markers.VISIBLE_PROPERTY] = 0
        for f, p, v in zip(frames.tolist(), points_to_blender(xyz_cv).tolist(), visible.tolist()):
            ob.location = p
            ob.keyframe_insert("location", frame=f)
            ob[markers.VISIBLE_PROPERTY] = int(v)
            ob.keyframe_insert(f'["{markers.VISIBLE_PROPERTY}"]', frame=f)

    def key_head(ob, frames, head_pose):
        location, rotation, scale = markers.decompose(head_pose)
        ob.rotation_mode = "QUATERNION"
        for f, p, q, s in zip(frames.tolist(), location.tolist(), rotation.tolist(),
                              scale.tolist()):
            ob.location, ob.rotation_quaternion, ob.scale = p, q, (s, s, s)
            for path in ("location", "rotation_quaternion", "scale"):
                ob.keyframe_insert(path, frame=f)

    face_mesh.add_frame_shape_keys, markers.key_marker, markers.key_head = (
        shape_keys, key_marker, key_head)
    try:
        yield
    finally:
        face_mesh.add_frame_shape_keys, markers.key_marker, markers.key_head = bulk


# --------------------------------------------------------------------------------- measures

def fresh_file():
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)


def timed_build(capture, capture_path, storage="SHAPE_KEYS"):
    import bpy

    from face_anything_addon.blender import scene

    fresh_file()
    start = time.perf_counter()
    coll = scene.build_scene(bpy.context, capture, storage=storage, capture_path=capture_path)
    return time.perf_counter() - start, coll


def playback_ms(coll, frames: int, live_visibility: bool = True, samples: int = 1000,
                passes: int = 2) -> float:
    """Mean ms per frame of scene.frame_set + reading the evaluated face's vertices, stepping
    through the shot in order as playback does."""
    import bpy
    import numpy as np

    from face_anything_addon.blender import visibility

    face = next(ob for ob in coll.objects if ob.type == "MESH" and not ob.hide_render)
    face.modifiers[visibility.MODIFIER_NAME].show_viewport = live_visibility
    scene = bpy.context.scene
    buf = np.empty(len(face.data.vertices) * 3, np.float32)
    chosen = np.linspace(1, frames, min(samples, frames)).astype(int).tolist()
    best = math.inf
    for _ in range(passes):  # the best pass
        scene.frame_set(chosen[0])
        start = time.perf_counter()
        for f in chosen:
            scene.frame_set(f)
            dg = bpy.context.evaluated_depsgraph_get()
            face.evaluated_get(dg).data.vertices.foreach_get("co", buf)
        best = min(best, (time.perf_counter() - start) / len(chosen) * 1000)
    return best


def name_paths(coll):
    """The same result with the shape-key F-curves addressing keys by name (Blender's usual
    `key_blocks["frame_0001"].value`) instead of by index: what face_mesh.value_path avoids."""
    from face_anything_addon.blender import animation

    face = next(ob for ob in coll.objects if ob.type == "MESH" and not ob.hide_render)
    blocks = face.data.shape_keys.key_blocks
    for fc in animation.fcurves_of(face.data.shape_keys):
        index = int(fc.data_path.split("[")[1].split("]")[0])
        fc.data_path = f'key_blocks["{blocks[index].name}"].value'
    return coll


def blend_mb(folder: Path, name: str) -> float:
    import bpy

    path = folder / f"{name}.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=False, copy=True)
    return round(path.stat().st_size / 1e6, 1)


def length_scaling(lengths) -> dict:
    """Playback ms per frame for both storages at several shot lengths (200 frames sampled,
    live visibility on)."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="fa-scene-bench-") as tmp:
        for frames in lengths:
            capture = synthetic_capture(frames)
            row = {}
            for storage in ("SHAPE_KEYS", "POINT_CACHE"):
                _, coll = timed_build(capture, Path(tmp) / "c.npz", storage)
                row[storage.lower()] = round(playback_ms(coll, frames, samples=200, passes=1), 2)
            out[str(frames)] = row
            del capture
    return out


def machine() -> dict:
    import bpy
    import numpy

    return {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "numpy": numpy.__version__,
            "blender": bpy.app.version_string, "date": time.strftime("%Y-%m-%d"),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def run(frames: int, repeats: int = 3) -> dict:
    capture = synthetic_capture(frames)
    out = {"machine": machine(), "frames": frames, "vertices": len(capture.rest_vertices),
           "triangles": len(capture.faces), "markers": MARKERS}
    with tempfile.TemporaryDirectory(prefix="fa-scene-bench-") as tmp:
        folder = Path(tmp)
        capture_path = folder / "bench.capture.npz"
        builds = {"SHAPE_KEYS": [], "POINT_CACHE": []}
        for _ in range(repeats):
            for storage in builds:
                builds[storage].append(timed_build(capture, capture_path, storage)[0])
        with keyframe_insert_build():
            slow, _ = timed_build(capture, capture_path)
        fast = statistics.median(builds["SHAPE_KEYS"])
        out["build_s"] = {s: round(statistics.median(v), 3) for s, v in builds.items()}
        out["build_keyframe_insert_s"] = round(slow, 3)
        out["speedup_vs_keyframe_insert"] = round(slow / fast, 1)
        for storage in builds:
            _, coll = timed_build(capture, capture_path, storage)
            key = storage.lower()
            out[f"playback_ms_{key}"] = round(playback_ms(coll, frames), 3)
            out[f"playback_ms_{key}_no_live_visibility"] = round(
                playback_ms(coll, frames, live_visibility=False), 3)
            out[f"blend_mb_{key}"] = blend_mb(folder, key)
            if storage == "SHAPE_KEYS":
                out["playback_ms_shape_keys_name_paths"] = round(
                    playback_ms(name_paths(coll), frames, samples=200, passes=1), 3)
        out["pc2_mb"] = round((folder / "bench.capture.pc2").stat().st_size / 1e6, 1)
    out["playback_ms_by_length"] = length_scaling((500, 1000, 2000, 3000))
    out["goals"] = {"build_at_most_3_s": out["build_s"]["SHAPE_KEYS"] <= 3.0,
                    "at_least_20x_faster_than_keyframe_insert":
                        out["speedup_vs_keyframe_insert"] >= 20}
    return out


def markdown(r: dict) -> str:
    m = r["machine"]
    return "\n".join([
        "# Scene building benchmark", "",
        f"Recorded {m['date']} on {m['cpu_count']} CPU cores ({m['processor']}), Blender "
        f"{m['blender']} (bpy module), Python {m['python']}, numpy {m['numpy']}; load average "
        f"{m['load_average_1min']} when it started. "
        "Rerun: `.venv/bin/python -m bench.scene_bench`.", "",
        f"Shot: {r['frames']} frames, {r['vertices']}-vertex face ({r['triangles']} triangles), "
        f"{r['markers']} markers, synthetic. Build = `build_scene` on an empty file (camera, "
        "face, visibility, markers, head), median of 3. Playback = `scene.frame_set` + reading "
        "the evaluated face's vertices, mean over every frame in order, the better of two "
        "passes (name paths: 200 frames, one pass).", "",
        "| | shape keys (default) | point cache (.pc2) |", "| --- | --- | --- |",
        f"| build, s | {r['build_s']['SHAPE_KEYS']} | {r['build_s']['POINT_CACHE']} |",
        f"| build with `keyframe_insert` instead of bulk F-curves, s | "
        f"{r['build_keyframe_insert_s']} ({r['speedup_vs_keyframe_insert']}x slower) | |",
        f"| playback, ms per frame | {r['playback_ms_shape_keys']} | "
        f"{r['playback_ms_point_cache']} |",
        f"| playback without the live visibility modifier, ms per frame | "
        f"{r['playback_ms_shape_keys_no_live_visibility']} | "
        f"{r['playback_ms_point_cache_no_live_visibility']} |",
        f"| playback with shape keys addressed by name (Blender's usual paths), ms per frame | "
        f"{r['playback_ms_shape_keys_name_paths']} | |",
        f"| .blend size (uncompressed), MB | {r['blend_mb_shape_keys']} | "
        f"{r['blend_mb_point_cache']} + {r['pc2_mb']} (.pc2) |", "",
        "Playback against shot length, ms per frame (200 frames sampled):", "",
        "| frames | shape keys | point cache |", "| --- | --- | --- |",
        *[f"| {n} | {v['shape_keys']} | {v['point_cache']} |"
          for n, v in r["playback_ms_by_length"].items()], "",
        f"Goals: build at most 3 s: {'met' if r['goals']['build_at_most_3_s'] else 'NOT met'}; "
        f"at least 20x faster than `keyframe_insert`: "
        f"{'met' if r['goals']['at_least_20x_faster_than_keyframe_insert'] else 'NOT met'}.", "",
        "Blender resolves every animated data path on every frame; a shape key addressed by name "
        "is found by comparing names along the key list, so a thousand pulse F-curves by name cost "
        "quadratically more than by index (the add-on's paths). Shape keys still grow "
        "quadratically with the shot length (an index lookup walks the list too): choose the "
        "point cache for long shots: it reads one frame from the .pc2 whatever the length (what "
        "grows is the live visibility table, one attribute per 24 frames) and keeps the .blend "
        "small (the .pc2 sits beside the capture file). Live visibility is the Geometry Nodes "
        "modifier that writes `fa_visible`. Timings on a shared 2-core machine vary by 1-2 ms "
        "and builds by ~2x between runs.", ""])


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--no-write", action="store_true", help="print only; leave the files")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    r = run(a.frames)
    if not a.no_write:
        (BENCH / "scene_results.json").write_text(json.dumps(r, indent=1) + "\n")
        (BENCH / "SCENE.md").write_text(markdown(r))
    print(json.dumps(r))


if __name__ == "__main__":
    main()
