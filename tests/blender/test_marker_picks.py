# SPDX-License-Identifier: GPL-3.0-or-later
"""Markers the user chooses: Movie Clip tracks before a capture (clip_picks.py, Reconstruct) and
"Add Markers from Selected Vertices" after it (vertex_markers.py).

Clip tracks run the whole job with the tiny test model (tests/data/tiny_face_model.onnx): it
passes its input through as the canonical map, and the footage's disc carries a colour gradient
fixed to it that moves 2 px right per frame, so a point placed on the disc has an exact track.
Those tests need onnxruntime and skip without it (Blender 4.2's environment); the rest runs on
both Blender versions.
"""
import json
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

from face_anything_addon.blender import clip_picks, result, vertex_markers
from face_anything_addon.blender import scene as sc
from face_anything_addon.core.capture import Capture
from tests.blender.footage_helpers import H, W, disc_sequence, textured_disc

from test_scene import (FRAMES, expected_world, objects_of, scene_capture,  # noqa: I001
                        world_vertices)

TINY_MODEL = Path(__file__).resolve().parents[1] / "data" / "tiny_face_model.onnx"
PLACED = (39.4, 31.6)  # footage pixels on frame 3: on the disc, up and left of its centre (46, 36)


def addon_module(addon, name: str):
    return sys.modules[f"{addon.__name__}.blender.{name}"]


def set_up(addon, tmp_path):
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    prefs.model_path = str(TINY_MODEL)
    prefs.execution_provider = "CPU"
    prefs.cache_dir = str(tmp_path / "cache")
    s = bpy.context.scene.face_anything
    s.resolution = 84
    s.grid_vertices = 300
    return s


def add_track(clip, name: str, frame: int, xy, keyed: bool = True, mute: bool = False):
    track = clip.tracking.tracks.new(name=name, frame=frame)
    marker = track.markers.find_frame(frame)
    marker.co = clip_picks.footage_to_clip(xy, clip.size)
    marker.is_keyed, marker.mute = keyed, mute
    return track


@pytest.fixture
def clip(empty_file, tmp_path):
    return bpy.data.movieclips.load(str(disc_sequence(tmp_path / "shot") / "shot_0001.png"))


# ------------------------------------------------------------------------- clip tracks: parts

def test_marker_positions_convert_to_footage_pixels_and_back(clip):
    assert tuple(clip.size) == (W, H)
    assert clip_picks.clip_to_footage((0.0, 1.0), (W, H)) == (0.0, 0.0)  # top-left corner
    assert clip_picks.clip_to_footage((1.0, 0.0), (W, H)) == (W, H)  # bottom-right corner
    x, y = clip_picks.clip_to_footage(clip_picks.footage_to_clip(PLACED, (W, H)), (W, H))
    assert (x, y) == pytest.approx(PLACED)
    # Blender's own pixel: the marker at the centre of the top-left pixel
    assert clip_picks.footage_to_clip((0.5, 0.5), (W, H)) == pytest.approx((0.5 / W, 1 - 0.5 / H))


def test_the_pick_is_the_first_hand_placed_enabled_marker(clip):
    track = add_track(clip, "t", 2, (40, 30), keyed=False)  # tracked
    track.markers.insert_frame(4, co=clip_picks.footage_to_clip((44, 30), (W, H)))
    track.markers.insert_frame(5, co=clip_picks.footage_to_clip((46, 30), (W, H)))
    track.markers.find_frame(5).is_keyed = True
    assert clip_picks.pick_marker(track, set(range(1, 7))).frame == 4  # keyed before tracked
    track.markers.find_frame(4).mute = True
    assert clip_picks.pick_marker(track, set(range(1, 7))).frame == 5
    assert clip_picks.pick_marker(track, {1, 2, 3}).frame == 2  # no keyed one in range: tracked
    assert clip_picks.pick_marker(track, {1, 6}) is None
    add_track(clip, "muted", 3, (40, 30), mute=True)
    add_track(clip, "ok", 3, PLACED)
    obj = clip.tracking.objects.new("prop")
    obj.tracks.new(name="ok", frame=3)  # same name on another tracking object
    picks, left_out = clip_picks.track_picks(clip, range(1, 7), (W, H))
    assert [(p.name, p.frame) for p in picks] == [("t", 5), ("ok", 3)]
    assert picks[1].xy == pytest.approx(PLACED)
    assert "no enabled marker on the frames being captured (1-6)" in left_out["muted"]
    assert "another track has the same name" in left_out["ok"]
    assert clip_picks.track_count(clip) == 4


