# SPDX-License-Identifier: GPL-3.0-or-later
"""Point-cache storage: the face's per-frame vertex positions in a .pc2 file read by Blender's Mesh
Cache modifier, instead of one shape key per frame.

The .pc2 holds one sample per Blender frame from the first to the last captured frame (gaps filled
by blending the neighbouring captured frames, as the shape keys do). Layout (the format Blender's
Mesh Cache reads): b"POINTCACHE2\\0", int32 version 1, int32 points, float32 start frame, float32
sample rate, int32 samples, then float32 (samples, points, 3), little-endian.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import bpy
import numpy as np

_MAGIC = b"POINTCACHE2\0"
_HEADER = np.dtype([("magic", "S12"), ("version", "<i4"), ("points", "<i4"), ("start", "<f4"),
                    ("rate", "<f4"), ("samples", "<i4")])
MODIFIER_NAME = "Face Anything cache"


def dense_positions(positions: np.ndarray, frames: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """Positions (len(dense), V, 3) at Blender frames `dense`: captured frames exact, frames in a
    gap blended linearly between the two captured neighbours, frames outside held."""
    frames = np.asarray(frames, np.float64)
    dense = np.asarray(dense, np.float64)
    if len(frames) == 1:
        return np.repeat(positions[:1], len(dense), axis=0).astype(np.float32)
    right = np.clip(np.searchsorted(frames, dense, side="right"), 1, len(frames) - 1)
    left = right - 1
    t = np.clip((dense - frames[left]) / (frames[right] - frames[left]), 0.0, 1.0)
    t = t.astype(np.float32)[:, None, None]
    exact = frames[left] == dense  # exact copies, not a blend that could round
    out = positions[left] * (1 - t) + positions[right] * t
    out[exact] = positions[left[exact]]
    return out.astype(np.float32, copy=False)


def write_pc2(path: Path, positions: np.ndarray, frames: np.ndarray, chunk: int = 256) -> Path:
    """Write the .pc2 for Blender frames frames[0]..frames[-1] to a temporary file beside `path`
    and return it (the caller renames it over `path` once the whole build succeeded)."""
    path = Path(path)
    first, last = int(frames[0]), int(frames[-1])
    dense = np.arange(first, last + 1)
    header = np.array([(_MAGIC, 1, positions.shape[1], float(first), 1.0, len(dense))], _HEADER)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(header.tobytes())
            for start in range(0, len(dense), chunk):
                block = dense_positions(positions, frames, dense[start:start + chunk])
                fh.write(block.astype("<f4", copy=False).tobytes())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def read_pc2(path: Path) -> tuple[float, np.ndarray]:
    """(start frame, (samples, points, 3) float32) of a .pc2 file."""
    raw = Path(path).read_bytes()
    header = np.frombuffer(raw[:_HEADER.itemsize], _HEADER)[0]
    if header["magic"] != _MAGIC.rstrip(b"\0"):
        raise ValueError(f"{path} is not a .pc2 point cache")
    data = np.frombuffer(raw[_HEADER.itemsize:], "<f4")
    return float(header["start"]), data.reshape(int(header["samples"]), int(header["points"]), 3)


def add_mesh_cache(ob: bpy.types.Object, path: Path, first_frame: int) -> bpy.types.Modifier:
    """A Mesh Cache modifier on `ob` playing `path` with sample 0 at Blender frame `first_frame`."""
    mod = ob.modifiers.new(MODIFIER_NAME, "MESH_CACHE")
    mod.cache_format = "PC2"
    mod.filepath = str(path)
    mod.play_mode, mod.time_mode = "SCENE", "FRAME"
    mod.deform_mode, mod.interpolation = "OVERWRITE", "LINEAR"
    mod.frame_start, mod.frame_scale = float(first_frame), 1.0
    return mod
