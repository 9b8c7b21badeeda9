# SPDX-License-Identifier: GPL-3.0-or-later
"""Marker empties and the head-pose empty, keyed in Blender camera space (children of the camera).

Markers: one empty per marker, named after it, location keyed on the frames where the capture has a
finite position, and an integer custom property `visible` (1 observed, 0 not) keyed with constant
interpolation where it changes (drive anything from it; no per-frame object hiding, which
would rebuild Blender's dependency graph every frame).

Head: one empty whose world transform carries the rigid head motion: for a head-local point p (the
capture's template space), head.matrix_world @ p is where the head pose puts it. Location, rotation
(quaternion, sign-continuous) and uniform scale are keyed on every captured frame.
"""
from __future__ import annotations

import fnmatch
from typing import Callable, Iterable

import bpy
import numpy as np

from . import animation
from .axes import points_to_blender, transforms_to_blender

MARKER_SIZE = 0.004  # metres (empty display size)
HEAD_SIZE = 0.05
VISIBLE_PROPERTY = "visible"
MARKER_PROPERTY = "fa_marker"  # the marker's own name (the object name may get a .001 suffix)
GROUP = "Face Anything"

MarkerFilter = str | Iterable[str] | Callable[[str], bool] | None


def select_markers(names: list[str], marker_filter: MarkerFilter) -> list[int]:
    """Indices of the markers to build. marker_filter: None or "" (all); a string of
    comma-separated shell patterns ("nose_*, lip_*"); a collection of names; or a predicate."""
    if marker_filter is None or (isinstance(marker_filter, str) and not marker_filter.strip()):
        return list(range(len(names)))
    if isinstance(marker_filter, str):
        patterns = [p.strip() for p in marker_filter.split(",") if p.strip()]
        keep = lambda n: any(fnmatch.fnmatchcase(n, p) for p in patterns)  # noqa: E731
    elif callable(marker_filter):
        keep = marker_filter
    else:
        wanted = set(marker_filter)
        keep = lambda n: n in wanted  # noqa: E731
    return [i for i, n in enumerate(names) if keep(n)]


def filter_text(marker_filter: MarkerFilter) -> str:
    """The filter as text for storing on the result ("" when it is not text-like)."""
    if marker_filter is None or callable(marker_filter):
        return ""
    if isinstance(marker_filter, str):
        return marker_filter
    return ", ".join(marker_filter)


def key_marker(ob: bpy.types.Object, frames: np.ndarray, xyz_cv: np.ndarray,
               visible: np.ndarray) -> None:
    """Key `ob`'s location (OpenCV camera-space xyz, finite rows only) and `visible`."""
    finite = np.isfinite(xyz_cv).all(axis=1)
    if finite.any():
        first = np.flatnonzero(finite)[0]
        ob.location = points_to_blender(xyz_cv[first])
        animation.key_property(ob, "location", frames[finite], points_to_blender(xyz_cv[finite]),
                               group=GROUP)
    ob[VISIBLE_PROPERTY] = int(visible[0])
    ob.id_properties_ui(VISIBLE_PROPERTY).update(min=0, max=1,
                                                 description="1: the marker was observed")
    changes = np.flatnonzero(np.r_[True, visible[1:] != visible[:-1]])  # constant: changes only
    animation.key_property(ob, f'["{VISIBLE_PROPERTY}"]', frames[changes],
                           visible[changes].astype(np.float32), group=GROUP,
                           interpolation="CONSTANT")


def new_marker(name: str) -> bpy.types.Object:
    ob = bpy.data.objects.new(name, None)
    ob.empty_display_type, ob.empty_display_size = "SPHERE", MARKER_SIZE
    ob[MARKER_PROPERTY] = name
    return ob


def quaternions(rotations: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotation matrices -> (N, 4) unit quaternions (w, x, y, z), each the sign nearest
    the previous one so that interpolation never takes the long way round."""
    m = np.asarray(rotations, np.float64)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    cases = np.stack([m00 + m11 + m22, m00, m11, m22], axis=1)
    pick = cases.argmax(axis=1)
    # Shepperd's method: each case divides by its own (largest, so well-conditioned) diagonal term.
    s = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                  1 - m00 - m11 + m22], axis=1)
    r = 2.0 * np.sqrt(np.maximum(s[np.arange(len(m)), pick], 1e-300))
    wx, wy, wz = m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]
    sxy, sxz, syz = m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1]
    candidates = np.stack([np.stack([r / 4, wx / r, wy / r, wz / r], 1),
                           np.stack([wx / r, r / 4, sxy / r, sxz / r], 1),
                           np.stack([wy / r, sxy / r, r / 4, syz / r], 1),
                           np.stack([wz / r, sxz / r, syz / r, r / 4], 1)], axis=1)
    q = candidates[np.arange(len(m)), pick]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    if len(q):
        q[0] *= 1.0 if q[0, 0] >= 0 else -1.0
        flips = np.cumprod(np.where(np.einsum("ij,ij->i", q[1:], q[:-1]) < 0, -1.0, 1.0))
        q[1:] *= flips[:, None]
    return q


def usable_poses(head_pose: np.ndarray) -> np.ndarray:
    """(N,) bool: the pose is finite with a positive determinant (a similarity, no mirror)."""
    m = np.asarray(head_pose, np.float64)
    finite = np.isfinite(m).all(axis=(1, 2))
    det = np.linalg.det(np.where(finite[:, None, None], m, np.eye(4))[:, :3, :3])
    return finite & (det > 0)


def decompose(head_pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 4, 4) OpenCV camera-from-head similarities (all usable) -> Blender camera-space
    (location (N, 3), quaternion (N, 4), uniform scale (N,))."""
    m = transforms_to_blender(head_pose)
    linear = m[:, :3, :3]
    scale = np.cbrt(np.linalg.det(linear))
    return m[:, :3, 3], quaternions(linear / scale[:, None, None]), scale


def key_head(ob: bpy.types.Object, frames: np.ndarray, head_pose: np.ndarray) -> None:
    """Key the head on the frames whose pose is usable (the others interpolate)."""
    ok = usable_poses(head_pose)
    ob.rotation_mode = "QUATERNION"
    if not ok.any():
        return
    location, rotation, scale = decompose(np.asarray(head_pose)[ok])
    frames = np.asarray(frames)[ok]
    ob.location, ob.rotation_quaternion, ob.scale = location[0], rotation[0], [scale[0]] * 3
    animation.key_property(ob, "location", frames, location, group=GROUP)
    animation.key_property(ob, "rotation_quaternion", frames, rotation, group=GROUP)
    animation.key_property(ob, "scale", frames, np.repeat(scale[:, None], 3, axis=1), group=GROUP)


def new_head(name: str) -> bpy.types.Object:
    ob = bpy.data.objects.new(name, None)
    ob.empty_display_type, ob.empty_display_size = "ARROWS", HEAD_SIZE
    return ob