def test_pick_frames_are_decoded_as_the_footage_reads_them(clip):
    frames = clip_picks.read_frames(clip, {3, 5})
    assert sorted(frames) == [3, 5]
    for number, frame in frames.items():
        assert frame.size == (W, H)
        np.testing.assert_allclose(frame.image, textured_disc(number), atol=1 / 255)
    assert not [im for im in bpy.data.images if im.name.startswith(".face_anything")]


# ------------------------------------------------------------------- clip tracks: the whole job

def test_clip_tracks_become_tracked_markers(addon_from_source, clip, tmp_path):
    pytest.importorskip("onnxruntime")
    set_up(addon_from_source, tmp_path)
    add_track(clip, "dimple", 3, PLACED)
    add_track(clip, "off_face", 2, (4.0, 4.0))  # the dark background
    add_track(clip, "muted", 4, (45.0, 36.0), mute=True)
    rc = addon_module(addon_from_source, "reconstruct")
    job, background = rc.start_job(bpy.context, clip=clip)
    assert background == clip and sorted(job.pick_frames) == [2, 3]
    job.run()
    cap = job.capture
    assert "dimple" in cap.marker_names
    assert "off_face" not in cap.marker_names and "muted" not in cap.marker_names
    j = cap.marker_names.index("dimple")
    # on the frame it was placed on, and followed over the shot (the disc moves 2 px a frame)
    for i, number in enumerate(cap.frame_numbers):
        want = np.array(PLACED) + [2.0 * (number - 3), 0.0]
        assert np.linalg.norm(cap.marker_xy[i, j] - want) < 0.25, (number, cap.marker_xy[i, j])
    assert cap.marker_visible[:, j].all()
    warnings = job.status.warnings
    assert any(w.startswith("Track 'off_face' left out: (4.0, 4.0) on frame 2 is")
               for w in warnings)
    assert any(w.startswith("Track 'muted' left out: it has no enabled marker") for w in warnings)
    assert len(warnings) == 2

    coll = rc.finish_job(bpy.context, job)
    marker = next(m for m in objects_of(coll)["markers"] if m.name == "dimple")
    assert marker.parent == objects_of(coll)["camera"]
    saved = Capture.load(coll[result.CAPTURE_PATH])
    record = saved.settings["marker_picks"]
    assert record["accepted"]["dimple"]["frame"] == 3
    assert record["accepted"]["dimple"]["offset_px"] < 0.25
    assert set(record["rejected"]) == {"off_face"}


def test_clip_tracks_can_be_switched_off(addon_from_source, clip, tmp_path):
    pytest.importorskip("onnxruntime")
    settings = set_up(addon_from_source, tmp_path)
    assert settings.use_clip_tracks  # on by default
    settings.use_clip_tracks = False
    add_track(clip, "dimple", 3, PLACED)
    rc = addon_module(addon_from_source, "reconstruct")
    job, _ = rc.start_job(bpy.context, clip=clip)
    assert job.settings.pixel_picks == [] and job.pick_frames == {}
    job.run()
    assert "dimple" not in job.capture.marker_names and not job.status.warnings

    # Markers added from vertices carry over when Reconstruct runs again with the same mesh.
    coll = rc.finish_job(bpy.context, job)
    select_vertices(objects_of(coll)["face"], [7])
    assert bpy.ops.faceanything.add_vertex_markers(name="chin") == {"FINISHED"}
    job, _ = rc.start_job(bpy.context, clip=clip)
    job.run()
    coll = rc.finish_job(bpy.context, job)
    assert vertex_markers_of(coll)[7].name == "chin" and not job.status.warnings


