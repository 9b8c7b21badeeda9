# SPDX-License-Identifier: GPL-3.0-or-later
"""Exports of a built result (Alembic, marker CSV / JSON) and the result operators."""
import csv
import json

import bpy
import numpy as np
import pytest

from face_anything_addon.blender import export, result
from face_anything_addon.blender import scene as sc
from face_anything_addon.core.capture import Capture

from test_scene import (FRAMES, MARKERS, expected_world, objects_of, scene_capture,  # noqa: I001
                        world_vertices)


@pytest.fixture(scope="module")
def capture() -> Capture:
    return scene_capture()


def import_alembic(path, fps, fps_base):
    """A fresh empty file at the export's frame rate (Alembic stores time in seconds), with the
    .abc imported; returns {name: object}."""
    bpy.ops.wm.read_homefile(use_empty=True)
    r = bpy.context.scene.render
    r.fps, r.fps_base = fps, fps_base
    assert bpy.ops.wm.alembic_import(filepath=str(path), as_background_job=False) == {"FINISHED"}
    return {ob.name: ob for ob in bpy.data.objects}


@pytest.mark.parametrize("storage", ["SHAPE_KEYS", "POINT_CACHE"])
def test_alembic_round_trip_matches_the_capture(empty_file, capture, tmp_path, storage):
    user = bpy.data.objects.new("UserEmpty", None)
    bpy.context.scene.collection.objects.link(user)
    coll = sc.build_scene(bpy.context, capture, storage=storage,
                          capture_path=tmp_path / "shot.capture.npz")
    obs = objects_of(coll)
    vl = bpy.context.view_layer
    vl.update()
    user.select_set(True)
    vl.objects.active = user
    hidden = obs["markers"][0]
    hidden.hide_set(True)  # hidden by the user: exported all the same, hidden again after
    path = export.export_alembic(bpy.context, coll, tmp_path / "shot.abc")
    assert user.select_get() and vl.objects.active == user  # selection restored
    assert not obs["face"].select_get() and hidden.hide_get()
    camera_world = np.array(obs["camera"].matrix_world)
    lens = obs["camera"].data.lens
    fps, fps_base = bpy.context.scene.render.fps, bpy.context.scene.render.fps_base

    imported = import_alembic(path, fps, fps_base)
    assert sorted(imported) == sorted(["shot_camera", "shot_face", "shot_head", *MARKERS])
    face = imported["shot_face"]
    assert face.modifiers[0].type == "MESH_SEQUENCE_CACHE"
    assert imported["shot_camera"].data.lens == pytest.approx(lens, rel=1e-5)

    class Camera:  # expected_world needs only matrix_world
        matrix_world = camera_world

    for i, f in enumerate(FRAMES):
        bpy.context.scene.frame_set(int(f))
        np.testing.assert_allclose(world_vertices(face),
                                   expected_world(Camera, capture.positions[i]), atol=1e-5)
        for j, name in enumerate(MARKERS):
            if np.isfinite(capture.marker_xyz[i, j]).all():
                np.testing.assert_allclose(
                    np.array(imported[name].matrix_world.translation),
                    expected_world(Camera, capture.marker_xyz[i, j]), atol=1e-5)


def test_alembic_export_refuses_a_result_outside_the_view_layer(empty_file, capture, tmp_path):
    coll = sc.build_scene(bpy.context, capture, capture_path=tmp_path / "c.npz")
    bpy.context.view_layer.layer_collection.children[coll.name].exclude = True
    with pytest.raises(export.ExportError, match="not in the view layer"):
        export.export_alembic(bpy.context, coll, tmp_path / "x.abc")
    assert not (tmp_path / "x.abc").exists()


def _f32(text):
    return np.float32(text) if text else np.float32(np.nan)


def test_markers_csv(capture, tmp_path):
    path = export.export_markers(capture, tmp_path / "m.csv", frame_offset=0)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# Face Anything markers: footage shot, 1920x1080 px")
    assert "OpenCV convention: x right, y down, z forward" in lines[1]
    rows = list(csv.reader(lines[2:]))
    assert rows[0] == ["frame", "name", "x", "y", "X", "Y", "Z", "visible"]
    rows = rows[1:]
    n, m = len(FRAMES), len(MARKERS)
    assert len(rows) == n * m
    assert [int(r[0]) for r in rows] == np.repeat(FRAMES, m).tolist()
    assert [r[1] for r in rows] == MARKERS * n
    table = np.array([[_f32(v) for v in r[2:7]] for r in rows], np.float32).reshape(n, m, 5)
    np.testing.assert_array_equal(table[..., :2], capture.marker_xy)  # bit-exact float32
    np.testing.assert_array_equal(table[..., 2:], capture.marker_xyz)  # NaN where missing
    assert rows[2 * m + 1][4:7] == ["", "", ""]  # the marker without a position
    assert [int(r[7]) for r in rows] == capture.marker_visible.astype(int).ravel().tolist()


