# SPDX-License-Identifier: GPL-3.0-or-later
"""Turn a `Capture` into Blender data: `build_scene`.

What one build makes, all in a collection "Face Anything: <footage name>":
- a camera (scene camera) fitted to the capture's shot camera (camera.py), the footage behind it
  (undistorted when the capture undid a lens's distortion: a Movie Clip's own, or, for footage
  files, a Movie Clip the result makes to carry the lens); the scene's resolution, pixel aspect,
  frame rate and frame range set for the footage;
- the face mesh, child of the camera, animated by one shape key per frame (face_mesh.py) or by a
  .pc2 point cache (point_cache.py), with live per-frame visibility (visibility.py), a vertex
  group per region, and the expression fit's weights (e.g. ARKit) as keyed custom properties
  (expressions.py);
- one empty per marker and a head-pose empty, children of the camera (markers.py).

Frames: Blender frame = footage frame number + frame_offset (0 for files, so the footage background
lines up frame for frame; clip.frame_start - 1 for a Movie Clip). Gaps in the capture stay gaps: the
mesh blends the neighbouring captured frames there, markers interpolate, visibility reads 0.

One call is one undo step when run from an operator; a call that fails leaves the file as it was;
a call for footage that already has a result replaces that result (result.py).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import bpy
import numpy as np

from ..core.capture import Capture
from ..core.lens_distortion import LensDistortion
from . import camera as cam
from . import expressions, face_mesh, markers, point_cache, result, visibility
from .axes import points_to_blender

STORAGES = ("SHAPE_KEYS", "POINT_CACHE")


def blender_frames(capture: Capture, frame_offset: int = 0) -> np.ndarray:
    """The Blender frame of each captured frame."""
    return np.asarray(capture.frame_numbers, np.int64) + int(frame_offset)


def default_frame_offset(footage) -> int:
    """clip.frame_start - 1 for a Movie Clip (where its frame 1 plays), else 0."""
    return footage.frame_start - 1 if isinstance(footage, bpy.types.MovieClip) else 0


def point_cache_path(capture_path) -> Path:
    """Where POINT_CACHE storage writes its .pc2: next to the capture file, same stem."""
    return Path(capture_path).with_suffix(".pc2")


def neutral_vertices(capture: Capture) -> np.ndarray:
    """The shot's neutral face (the actor's, as the expression fit found it, or the template's)
    placed by the first usable head pose, Blender camera space: the mesh's rest shape (Basis)."""
    usable = np.flatnonzero(markers.usable_poses(capture.head_pose))
    pose = np.asarray(capture.head_pose[usable[0]] if len(usable) else np.eye(4), np.float64)
    rest = np.asarray(capture.rest_vertices, np.float64) @ pose[:3, :3].T + pose[:3, 3]
    return points_to_blender(rest)


def _check(capture: Capture, storage: str, capture_path) -> None:
    capture.validate()
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}")
    if capture.frame_count == 0:
        raise ValueError("the capture has no frames")
    if np.any(np.diff(capture.frame_numbers) <= 0):
        raise ValueError("the capture's frame numbers are not increasing")
    if storage == "POINT_CACHE" and not capture_path:
        raise ValueError("POINT_CACHE storage writes a .pc2 next to the capture file: pass "
                         "capture_path")


class _Build:
    """Creates and tags datablocks for one build and remembers their intended names."""

    def __init__(self, build_id: str, collection: bpy.types.Collection):
        self.id, self.collection, self.names = build_id, collection, []

    def own(self, block, name: str | None = None):
        """Tag `block` as this build's; `name`: the name it takes once the previous result is gone
        (a new datablock gets a .001 suffix while the old one still holds its name)."""
        block[result.BUILD] = self.id
        if name is not None:
            self.names.append((block, name))
        return block

    def own_animation(self, block, name: str) -> None:
        """Tag the action animating `block` (named `name` once the old result is gone)."""
        anim = block.animation_data
        if anim is not None and anim.action is not None and result.BUILD not in anim.action:
            self.own(anim.action, name)

    def object(self, name: str, data, parent=None) -> bpy.types.Object:
        return self.adopt(bpy.data.objects.new(name, data), name, parent)

    def adopt(self, ob: bpy.types.Object, name: str, parent=None) -> bpy.types.Object:
        """Tag `ob`, link it into the result's collection, parent it (no parent inverse)."""
        self.own(ob, name)
        self.collection.objects.link(ob)
        if parent is not None:
            ob.parent = parent
        return ob

    def restore_names(self) -> None:
        for block, name in self.names:
            if block.name != name:
                block.name = name