def test_the_lens_can_come_from_the_clips_camera(addon_from_source, clip, tmp_path):
    """Lens: Clip's Camera takes the clip's Focal Length, Sensor Width (the sensor spans the
    frame's width; the capture's sensor size is along the longer side) and principal point
    (Blender's: pixels up from the bottom; the capture's: down from the top)."""
    pytest.importorskip("onnxruntime")
    settings = set_up(addon_from_source, tmp_path)
    settings.lens_source = "CLIP"
    camera = clip.tracking.camera
    camera.sensor_width, camera.focal_length = 30.0, 40.0
    camera.principal_point = (0.25, 0.5)  # right of and above the centre
    rc = addon_module(addon_from_source, "reconstruct")
    job, _ = rc.start_job(bpy.context, clip=clip)
    w, h = job.footage.size
    assert job.settings.pipeline.lens_mm == pytest.approx(40.0)
    assert job.settings.pipeline.sensor_mm == pytest.approx(30.0 * max(w, h) / w)
    job.run()
    assert job.capture.camera[0, 0] == pytest.approx(camera.focal_length_pixels)
    np.testing.assert_allclose(job.capture.camera[:2, 2], [w * 0.625, h * 0.25])
    assert not job.status.warnings  # no distortion, square pixels
    data = objects_of(rc.finish_job(bpy.context, job))["camera"].data
    assert data.lens == pytest.approx(40.0)
    sensor = data.sensor_width if w >= h else data.sensor_height
    assert sensor == pytest.approx(30.0 * max(w, h) / w)
    assert data.shift_x < 0 and data.shift_y < 0  # the view window moved left and down
    lens = rc.clip_lens(clip, (w, h))
    assert (lens.focal_mm, lens.sensor_mm) == pytest.approx((40.0, 30.0 * max(w, h) / w))
    assert rc.clip_lens(clip, (60, 120)).sensor_mm == pytest.approx(60.0)  # portrait: the height
    # lens distortion is undone on the footage (core.lens_distortion), in the footage's pixels
    camera.k1 = -0.05
    lens = rc.clip_lens(clip, (2 * w, 2 * h))  # footage read at twice the clip's size
    assert not lens.warnings
    assert lens.distortion.model == "POLYNOMIAL"
    assert lens.distortion.coefficients == pytest.approx((-0.05, 0, 0))
    assert lens.distortion.focal_px == pytest.approx(2 * camera.focal_length_pixels)
    assert lens.distortion.principal == pytest.approx((2 * w * 0.625, 2 * h * 0.75))
    assert lens.distortion.size == (2 * w, 2 * h)
    # what the capture does not undo is said, not silently dropped
    camera.pixel_aspect = 2.0
    lens = rc.clip_lens(clip, (w, h))
    assert lens.distortion is None and len(lens.warnings) == 2
    assert "pixel aspect 2" in lens.warnings[0]
    assert "(Polynomial: k1 -0.05) is not undone with non-square pixels" in lens.warnings[1]
    camera.distortion_model = "BROWN"  # another model's coefficients are what count now
    camera.brown_p1 = 0.01
    assert "Brown: brown_p1 0.01" in rc.clip_lens(clip, (w, h)).warnings[1]
    job, _ = rc.start_job(bpy.context, clip=clip)
    assert len(job.status.warnings) == 2 and job.settings.lens_distortion is None


