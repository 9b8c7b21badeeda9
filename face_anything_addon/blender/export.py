# SPDX-License-Identifier: GPL-3.0-or-later
"""Exports of a result: Alembic (face, camera, markers, head) and the markers as CSV or JSON.

Markers come straight from the capture (exact values, no resampling): one row per captured frame
and marker. Columns: frame (the footage's own frame number; Blender frame = frame + frame_offset),
name, x, y (footage pixels, the top-left pixel's centre at (0.5, 0.5)), X, Y, Z (camera space,
metres, OpenCV convention: x right, y down, z forward), visible (1 observed, 0 not). Floats are
written with the fewest digits that read back to the same float32; a missing value is empty (CSV)
or null (JSON).
"""
from __future__ import annotations

import csv
import json
from contextlib import contextmanager
from pathlib import Path

import bpy
import numpy as np

from ..core.capture import Capture
from ..core.lens_distortion import footage_xy
from . import markers, result

COLUMNS = ("frame", "name", "x", "y", "X", "Y", "Z", "visible")
COORDINATES = {
    "frame": "the footage's own frame number (Blender frame = frame + frame_offset)",
    "x, y": "footage pixels, x right, y down, the top-left pixel's centre at (0.5, 0.5); on the "
            "footage as shot (a lens distortion undone for the capture is applied again)",
    "X, Y, Z": "camera space in metres, OpenCV convention: x right, y down, z forward (Blender's "
               "camera space is X, -Y, -Z)",
    "visible": "1: the marker was observed in that frame, 0: not",
}


class ExportError(Exception):
    """An export that cannot be done as asked (the message says what to do)."""


# ------------------------------------------------------------------------------------- Alembic

def exported_objects(collection: bpy.types.Collection) -> list[bpy.types.Object]:
    """The result's camera, face, markers and head."""
    build = collection.get(result.BUILD)
    return [ob for ob in collection.all_objects if ob.get(result.BUILD) == build]


@contextmanager
def _selecting(view_layer, objects):
    """Exactly `objects` selected (unhidden and selectable for the while) inside; the user's
    selection, active object and hide states come back on exit."""
    selected = [ob for ob in view_layer.objects if ob.select_get(view_layer=view_layer)]
    active = view_layer.objects.active
    states = [(ob, ob.hide_get(view_layer=view_layer), ob.hide_select) for ob in objects]
    try:
        for ob in selected:
            ob.select_set(False, view_layer=view_layer)
        for ob, _, _ in states:
            ob.hide_set(False, view_layer=view_layer)
            ob.hide_select = False
            ob.select_set(True, view_layer=view_layer)
        yield
    finally:
        for ob, hidden, unselectable in states:
            ob.select_set(False, view_layer=view_layer)
            ob.hide_set(hidden, view_layer=view_layer)
            ob.hide_select = unselectable
        for ob in selected:
            ob.select_set(True, view_layer=view_layer)
        view_layer.objects.active = active


def export_alembic(context, collection: bpy.types.Collection, filepath,
                   frame_range: tuple[int, int] | None = None) -> Path:
    """Write the result to an Alembic file over `frame_range` (default: the capture's frames).
    Only the result is exported: the selection is set to it for the export and then restored."""
    path = Path(bpy.path.abspath(str(filepath)))
    if path.suffix.lower() != ".abc":
        path = path.with_name(path.name + ".abc")
    view_layer = context.view_layer
    view_layer.update()  # bases of newly linked objects appear in view_layer.objects
    objects = exported_objects(collection)
    missing = [ob.name for ob in objects if view_layer.objects.get(ob.name) != ob]
    if not objects or missing:
        raise ExportError(f"{collection.name} is not in the view layer {view_layer.name!r} "
                          f"(excluded or not linked): include it, then export again")
    first, last = frame_range or tuple(collection.get(result.FRAME_RANGE) or
                                       (context.scene.frame_start, context.scene.frame_end))
    path.parent.mkdir(parents=True, exist_ok=True)
    with _selecting(view_layer, objects):
        with context.temp_override(scene=context.scene, view_layer=view_layer):
            done = bpy.ops.wm.alembic_export(
                filepath=str(path), start=int(first), end=int(last), selected=True,
                flatten=False, uvs=True, normals=True, face_sets=False,
                export_custom_properties=True, as_background_job=False)
    if "FINISHED" not in done or not path.is_file():
        raise ExportError(f"Blender's Alembic exporter did not write {path}")
    return path