def build_scene(context, capture: Capture, footage_path=None, *, storage: str = "SHAPE_KEYS",
                marker_filter: markers.MarkerFilter = None, capture_path=None,
                frame_offset: int | None = None) -> bpy.types.Collection:
    """Build (or rebuild) the result of `capture` in `context.scene`; returns its collection.

    footage_path: a folder of numbered images, one image of a sequence, a movie file, or a Movie
    Clip datablock, shown as the camera background (None: no background). storage: 'SHAPE_KEYS'
    (one shape key per frame) or 'POINT_CACHE' (a .pc2 beside the capture file, Mesh Cache
    modifier). marker_filter: which markers get empties (see markers.select_markers).
    capture_path: the capture file, stored on the collection for Rebuild and the exporters.
    frame_offset: Blender frame - footage frame number (default: default_frame_offset).
    Raises ValueError, FootageError or CaptureError before touching anything it cannot do.
    """
    _check(capture, storage, capture_path)
    scene = context.scene
    offset = default_frame_offset(footage_path) if frame_offset is None else int(frame_offset)
    frames = blender_frames(capture, offset)
    background = None if footage_path is None else cam.find_background(footage_path)
    fit = cam.fit_camera(capture.camera, capture.footage_size, cam.sensor_of(capture))
    keep = markers.select_markers(list(capture.marker_names), marker_filter)
    name = capture.footage_name
    pc2_tmp = None
    try:
        with result.all_or_nothing(scene):
            collection = bpy.data.collections.new(result.collection_name(name))
            build = _Build(result.new_build_id(), collection)
            build.own(collection, result.collection_name(name))
            scene.collection.children.link(collection)
            lens = LensDistortion.of_capture(capture)
            if lens is not None and background is not None and background.kind != "MOVIE_CLIP":
                # footage files and a lens given with them (the command line, a Known lens): shown
                # through a Movie Clip that carries the lens, undistorted as the capture saw it
                background = cam.lens_clip(background, lens, offset)
                build.own(background.clip, f"{name} lens")
            camera = _add_camera(build, name, fit, background, offset, lens is not None)
            face, basis = _add_face(build, name, capture, camera)
            positions = points_to_blender(capture.positions)  # the mesh's local space
            if storage == "SHAPE_KEYS":
                key = face_mesh.add_frame_shape_keys(face, basis, positions, frames,
                                                     f"{name} shape keys")
                build.own(key, f"{name} face")
                build.own_animation(key, f"{name} shape keys")
            else:
                pc2_path = point_cache_path(capture_path)
                pc2_tmp = point_cache.write_pc2(pc2_path, positions, frames)
                point_cache.add_mesh_cache(face, pc2_path, int(frames[0]))
            _add_visibility(build, name, capture, face, basis, frames)
            if capture.expression_names:
                expressions.key_expressions(face, frames, capture.expression_names,
                                            capture.expression_weights)
                build.own_animation(face, f"{name} expressions")
            _add_markers_and_head(build, name, capture, camera, frames, keep)
            cam.apply_render_settings(scene, fit, (int(frames[0]), int(frames[-1])), capture.fps)
            scene.camera = camera
            _record(collection, capture, footage_path, offset, frames, storage, marker_filter,
                    capture_path)
            if pc2_tmp is not None:
                os.replace(pc2_tmp, point_cache_path(capture_path))
                pc2_tmp = None
            # Nothing below can fail for lack of data: the previous result goes, names settle.
            for old in result.results_for(name):
                if old != collection:
                    result.remove_result(old)
            build.restore_names()
    finally:
        if pc2_tmp is not None:
            Path(pc2_tmp).unlink(missing_ok=True)
    return collection