def test_the_clips_lens_distortion_is_undone_and_the_view_shows_it_undone(
        addon_from_source, clip, tmp_path):
    """Clip's Camera with a distorted lens: the job undistorts the footage and the track picks,
    the capture records the lens, the camera view shows the clip undistorted, and 2D exports
    and the pick's record are on the footage as shot."""
    pytest.importorskip("onnxruntime")
    from face_anything_addon.blender import export
    from face_anything_addon.core.lens_distortion import LensDistortion

    settings = set_up(addon_from_source, tmp_path)
    settings.lens_source = "CLIP"
    camera = clip.tracking.camera
    camera.distortion_model, camera.division_k1 = "DIVISION", -0.2
    camera.principal_point = (0.5, 0.5)  # the lens's centre up and right: PLACED is bent more
    add_track(clip, "dimple", 3, PLACED)
    rc = addon_module(addon_from_source, "reconstruct")
    job, _ = rc.start_job(bpy.context, clip=clip)
    lens = job.settings.lens_distortion
    assert lens.model == "DIVISION" and lens.coefficients == pytest.approx((-0.2, 0.0))
    assert not job.status.warnings
    moved = lens.undistort(PLACED)
    assert 1.0 < np.hypot(*(moved - PLACED)) < 4  # the lens does bend the shot here
    job.run()
    cap = job.capture
    assert LensDistortion.of_capture(cap).record() == lens.record()
    entry = cap.settings["marker_picks"]["accepted"]["dimple"]
    assert entry["xy"] == pytest.approx(PLACED)  # as placed on the clip
    j = cap.marker_names.index("dimple")
    row = list(cap.frame_numbers).index(3)
    # the footage's disc is not itself bent, so in the capture's (undistorted) frame the marker
    # sits where the lens would have moved the point, and on the footage as shot it is back
    assert np.hypot(*(cap.marker_xy[row, j] - moved)) < 0.3
    assert entry["offset_px"] < 0.3
    coll = rc.finish_job(bpy.context, job)
    background = objects_of(coll)["camera"].data.background_images[0]
    assert background.clip == clip and background.clip_user.use_render_undistorted
    table = export.marker_table(cap)
    rows = [i for i, (f, n) in enumerate(zip(table["frame"], table["name"]))
            if f == "3" and n == "dimple"]
    xy = (float(table["x"][rows[0]]), float(table["y"][rows[0]]))
    assert xy == pytest.approx(lens.distort(cap.marker_xy[row, j]), abs=1e-3)
    doc = json.loads(export.export_markers_json(cap, tmp_path / "m.json").read_text())
    assert doc["lens_distortion"]["model"] == "DIVISION"
    marker = next(m for m in doc["markers"] if m["name"] == "dimple")
    assert (marker["x"][row], marker["y"][row]) == pytest.approx(xy, abs=1e-3)


# ------------------------------------------------------------------------ markers from vertices

SELECTED = [5, 40, 77]


@pytest.fixture
def built(addon_from_source, empty_file, tmp_path):
    """A result whose capture file exists, its face active and in Edit Mode with SELECTED."""
    capture = scene_capture()
    path = capture.save(tmp_path / "shot.capture.npz")
    coll = sc.build_scene(bpy.context, capture, capture_path=path)
    face = objects_of(coll)["face"]
    select_vertices(face, SELECTED)
    return capture, coll, face


def select_vertices(face, indices, edit=True):
    """Exactly `indices` selected on the active `face`, left in Edit Mode (or Object Mode)."""
    view_layer = bpy.context.view_layer
    view_layer.update()
    view_layer.objects.active = face
    face.select_set(True)
    if face.mode != "EDIT":
        bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.select_mode(type="VERT")
    bpy.ops.mesh.select_all(action="DESELECT")
    bpy.ops.object.mode_set(mode="OBJECT")
    select = np.zeros(len(face.data.vertices), bool)
    select[list(indices)] = True
    face.data.vertices.foreach_set("select", select)
    if edit:
        bpy.ops.object.mode_set(mode="EDIT")


def vertex_markers_of(coll) -> dict:
    return {m[vertex_markers.VERTEX_PROPERTY]: m for m in objects_of(coll)["markers"]
            if vertex_markers.VERTEX_PROPERTY in m}