# ------------------------------------------------------------------------------------- markers

def _text(values: np.ndarray) -> list[str]:
    """Shortest float32 text of each value; '' for NaN or infinity."""
    values = np.asarray(values, np.float32)
    text = values.astype(str)
    text[~np.isfinite(values)] = ""
    return text.tolist()


def marker_table(capture: Capture, marker_filter: markers.MarkerFilter = None) -> dict:
    """Columns (COLUMNS) of one row per frame and kept marker, frames outer, as text."""
    keep = markers.select_markers(list(capture.marker_names), marker_filter)
    n, m = capture.frame_count, len(keep)
    xy = footage_xy(capture, capture.marker_xy[:, keep]).reshape(n * m, 2)
    xyz = capture.marker_xyz[:, keep].reshape(n * m, 3)
    return {
        "frame": np.repeat(capture.frame_numbers, m).astype(str).tolist(),
        "name": [capture.marker_names[j] for j in keep] * n,
        "x": _text(xy[:, 0]), "y": _text(xy[:, 1]),
        "X": _text(xyz[:, 0]), "Y": _text(xyz[:, 1]), "Z": _text(xyz[:, 2]),
        "visible": capture.marker_visible[:, keep].reshape(-1).astype(np.int8).astype(str).tolist(),
    }


def export_markers_csv(capture: Capture, filepath, marker_filter: markers.MarkerFilter = None,
                       frame_offset: int = 0) -> Path:
    """Markers as CSV: two '#' comment lines (footage; units and conventions), the header
    frame,name,x,y,X,Y,Z,visible, then one row per frame and marker."""
    path = Path(filepath)
    table = marker_table(capture, marker_filter)
    w, h = capture.footage_size
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write(f"# Face Anything markers: footage {capture.footage_name}, {w}x{h} px, "
                 f"{capture.fps:g} fps, frame_offset {frame_offset}\n")
        fh.write("# " + "; ".join(f"{k}: {v}" for k, v in COORDINATES.items()) + "\n")
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(zip(*(table[c] for c in COLUMNS)))
    return path


def _numbers(values: np.ndarray) -> list:
    """float32 values as the shortest decimals that read back the same; None for NaN/inf."""
    return [None if not t else float(t) for t in _text(values)]


def export_markers_json(capture: Capture, filepath, marker_filter: markers.MarkerFilter = None,
                        frame_offset: int = 0) -> Path:
    """Markers as JSON: the conventions, the frame numbers, then per marker its columns as arrays
    over those frames (x, y, X, Y, Z, visible)."""
    path = Path(filepath)
    keep = markers.select_markers(list(capture.marker_names), marker_filter)
    xy = footage_xy(capture, capture.marker_xy)
    doc = {
        "format": "face-anything-markers", "version": 1,
        "footage": capture.footage_name, "footage_size": list(map(int, capture.footage_size)),
        "fps": capture.fps, "frame_offset": int(frame_offset),
        "coordinates": COORDINATES,
        "lens_distortion": (capture.settings or {}).get("lens_distortion"),
        "frame": capture.frame_numbers.astype(int).tolist(),
        "markers": [{
            "name": capture.marker_names[j],
            "x": _numbers(xy[:, j, 0]), "y": _numbers(xy[:, j, 1]),
            "X": _numbers(capture.marker_xyz[:, j, 0]), "Y": _numbers(capture.marker_xyz[:, j, 1]),
            "Z": _numbers(capture.marker_xyz[:, j, 2]),
            "visible": capture.marker_visible[:, j].astype(int).tolist(),
        } for j in keep],
    }
    text = json.dumps(doc, indent=1, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def export_markers(capture: Capture, filepath, marker_filter: markers.MarkerFilter = None,
                   frame_offset: int = 0) -> Path:
    """CSV or JSON by the file's extension (.csv / .json)."""
    suffix = Path(filepath).suffix.lower()
    if suffix == ".json":
        return export_markers_json(capture, filepath, marker_filter, frame_offset)
    if suffix == ".csv":
        return export_markers_csv(capture, filepath, marker_filter, frame_offset)
    raise ExportError(f"{Path(filepath).name}: marker files end in .csv or .json")