def _add_camera(build: _Build, name: str, fit: cam.CameraFit, background, offset: int,
                undistorted: bool = False):
    """The camera object (at the origin, looking along +Y with the image's up along +Z).
    undistorted: the capture undid the clip's lens distortion, so the view shows the clip
    undistorted too."""
    data = build.own(bpy.data.cameras.new(f"{name} camera"), f"{name} camera")
    cam.apply_camera(data, fit)
    camera = build.object(f"{name} camera", data)
    camera.rotation_euler = (math.pi / 2, 0.0, 0.0)
    if background is not None:
        image = cam.add_background(data, background, offset, undistorted)
        if image is not None:
            build.own(image, background.first.name)
    return camera


def _add_face(build: _Build, name: str, capture: Capture, camera):
    """(face object, its rest shape): the mesh (rest shape = neutral_vertices) with its region
    groups."""
    basis = neutral_vertices(capture)
    mesh = build.own(face_mesh.new_face_mesh(f"{name} face", basis, capture.faces, capture.uvs,
                                             capture.vertex_region), f"{name} face")
    face = build.object(f"{name} face", mesh, parent=camera)
    face_mesh.add_region_groups(face, list(capture.region_names), capture.vertex_region)
    return face, basis


def _add_visibility(build: _Build, name: str, capture: Capture, face, basis: np.ndarray,
                    frames: np.ndarray) -> None:
    """The visibility table and the modifier that reads it (last in the face's stack)."""
    table_mesh = build.own(visibility.new_table_mesh(
        f"{name} visibility table", basis, capture.visibility, frames),
        f"{name} visibility table")
    # In no collection: only the visibility modifier uses it (Blender evaluates it as that
    # modifier's input); it goes with the modifier when the result is replaced.
    table = build.own(bpy.data.objects.new(f"{name} visibility table", table_mesh),
                      f"{name} visibility table")
    group = build.own(visibility.new_node_group(f"{name} visibility", table, int(frames[0])),
                      f"{name} visibility")
    visibility.add_visibility_modifier(face, group)


def _add_markers_and_head(build: _Build, name: str, capture: Capture, camera,
                          frames: np.ndarray, keep: list[int]) -> None:
    head = build.adopt(markers.new_head(f"{name} head"), f"{name} head", camera)
    markers.key_head(head, frames, capture.head_pose)
    build.own_animation(head, f"{name} head")
    for j in keep:
        marker_name = capture.marker_names[j]
        ob = build.adopt(markers.new_marker(marker_name), marker_name, camera)
        markers.key_marker(ob, frames, capture.marker_xyz[:, j], capture.marker_visible[:, j])
        build.own_animation(ob, f"{name} {marker_name}")


def _record(collection, capture: Capture, footage_path, offset: int, frames: np.ndarray,
            storage: str, marker_filter, capture_path) -> None:
    """What Rebuild and the exporters need, as custom properties of the result's collection."""
    collection[result.CAPTURE_PATH] = str(Path(capture_path).resolve()) if capture_path else ""
    collection[result.FOOTAGE_NAME] = capture.footage_name
    collection[result.FOOTAGE] = _footage_text(footage_path)
    collection[result.FRAME_OFFSET] = offset
    collection[result.FRAME_RANGE] = [int(frames[0]), int(frames[-1])]
    collection[result.STORAGE] = storage
    collection[result.MARKER_FILTER] = markers.filter_text(marker_filter)
    collection[result.POINT_CACHE_PATH] = (str(point_cache_path(capture_path).resolve())
                                           if storage == "POINT_CACHE" else "")


def _footage_text(footage) -> str:
    if footage is None:
        return ""
    if isinstance(footage, bpy.types.MovieClip):
        return f"clip:{footage.name}"
    return str(Path(bpy.path.abspath(os.fspath(footage))).resolve())


def footage_from_text(text: str):
    """The footage stored on a result (see _footage_text): a path, a Movie Clip or None."""
    if not text:
        return None
    if text.startswith("clip:"):
        return bpy.data.movieclips.get(text[5:])
    return text