def test_markers_follow_the_selected_vertices(built):
    capture, coll, face = built
    assert bpy.ops.faceanything.add_vertex_markers(name="dimple") == {"FINISHED"}
    assert bpy.context.mode == "OBJECT" and bpy.context.view_layer.objects.active == face
    made = vertex_markers_of(coll)
    assert sorted(made) == SELECTED
    assert sorted(m.name for m in made.values()) == ["dimple_40", "dimple_5", "dimple_77"]
    camera = objects_of(coll)["camera"]
    for ob in made.values():
        assert ob.parent == camera and ob[result.BUILD] == coll[result.BUILD]
        assert ob.select_get() and ob.animation_data.action[result.BUILD] == coll[result.BUILD]
    scene = bpy.context.scene
    for i in (0, 3, 4, 9):  # several frames, across the gap at frame 7
        scene.frame_set(int(FRAMES[i]))
        vertices = world_vertices(face)
        for v, ob in made.items():
            np.testing.assert_allclose(np.array(ob.matrix_world.translation), vertices[v],
                                       atol=2e-6)
            assert ob["visible"] == int(capture.visibility[i, v])
    np.testing.assert_allclose(np.array(made[40].matrix_world.translation),
                               expected_world(camera, capture.positions[9, 40]), atol=2e-6)
    assert [d["name"] for d in vertex_markers.definitions(coll)] == [
        "dimple_5", "dimple_40", "dimple_77"]

    # one vertex: the name as given; the same name again: refused, nothing made
    select_vertices(face, [12], edit=False)  # Object Mode: the stored selection
    assert bpy.ops.faceanything.add_vertex_markers(name="chin") == {"FINISHED"}
    assert vertex_markers_of(coll)[12].name == "chin"
    count = len(bpy.data.objects)
    with pytest.raises(RuntimeError, match="already has markers named chin: choose another"):
        bpy.ops.faceanything.add_vertex_markers(name="chin")
    with pytest.raises(RuntimeError, match="already has markers named nose_tip"):
        bpy.ops.faceanything.add_vertex_markers(name="nose_tip")  # a capture marker
    assert len(bpy.data.objects) == count


def test_vertex_markers_are_exported_and_survive_a_rebuild(built, tmp_path):
    capture, coll, face = built
    bpy.ops.faceanything.add_vertex_markers(name="dimple")
    assert bpy.ops.faceanything.export_markers(filepath=str(tmp_path / "m.csv"),
                                               file_format="CSV") == {"FINISHED"}
    rows = [r.split(",") for r in (tmp_path / "m.csv").read_text().splitlines()[3:]]
    dimple = [r for r in rows if r[1] == "dimple_40"]
    assert len(dimple) == len(FRAMES) and len(rows) == len(FRAMES) * (5 + 3)
    h = capture.positions[:, 40].astype(np.float64) @ capture.camera.T
    np.testing.assert_allclose([[float(r[2]), float(r[3])] for r in dimple],
                               h[:, :2] / h[:, 2:], rtol=1e-6)
    np.testing.assert_allclose([[float(c) for c in r[4:7]] for r in dimple],
                               capture.positions[:, 40], rtol=1e-6)
    assert [int(r[7]) for r in dimple] == capture.visibility[:, 40].astype(int).tolist()
    assert bpy.ops.faceanything.export_markers(filepath=str(tmp_path / "m.json"),
                                               file_format="JSON") == {"FINISHED"}
    names = [m["name"] for m in json.loads((tmp_path / "m.json").read_text())["markers"]]
    assert names[-3:] == ["dimple_5", "dimple_40", "dimple_77"]

    bpy.context.view_layer.objects.active = face
    assert bpy.ops.faceanything.rebuild_scene(storage="POINT_CACHE") == {"FINISHED"}
    coll = bpy.data.collections["Face Anything: shot"]
    made = vertex_markers_of(coll)
    assert sorted(made) == SELECTED and made[40].name == "dimple_40"
    assert len(vertex_markers.definitions(coll)) == 3
    bpy.context.scene.frame_set(int(FRAMES[2]))
    np.testing.assert_allclose(np.array(made[40].matrix_world.translation),
                               world_vertices(objects_of(coll)["face"])[40], atol=2e-6)


