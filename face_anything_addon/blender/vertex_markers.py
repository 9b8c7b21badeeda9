# SPDX-License-Identifier: GPL-3.0-or-later
"""Markers on chosen vertices of a result's face mesh, after the capture, without the network.

"Add Markers from Selected Vertices" (3D Viewport, Edit Mode on the face mesh, or Object Mode with
its stored vertex selection): one marker empty per selected vertex, made like the capture's own
marker empties (child of the result's camera, in its collection, tagged with its build, location
and `visible` keyed on every captured frame from the capture file's per-frame positions and
visibility of that vertex).

What a result remembers: the collection's custom property `fa_vertex_markers`, a JSON list of
{"name", "vertex", "canonical"} (the vertex's canonical coordinate, its identity in the template).
From it the marker exports append these markers to the capture's own (`with_vertex_markers`), and
Rebuild Scene and Reconstruct carry them over to the new result when its mesh has the same vertex
at the same canonical coordinate (`carry_over`). The capture file itself is never rewritten, so
one undo step removes everything the operator made.

Run from Edit Mode, the operator returns to Object Mode: Blender's Edit Mode undo steps record
only the mesh, so new objects made there would survive an undo half-way.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import bpy
import numpy as np
from bpy.props import StringProperty

from ..core.capture import Capture, CaptureError
from . import markers, result

DEFINITIONS = "fa_vertex_markers"  # on a result's collection: JSON list of definitions
VERTEX_PROPERTY = "fa_vertex"  # on a vertex marker empty: its vertex index


# ------------------------------------------------------------------------------- definitions

def definitions(collection) -> list[dict]:
    """The vertex markers a result has: [{"name", "vertex", "canonical"}]."""
    text = collection.get(DEFINITIONS, "") if collection is not None else ""
    try:
        items = json.loads(text) if text else []
    except ValueError:
        return []
    return [d for d in items if isinstance(d, dict) and {"name", "vertex", "canonical"} <= set(d)]


def store(collection, items: list[dict]) -> None:
    """Record `items` on a result; its marker empties of those names get their vertex index."""
    collection[DEFINITIONS] = json.dumps(items)
    vertex = {str(item["name"]): int(item["vertex"]) for item in items}
    for ob in collection.objects:
        name = ob.get(markers.MARKER_PROPERTY)
        if name in vertex:
            ob[VERTEX_PROPERTY] = vertex[name]


def marker_names(count: int, vertices, name: str) -> list[str]:
    """`name` for one vertex; <name>_<vertex index> for several."""
    return [name] if count == 1 else [f"{name}_{int(v)}" for v in vertices]


def definition(capture: Capture, name: str, vertex: int) -> dict:
    return {"name": name, "vertex": int(vertex),
            "canonical": [float(c) for c in capture.template_canonical[vertex]]}


@dataclass
class Carried:
    """A capture with vertex markers appended, the definitions kept and why others were not."""

    capture: Capture
    kept: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def with_vertex_markers(capture: Capture, items: list[dict]) -> Carried:
    """`capture` with one marker per definition appended (positions and visibility of its vertex;
    2D through the shot camera; residual NaN). Definitions whose name the capture already has, or
    whose vertex is not the same template point in this capture, are left out with a reason."""
    names = set(capture.marker_names)
    count = len(capture.rest_vertices)
    kept, warnings = [], []
    for item in items:
        name, vertex = str(item["name"]), int(item["vertex"])
        if name in names:
            warnings.append(f"Vertex marker '{name}' left out: the capture has a marker of that "
                            f"name")
        elif not (0 <= vertex < count and np.allclose(capture.template_canonical[vertex],
                                                      item["canonical"], atol=1e-5)):
            warnings.append(f"Vertex marker '{name}' left out: the capture's mesh is not the one "
                            f"it was added to (vertex {vertex} differs)")
        else:
            kept.append(item)
            names.add(name)
    if not kept:
        return Carried(capture, kept, warnings)
    vertices = [int(item["vertex"]) for item in kept]
    xyz = np.asarray(capture.positions[:, vertices], np.float32)  # (N, K, 3)
    h = xyz.astype(np.float64) @ np.asarray(capture.camera, np.float64).T
    xy = (h[..., :2] / h[..., 2:]).astype(np.float32)
    n, k = len(capture.frame_numbers), len(kept)
    extended = dataclasses.replace(
        capture, marker_names=list(capture.marker_names) + [str(i["name"]) for i in kept],
        marker_xy=np.concatenate([capture.marker_xy, xy], 1),
        marker_xyz=np.concatenate([capture.marker_xyz, xyz], 1),
        marker_visible=np.concatenate([capture.marker_visible,
                                       capture.visibility[:, vertices]], 1),
        marker_residual=np.concatenate([capture.marker_residual,
                                        np.full((n, k), np.nan, np.float32)], 1))
    return Carried(extended, kept, warnings)


def carry_over(capture: Capture, previous) -> Carried:
    """`capture` with the vertex markers of the `previous` result (a collection, or None)."""
    return with_vertex_markers(capture, definitions(previous))


# ------------------------------------------------------------------------------- the scene

def face_result(ob) -> bpy.types.Collection | None:
    """The result collection whose face mesh `ob` is, else None."""
    if ob is None or ob.type != "MESH" or result.BUILD not in ob:
        return None
    for coll in ob.users_collection:
        if result.is_result(coll) and coll[result.BUILD] == ob[result.BUILD]:
            return coll
    return None


def result_camera(collection, face) -> bpy.types.Object | None:
    build = collection[result.BUILD]
    for ob in collection.objects:
        if ob.type == "CAMERA" and ob.get(result.BUILD) == build:
            return ob
    return face.parent


def add_marker_objects(collection, face, capture: Capture, first: int,
                       items: list[dict]) -> list[bpy.types.Object]:
    """Empties for markers first, first + 1, ... of `capture` (defined by `items`), made like
    the capture's own marker empties. Call inside result.all_or_nothing."""
    build = collection[result.BUILD]
    camera = result_camera(collection, face)
    offset = int(collection.get(result.FRAME_OFFSET, 0))
    frames = np.asarray(capture.frame_numbers, np.int64) + offset
    footage = collection.get(result.FOOTAGE_NAME, capture.footage_name)
    made = []
    for j, item in enumerate(items, start=first):
        name = str(item["name"])
        ob = markers.new_marker(name)
        ob[result.BUILD] = build
        ob[VERTEX_PROPERTY] = int(item["vertex"])
        collection.objects.link(ob)
        ob.parent = camera
        markers.key_marker(ob, frames, capture.marker_xyz[:, j], capture.marker_visible[:, j])
        action = ob.animation_data.action if ob.animation_data else None
        if action is not None:
            action[result.BUILD] = build
            action.name = f"{footage} {name}"
        made.append(ob)
    return made


