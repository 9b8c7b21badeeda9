# SPDX-License-Identifier: GPL-3.0-or-later
"""The face mesh: template topology, UVs, regions, and its per-frame animation as shape keys.

Shape keys: a "Basis" (the neutral template placed by the first usable head pose) and one key per
captured frame holding that frame's vertex positions (Blender camera space, i.e. the mesh's local
space under the camera). Key i is keyed 0 at the previous captured frame, 1 at its own frame and 0
at the next captured frame (linear), so between captured frames the mesh blends the two neighbours
and before the first / after the last frame it holds the first / last shape. The value F-curves
address the keys by index (see `value_path`).
"""
from __future__ import annotations

import bpy
import numpy as np

from . import animation

REGION_ATTRIBUTE = "fa_region"  # INT point attribute: index into the region names, -1 none
SHAPE_KEY_GROUP = "Face Anything"


def shape_key_name(frame: int) -> str:
    """The shape key holding Blender frame `frame`."""
    return f"frame_{frame:04d}"


def new_face_mesh(name: str, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray,
                  vertex_region: np.ndarray) -> bpy.types.Mesh:
    """A triangle mesh from (V, 3) vertices, (F, 3) faces and (F, 3, 2) corner UVs, smooth shaded,
    with the region index per vertex in the INT point attribute `fa_region`."""
    v, f = len(vertices), len(faces)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(v)
    mesh.vertices.foreach_set("co", np.ascontiguousarray(vertices, np.float32).ravel())
    mesh.loops.add(3 * f)
    mesh.loops.foreach_set("vertex_index", np.ascontiguousarray(faces, np.int32).ravel())
    mesh.polygons.add(f)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * f, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    mesh.polygons.foreach_set("use_smooth", np.ones(f, bool))
    uv = mesh.uv_layers.new(name="UVMap")
    uv.data.foreach_set("uv", np.ascontiguousarray(uvs, np.float32).ravel())
    region = mesh.attributes.new(REGION_ATTRIBUTE, "INT", "POINT")
    region.data.foreach_set("value", np.asarray(vertex_region, np.int32))
    mesh.update()
    return mesh


def add_region_groups(ob: bpy.types.Object, region_names: list[str],
                      vertex_region: np.ndarray) -> None:
    """One vertex group per named region (weight 1 on its vertices), for selection and masking."""
    region = np.asarray(vertex_region)
    for index, name in enumerate(region_names):
        members = np.flatnonzero(region == index)
        group = ob.vertex_groups.new(name=name)
        if members.size:
            group.add(members.tolist(), 1.0, "REPLACE")


def _points(block):
    """A shape key's coordinates collection: `points` (fast foreach, 4.1+) or `data`."""
    return block.points if hasattr(block, "points") else block.data


def pulse_keys(frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each captured frame i: (key frames, values) of its 0 -> 1 -> 0 pulse over the
    neighbouring captured frames (2 keys at the ends, which hold; 1 key for a single frame)."""
    frames = np.asarray(frames, np.float64)
    out = []
    for i in range(len(frames)):
        lo, hi = max(i - 1, 0), min(i + 1, len(frames) - 1)
        keys = frames[lo:hi + 1]
        out.append((keys, (keys == frames[i]).astype(np.float32)))
    return out


def add_frame_shape_keys(ob: bpy.types.Object, basis: np.ndarray, positions: np.ndarray,
                         frames: np.ndarray, action_name: str) -> bpy.types.Key:
    """A Basis plus one shape key per frame (positions (N, V, 3), object space) pulsing on
    Blender frame frames[i]. Coordinates and keyframes are written in bulk."""
    mesh = ob.data
    basis_block = ob.shape_key_add(name="Basis", from_mix=False)
    _points(basis_block).foreach_set("co", np.ascontiguousarray(basis, np.float32).ravel())
    blocks = [ob.shape_key_add(name=shape_key_name(int(f)), from_mix=False) for f in frames]
    flat = np.ascontiguousarray(positions, np.float32).reshape(len(frames), -1)
    for block, co in zip(blocks, flat):
        _points(block).foreach_set("co", co)
    key = mesh.shape_keys
    key.use_relative = True
    animation.ensure_action(key, action_name)
    for index, (key_frames, values) in enumerate(pulse_keys(frames), start=1):
        fc = animation.ensure_fcurve(key, value_path(index), group=SHAPE_KEY_GROUP)
        animation.set_keyframes(fc, key_frames, values)
    return key


def value_path(index: int) -> str:
    """The F-curve data path of the value of key block `index` (0 is the Basis).

    By index, not by name: Blender resolves every animated path on every frame, and a name lookup
    walks the key blocks comparing names through RNA, so a thousand name paths cost ~56 ms per
    frame against ~5 ms by index. The keys must therefore keep their order (renaming is fine)."""
    return f"key_blocks[{index}].value"