def test_one_undo_step_removes_the_markers(built):
    _, coll, face = built
    before = {ob.name for ob in bpy.data.objects}, len(bpy.data.actions)
    # Blender pushes an undo step after an UNDO operator run from the interface; a script has
    # to do it (background mode runs operators without undo pushes).
    bpy.ops.ed.undo_push(message="selected")
    assert bpy.ops.faceanything.add_vertex_markers(name="dimple") == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Add Markers from Selected Vertices")
    assert len(bpy.data.objects) == len(before[0]) + 3
    bpy.ops.ed.undo()
    assert ({ob.name for ob in bpy.data.objects}, len(bpy.data.actions)) == before
    coll = bpy.data.collections["Face Anything: shot"]
    assert vertex_markers.DEFINITIONS not in coll and bpy.context.mode == "EDIT_MESH"
    bpy.ops.object.mode_set(mode="OBJECT")


def test_bad_input_is_reported_and_changes_nothing(addon_from_source, built, monkeypatch):
    capture, coll, face = built
    ops = bpy.ops.faceanything
    user = bpy.data.meshes.new("user")
    user.from_pydata([(0, 0, 0)], [], [])
    user_ob = bpy.data.objects.new("user", user)
    bpy.context.scene.collection.objects.link(user_ob)
    count = len(bpy.data.objects), len(bpy.data.actions)

    select_vertices(face, [], edit=True)
    with pytest.raises(RuntimeError, match="No vertices selected: select vertices of the face"):
        ops.add_vertex_markers()
    select_vertices(face, [3])
    with pytest.raises(RuntimeError, match="Give the markers a name"):
        ops.add_vertex_markers(name="  ")

    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.context.view_layer.objects.active = objects_of(coll)["camera"]
    with pytest.raises(RuntimeError, match="is not a Face Anything face mesh"):
        ops.add_vertex_markers()
    bpy.context.view_layer.objects.active = user_ob
    with pytest.raises(RuntimeError, match="user is not a Face Anything face mesh"):
        ops.add_vertex_markers()
    bpy.context.view_layer.objects.active = None
    assert not ops.add_vertex_markers.poll()

    # a failure half-way: nothing is left, and the face is back in Edit Mode
    select_vertices(face, SELECTED)
    module = addon_module(addon_from_source, "markers")
    real = module.key_marker
    calls = []

    def fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("forced failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "key_marker", fail)
    with pytest.raises(RuntimeError, match="nothing was changed: forced failure"):
        ops.add_vertex_markers(name="dimple")
    monkeypatch.undo()
    assert (len(bpy.data.objects), len(bpy.data.actions)) == count
    assert vertex_markers.DEFINITIONS not in coll and bpy.context.mode == "EDIT_MESH"

    # the capture file went away
    Path(coll[result.CAPTURE_PATH]).unlink()
    with pytest.raises(RuntimeError, match="capture file not found.*Rebuild the result"):
        ops.add_vertex_markers(name="dimple")
    assert (len(bpy.data.objects), len(bpy.data.actions)) == count


def test_markers_carry_over_only_to_the_same_mesh(empty_file):
    capture = scene_capture()
    items = [vertex_markers.definition(capture, "a", 3), vertex_markers.definition(capture, "b", 9)]
    carried = vertex_markers.with_vertex_markers(capture, items)
    assert carried.capture.marker_names[-2:] == ["a", "b"] and not carried.warnings
    carried.capture.validate()
    np.testing.assert_array_equal(carried.capture.marker_xyz[:, -1], capture.positions[:, 9])
    other = scene_capture()
    other.template_canonical = other.template_canonical + 0.5  # another mesh
    other.marker_names[0] = "a"
    carried = vertex_markers.with_vertex_markers(other, items)
    assert carried.capture is other and carried.kept == []
    assert carried.warnings == [
        "Vertex marker 'a' left out: the capture has a marker of that name",
        "Vertex marker 'b' left out: the capture's mesh is not the one it was added to "
        "(vertex 9 differs)"]
