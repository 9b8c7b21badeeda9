# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators on a built result: Rebuild Scene (from its capture file, no network), Export Alembic,
Export Markers (CSV / JSON). Each finds its result through the active object or collection (the
result's collection stores the capture file path) and reports problems with what to do about them.
"""

from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from ..core.capture import Capture, CaptureError
from ..core.errors import FootageError
from ..core.face_boxes import FaceBoxesError, write_face_boxes
from . import export, result, scene, vertex_markers

STORAGE_ITEMS = (
    ("SHAPE_KEYS", "Shape Keys", "One shape key per frame, stored in the .blend"),
    ("POINT_CACHE", "Point Cache", "A .pc2 file next to the capture file, played by a Mesh Cache "
                                   "modifier (smaller .blend)"),
)
_NO_RESULT = ("Select a Face Anything result (one of its objects, or its collection in the "
              "Outliner)")


def _capture_of(op, collection) -> Capture | None:
    """The result's capture, or None after reporting why it cannot be read."""
    path = collection.get(result.CAPTURE_PATH, "")
    if not path:
        op.report({"ERROR"}, f"{collection.name} has no capture file: use Rebuild Scene with a "
                             f"capture file first")
        return None
    try:
        return Capture.load(path)
    except CaptureError as err:
        op.report({"ERROR"}, f"{err}. Rebuild the result from a capture file that exists")
        return None


def _default_dir(collection) -> Path:
    capture = collection.get(result.CAPTURE_PATH, "") if collection is not None else ""
    if capture:
        return Path(capture).parent
    if bpy.data.filepath:
        return Path(bpy.data.filepath).parent
    return Path.home()


class FACEANYTHING_OT_rebuild_scene(bpy.types.Operator):
    """Re-create the camera, face, markers and head from a capture file, with new marker and
    storage settings (no network, no model)"""

    bl_idname = "faceanything.rebuild_scene"
    bl_label = "Rebuild Scene"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Capture File", subtype="FILE_PATH",
                             description="The capture (.npz); empty: the selected result's")
    footage: StringProperty(name="Footage", subtype="FILE_PATH",
                            description="Image folder, image or movie for the camera background; "
                                        "empty: the result's footage")
    storage: EnumProperty(name="Animation Storage", items=STORAGE_ITEMS, default="SHAPE_KEYS")
    marker_filter: StringProperty(name="Markers", description="Comma-separated marker name "
                                  "patterns, e.g. nose_*, lip_*; empty: all markers")
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        if context.mode != "OBJECT":
            cls.poll_message_set("Switch to Object Mode first")
            return False
        return context.scene is not None

    def invoke(self, context, event):
        coll = result.active_result(context)
        if coll is not None:
            self.filepath = self.filepath or coll.get(result.CAPTURE_PATH, "")
            self.storage = coll.get(result.STORAGE, "SHAPE_KEYS")
            self.marker_filter = coll.get(result.MARKER_FILTER, "")
        if not self.filepath:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        coll = result.active_result(context)
        path = self.filepath or (coll.get(result.CAPTURE_PATH, "") if coll else "")
        if not path:
            self.report({"ERROR"}, "No capture file: choose one, or select a Face Anything "
                                   "result (one of its objects, or its collection)")
            return {"CANCELLED"}
        try:
            capture = Capture.load(bpy.path.abspath(path))
        except CaptureError as err:
            self.report({"ERROR"}, f"{err}. Choose a Face Anything capture file (.npz)")
            return {"CANCELLED"}
        previous = result.results_for(capture.footage_name)
        old = coll if coll in previous else (previous[0] if previous else None)
        storage = self.storage
        marker_filter = self.marker_filter
        if old is not None:
            if not self.properties.is_property_set("storage"):
                storage = old.get(result.STORAGE, storage)
            if not self.properties.is_property_set("marker_filter"):
                marker_filter = old.get(result.MARKER_FILTER, marker_filter)
        footage, offset = self._footage(old)
        if footage is not None and not isinstance(footage, bpy.types.MovieClip) and not Path(
                bpy.path.abspath(footage)).exists():
            self.report({"WARNING"}, f"Footage {footage} not found: built without a background")
            footage = None
        carried = vertex_markers.carry_over(capture, old)  # markers added from vertices
        try:
            built = scene.build_scene(context, carried.capture, footage, storage=storage,
                                      marker_filter=marker_filter,
                                      capture_path=bpy.path.abspath(path), frame_offset=offset)
        except (ValueError, OSError, FootageError, CaptureError) as err:
            self.report({"ERROR"}, f"Rebuild failed, nothing was changed: {err}")
            return {"CANCELLED"}
        vertex_markers.store(built, carried.kept)
        self.report({"INFO"}, f"Rebuilt {built.name}: {capture.frame_count} frames, "
                              f"{len(capture.rest_vertices)} vertices, storage {storage}")
        for text in carried.warnings:
            self.report({"WARNING"}, text)
        return {"FINISHED"}

    def _footage(self, old):
        """(footage, frame offset): this operator's footage, else the previous result's."""
        if self.footage:
            return self.footage, None
        if old is None:
            return None, None
        return scene.footage_from_text(old.get(result.FOOTAGE, "")), old.get(result.FRAME_OFFSET)


