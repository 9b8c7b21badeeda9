# SPDX-License-Identifier: GPL-3.0-or-later
"""The result of a build: the collection, what it owns, and how to undo or replace it cleanly.

Every datablock a build creates carries the custom property `fa_build` = the build's id, and its
collection carries the build's settings (the capture file path first) so that operators can find
and redo it. Replacing a result removes its collection, its own objects and the datablocks of that
build nobody else uses any more; nothing else in the file is touched. A build that fails part-way
removes every datablock that appeared since it started and restores the scene settings it changed.
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Iterator

import bpy

BUILD = "fa_build"
CAPTURE_PATH = "fa_capture_path"
FOOTAGE_NAME = "fa_footage_name"
FOOTAGE = "fa_footage"  # footage path, or the Movie Clip's name prefixed with "clip:"
FRAME_OFFSET = "fa_frame_offset"
STORAGE = "fa_storage"
MARKER_FILTER = "fa_marker_filter"
POINT_CACHE_PATH = "fa_pc2_path"
FRAME_RANGE = "fa_frame_range"  # [first, last] Blender frames of the capture

# The datablock kinds a build creates (shape-key Keys go with their meshes).
_KINDS = ("objects", "meshes", "cameras", "actions", "images", "node_groups", "collections",
          "shape_keys", "movieclips")

# Scene settings a build changes (restored when it fails).
_SCENE_SETTINGS = (("", "frame_start"), ("", "frame_end"), ("", "camera"),
                   ("render", "resolution_x"), ("render", "resolution_y"),
                   ("render", "resolution_percentage"), ("render", "pixel_aspect_x"),
                   ("render", "pixel_aspect_y"), ("render", "fps"), ("render", "fps_base"))


def new_build_id() -> str:
    return uuid.uuid4().hex


def collection_name(footage_name: str) -> str:
    return f"Face Anything: {footage_name}"


def is_result(collection) -> bool:
    return collection is not None and BUILD in collection and CAPTURE_PATH in collection


def results_for(footage_name: str) -> list[bpy.types.Collection]:
    """The result collections built from footage `footage_name`."""
    return [c for c in bpy.data.collections if is_result(c) and c.get(FOOTAGE_NAME) == footage_name]


def active_result(context) -> bpy.types.Collection | None:
    """The result the user points at: the active object's result collection, else the active
    collection, else the only result in the scene."""
    ob = getattr(context, "active_object", None)
    if ob is not None and BUILD in ob:
        for coll in ob.users_collection:
            if is_result(coll) and coll[BUILD] == ob[BUILD]:
                return coll
    coll = getattr(context, "collection", None)
    if is_result(coll):
        return coll
    scene = getattr(context, "scene", None)
    if scene is None:
        return None
    found = [c for c in scene.collection.children_recursive if is_result(c)]
    return found[0] if len(found) == 1 else None


def owned(build: str, kinds=_KINDS) -> list[bpy.types.ID]:
    """Every datablock tagged with build id `build`."""
    return [block for kind in kinds for block in getattr(bpy.data, kind)
            if block.get(BUILD) == build]


def _parents(collection) -> list:
    parents = [s.collection for s in bpy.data.scenes if collection.name in s.collection.children]
    return parents + [c for c in bpy.data.collections if collection.name in c.children]


def remove_result(collection: bpy.types.Collection) -> None:
    """Remove a result: its collection, the objects of its build, then that build's datablocks
    left without users. Objects and collections the user put inside move to its parents."""
    build = collection.get(BUILD)
    parents = _parents(collection)
    for ob in collection.objects:
        if ob.get(BUILD) != build and len(ob.users_collection) == 1:
            for parent in parents:
                parent.objects.link(ob)
    for child in collection.children:
        if child.get(BUILD) != build:
            for parent in parents:
                if child.name not in parent.children:
                    parent.children.link(child)
    objects = [ob for ob in collection.all_objects if ob.get(BUILD) == build]
    bpy.data.batch_remove([collection, *objects])
    for _ in range(len(_KINDS)):  # meshes free their keys, keys their actions, cameras images
        orphans = [b for b in owned(build) if b.users == 0]
        if not orphans:
            break
        bpy.data.batch_remove(orphans)


def _snapshot_ids() -> set[int]:
    return {block.session_uid for kind in _KINDS for block in getattr(bpy.data, kind)}


def _scene_state(scene) -> list:
    state = []
    for owner, attr in _SCENE_SETTINGS:
        holder = getattr(scene, owner) if owner else scene
        state.append((holder, attr, getattr(holder, attr)))
    return state


@contextmanager
def all_or_nothing(scene: bpy.types.Scene) -> Iterator[None]:
    """Inside, create freely; if the block raises, every datablock created since it began is
    removed and the scene settings a build touches are restored, then the error propagates."""
    before = _snapshot_ids()
    state = _scene_state(scene)
    try:
        yield
    except BaseException:
        created = [b for kind in _KINDS for b in getattr(bpy.data, kind)
                   if b.session_uid not in before]
        for holder, attr, value in state:
            setattr(holder, attr, value)
        # Keys first: removing a mesh also frees its Key, which then must not be removed again.
        keys = [b for b in created if isinstance(b, bpy.types.Key)]
        rest = [b for b in created if not isinstance(b, bpy.types.Key)]
        if keys:
            bpy.data.batch_remove(keys)
        if rest:
            bpy.data.batch_remove(rest)
        raise