class FACEANYTHING_OT_add_vertex_markers(bpy.types.Operator):
    """Add marker empties that follow the selected vertices of the Face Anything face mesh over
    the captured frames (from the capture file: no network)"""

    bl_idname = "faceanything.add_vertex_markers"
    bl_label = "Add Markers from Selected Vertices"
    bl_options = {"REGISTER", "UNDO"}

    name: StringProperty(name="Name", default="vertex",
                         description="The marker's name for one selected vertex; with several, "
                                     "each is named <name>_<vertex index>")

    @classmethod
    def poll(cls, context):
        if context.active_object is None or context.mode not in ("OBJECT", "EDIT_MESH"):
            cls.poll_message_set("Select the Face Anything face mesh (its vertices in Edit Mode)")
            return False
        return True

    def invoke(self, context, event):
        settings = getattr(context.scene, "face_anything", None)
        if settings is not None and not self.properties.is_property_set("name"):
            self.name = settings.vertex_marker_name
        return self.execute(context)

    def execute(self, context):
        face = context.active_object
        coll = face_result(face)
        if coll is None:
            return self._fail(f"{face.name} is not a Face Anything face mesh: select the face of "
                              f"a result, then its vertices in Edit Mode")
        editing = face.mode == "EDIT"
        if editing:
            face.update_from_editmode()
        mesh = face.data
        selected = np.zeros(len(mesh.vertices), bool)
        mesh.vertices.foreach_get("select", selected)
        vertices = np.flatnonzero(selected)
        if not vertices.size:
            return self._fail("No vertices selected: select vertices of the face in Edit Mode")
        name = self.name.strip()
        if not name:
            return self._fail("Give the markers a name")
        path = coll.get(result.CAPTURE_PATH, "")
        if not path:
            return self._fail(f"{coll.name} has no capture file: use Rebuild Scene with a "
                              f"capture file first")
        try:
            capture = Capture.load(path)
        except CaptureError as err:
            return self._fail(f"{err}. Rebuild the result from a capture file that exists")
        if len(capture.rest_vertices) != len(mesh.vertices):
            return self._fail(f"{face.name} has {len(mesh.vertices)} vertices, its capture "
                              f"{len(capture.rest_vertices)}: the mesh was edited; use Rebuild "
                              f"Scene to get the captured mesh back")
        names = marker_names(len(vertices), vertices, name)
        existing = definitions(coll)
        taken = set(capture.marker_names) | {d["name"] for d in existing}
        clashes = [n for n in names if n in taken]
        if clashes:
            more = f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
            return self._fail(f"{coll.name} already has markers named "
                              f"{', '.join(clashes[:3])}{more}: choose another name")
        items = [definition(capture, n, v) for n, v in zip(names, vertices)]
        extended = with_vertex_markers(capture, items).capture
        if editing:  # one global undo step (see the module docstring)
            bpy.ops.object.mode_set(mode="OBJECT")
        try:
            with result.all_or_nothing(context.scene):
                made = add_marker_objects(coll, face, extended, len(capture.marker_names), items)
                store(coll, existing + items)
        except Exception as err:  # noqa: BLE001 - nothing is left half-built; say why
            if editing:
                bpy.ops.object.mode_set(mode="EDIT")
            return self._fail(f"Could not add the markers, nothing was changed: {err}")
        view_layer = context.view_layer
        view_layer.update()
        for ob in made:
            if view_layer.objects.get(ob.name) == ob:
                ob.select_set(True)
        self.report({"INFO"}, f"Added {len(made)} marker{'s' * (len(made) != 1)} to {coll.name}: "
                              f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''}")
        flt = coll.get(result.MARKER_FILTER, "")
        if flt and len(markers.select_markers(names, flt)) < len(names):
            self.report({"WARNING"}, f"The result's marker filter '{flt}' leaves some of them out "
                                     f"of exports and rebuilds")
        return {"FINISHED"}

    def _fail(self, text: str):
        self.report({"ERROR"}, text)
        return {"CANCELLED"}


def draw_menu(self, context):
    self.layout.separator()
    self.layout.operator(FACEANYTHING_OT_add_vertex_markers.bl_idname, icon="EMPTY_AXIS")


CLASSES = (FACEANYTHING_OT_add_vertex_markers,)