class _ResultExport:
    """Shared poll and file browser for exports of the active result."""

    filepath: StringProperty(subtype="FILE_PATH")
    check_existing: bpy.props.BoolProperty(default=True, options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        if result.active_result(context) is None:
            cls.poll_message_set(_NO_RESULT)
            return False
        return True

    def invoke(self, context, event):
        coll = result.active_result(context)
        if not self.filepath:
            name = bpy.path.clean_name(coll.get(result.FOOTAGE_NAME, "face"))
            self.filepath = str(_default_dir(coll) / f"{name}{self.suffix()}")
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def capture_to_export(self, context):
        """(the active result, its capture, the chosen file) or None after reporting why: no
        file chosen, or the result's capture file cannot be read."""
        coll = result.active_result(context)
        if not self.filepath:
            self.report({"ERROR"}, "Choose a file to export to")
            return None
        capture = _capture_of(self, coll)
        if capture is None:
            return None
        return coll, capture, Path(bpy.path.abspath(self.filepath))


class FACEANYTHING_OT_export_alembic(_ResultExport, bpy.types.Operator):
    """Export the selected Face Anything result (face, camera, markers, head) as Alembic over the
    capture's frames"""

    bl_idname = "faceanything.export_alembic"
    bl_label = "Export Alembic"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default="*.abc", options={"HIDDEN"})

    def suffix(self) -> str:
        return ".abc"

    def execute(self, context):
        coll = result.active_result(context)
        if not self.filepath:
            self.report({"ERROR"}, "Choose a file to export to")
            return {"CANCELLED"}
        try:
            path = export.export_alembic(context, coll, self.filepath)
        except (export.ExportError, RuntimeError, OSError) as err:
            self.report({"ERROR"}, f"Alembic export failed: {err}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {coll.name} to {path}")
        return {"FINISHED"}


class FACEANYTHING_OT_export_markers(_ResultExport, bpy.types.Operator):
    """Export the selected result's markers (frame, name, footage pixels, OpenCV camera space in
    metres, visible) as CSV or JSON"""

    bl_idname = "faceanything.export_markers"
    bl_label = "Export Markers"
    bl_options = {"REGISTER", "UNDO"}

    file_format: EnumProperty(name="Format", items=(
        ("CSV", "CSV", "One row per frame and marker"),
        ("JSON", "JSON", "Per marker arrays over the frames, with the conventions")))
    filter_glob: StringProperty(default="*.csv;*.json", options={"HIDDEN"})

    def suffix(self) -> str:
        return "_markers." + self.file_format.lower()

    def execute(self, context):
        found = self.capture_to_export(context)
        if found is None:
            return {"CANCELLED"}
        coll, capture, path = found
        # with the markers added from vertices of the result's mesh
        capture = vertex_markers.with_vertex_markers(
            capture, vertex_markers.definitions(coll)).capture
        if path.suffix.lower() not in (".csv", ".json"):  # an explicit extension wins
            path = path.with_name(path.name + "." + self.file_format.lower())
        try:
            export.export_markers(capture, path, coll.get(result.MARKER_FILTER, ""),
                                  coll.get(result.FRAME_OFFSET, 0))
        except (export.ExportError, OSError) as err:
            self.report({"ERROR"}, f"Marker export failed: {err}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported markers of {coll.name} to {path}")
        return {"FINISHED"}


class FACEANYTHING_OT_export_face_boxes(_ResultExport, bpy.types.Operator):
    """Export the face box the network saw on each frame of the selected result (frame, x0, y0,
    x1, y1 in footage pixels) as CSV: correct the frames where the face region went wrong and
    give the file to the command line's --face-region"""

    bl_idname = "faceanything.export_face_boxes"
    bl_label = "Export Face Boxes"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default="*.csv", options={"HIDDEN"})

    def suffix(self) -> str:
        return "_face_boxes.csv"

    def execute(self, context):
        found = self.capture_to_export(context)
        if found is None:
            return {"CANCELLED"}
        coll, capture, path = found
        if path.suffix.lower() != ".csv":
            path = path.with_name(path.name + ".csv")
        try:
            write_face_boxes(capture, path)
        except (FaceBoxesError, OSError) as err:
            self.report({"ERROR"}, f"Face box export failed: {err}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported the face boxes of {coll.name} to {path}")
        return {"FINISHED"}


CLASSES = (FACEANYTHING_OT_rebuild_scene, FACEANYTHING_OT_export_alembic,
           FACEANYTHING_OT_export_markers, FACEANYTHING_OT_export_face_boxes)