def test_markers_json_and_filter(capture, tmp_path):
    path = export.export_markers(capture, tmp_path / "m.json", marker_filter="mouth_*",
                                 frame_offset=100)
    doc = json.loads(path.read_text())
    assert doc["format"] == "face-anything-markers" and doc["frame_offset"] == 100
    assert "OpenCV" in doc["coordinates"]["X, Y, Z"] and "pixels" in doc["coordinates"]["x, y"]
    assert doc["frame"] == FRAMES.tolist() and doc["footage_size"] == [1920, 1080]
    assert [mk["name"] for mk in doc["markers"]] == ["mouth_left", "mouth_right"]
    left = doc["markers"][0]
    j = MARKERS.index("mouth_left")
    x = np.array(left["x"], np.float32)
    np.testing.assert_array_equal(x, capture.marker_xy[:, j, 0])
    z = np.array([np.nan if v is None else v for v in left["Z"]], np.float32)
    np.testing.assert_array_equal(z, capture.marker_xyz[:, j, 2])
    assert left["Z"][2] is None
    assert left["visible"] == capture.marker_visible[:, j].astype(int).tolist()
    with pytest.raises(export.ExportError, match="end in .csv or .json"):
        export.export_markers(capture, tmp_path / "m.txt")


# ------------------------------------------------------------------------------- operators

def test_operators_rebuild_and_export(empty_file, addon_from_source, capture, tmp_path):
    ops = bpy.ops.faceanything
    assert ops.rebuild_scene.poll()
    assert not ops.export_alembic.poll() and not ops.export_markers.poll()  # no result yet
    assert not ops.export_face_boxes.poll()
    with pytest.raises(RuntimeError, match="capture file not found"):
        ops.rebuild_scene(filepath=str(tmp_path / "absent.npz"))
    with pytest.raises(RuntimeError, match="No capture file"):
        ops.rebuild_scene()
    path = capture.save(tmp_path / "shot.capture.npz")
    assert ops.rebuild_scene(filepath=str(path)) == {"FINISHED"}
    coll = bpy.data.collections["Face Anything: shot"]
    assert coll[result.CAPTURE_PATH] == str(path.resolve())
    assert ops.export_alembic.poll()  # the only result in the scene

    # Rebuild the active result with other settings, from its stored capture path.
    bpy.context.view_layer.update()
    bpy.context.view_layer.objects.active = objects_of(coll)["face"]
    assert ops.rebuild_scene(storage="POINT_CACHE", marker_filter="nose_*") == {"FINISHED"}
    coll = bpy.data.collections["Face Anything: shot"]
    assert coll[result.STORAGE] == "POINT_CACHE" and coll[result.MARKER_FILTER] == "nose_*"
    assert [m.name for m in objects_of(coll)["markers"]] == ["nose_tip"]
    assert (tmp_path / "shot.capture.pc2").is_file()
    assert len([c for c in bpy.data.collections if c.name.startswith("Face Anything")]) == 1

    assert ops.export_alembic(filepath=str(tmp_path / "out")) == {"FINISHED"}
    assert (tmp_path / "out.abc").stat().st_size > 0
    assert ops.export_markers(filepath=str(tmp_path / "m.csv"), file_format="CSV") == {
        "FINISHED"}
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert len(rows) == 3 + len(FRAMES) and all(",nose_tip," in r for r in rows[3:])
    assert ops.export_markers(filepath=str(tmp_path / "m"), file_format="JSON") == {"FINISHED"}
    assert json.loads((tmp_path / "m.json").read_text())["markers"][0]["name"] == "nose_tip"

    # The face boxes the network saw: a capture made before they were recorded has none
    with pytest.raises(RuntimeError, match="no face boxes"):
        ops.export_face_boxes(filepath=str(tmp_path / "none.csv"))
    assert not (tmp_path / "none.csv").exists()
    boxes = [[10.0 + i, 20.0, 110.0 + i, 140.0] for i in range(len(FRAMES))]
    capture.settings["face_boxes"] = boxes
    capture.save(path)
    assert ops.export_face_boxes(filepath=str(tmp_path / "shot_boxes")) == {"FINISHED"}
    from face_anything_addon.core.face_boxes import read_face_boxes

    back = read_face_boxes(tmp_path / "shot_boxes.csv")
    assert sorted(back) == sorted(int(n) for n in capture.frame_numbers)
    np.testing.assert_allclose([back[int(n)] for n in capture.frame_numbers], boxes)

    # A result whose capture file went away: a clear error, nothing written.
    path.unlink()
    with pytest.raises(RuntimeError, match="capture file not found"):
        ops.export_markers(filepath=str(tmp_path / "again.csv"), file_format="CSV")
    assert not (tmp_path / "again.csv").exists()
