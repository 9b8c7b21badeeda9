# SPDX-License-Identifier: GPL-3.0-or-later
"""build_scene: a Capture turned into a camera, an animated face, markers and a head empty."""
import math

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Matrix, Vector

from face_anything_addon.blender import camera as cam
from face_anything_addon.blender import face_mesh, markers, point_cache, result, visibility
from face_anything_addon.blender import scene as sc
from face_anything_addon.blender.axes import points_to_blender
from face_anything_addon.core.capture import Capture
from face_anything_addon.core.errors import FootageError

FRAMES = np.array([3, 4, 5, 6, 8, 9, 10, 11, 12, 13], np.int64)  # frame 7 missing: a gap
K = np.array([[1400.0, 0.0, 980.3], [0.0, 1380.0, 530.7], [0.0, 0.0, 1.0]])
SIZE = (1920, 1080)
MARKERS = ["nose_tip", "mouth_left", "mouth_right", "brow_left", "auto_000"]


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry),
                              math.cos(rz), math.sin(rz))
    return (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
            @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))


def grid_faces(n: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    a = (i * n + j).ravel()
    b, c, d = a + 1, a + n, a + n + 1
    return np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)]).astype(np.int32)


def scene_capture(frames=FRAMES, grid: int = 12, seed: int = 0, camera=K, size=SIZE,
                  marker_names=MARKERS, name: str = "shot") -> Capture:
    """A small synthetic capture: a curved grid 'face' (head-local, OpenCV-like axes) that moves
    rigidly (rotation, translation ~0.6 m in front of the camera, slight scale) and deforms a
    little each frame; markers on vertices, projected with `camera`."""
    rng = np.random.default_rng(seed)
    frames = np.asarray(frames, np.int64)
    n, m = len(frames), len(marker_names)
    u, v = np.meshgrid(np.linspace(-0.07, 0.07, grid), np.linspace(-0.09, 0.09, grid),
                       indexing="ij")
    rest = np.stack([u, v, -2.0 * (u ** 2 + v ** 2)], -1).reshape(-1, 3).astype(np.float32)
    faces = grid_faces(grid)
    t = frames.astype(np.float64)
    pose = np.tile(np.eye(4), (n, 1, 1))
    for i, f in enumerate(t):
        s = 1.0 + 0.01 * math.sin(f)
        pose[i, :3, :3] = s * rotation(0.1 * math.sin(f / 3), 0.2 * math.cos(f / 4), 0.05 * f / 10)
        pose[i, :3, 3] = [0.01 * math.sin(f), 0.005 * math.cos(f), 0.6 + 0.02 * math.sin(f / 2)]
    local = rest[None] + rng.normal(scale=0.002, size=(n, len(rest), 3))
    positions = (np.einsum("nij,nvj->nvi", pose[:, :3, :3], local)
                 + pose[:, None, :3, 3]).astype(np.float32)
    on = np.linspace(0, len(rest) - 1, m).astype(int)
    xyz = positions[:, on].copy()
    xyz[2, 1] = np.nan  # a marker without a position in one frame
    projected = np.einsum("ij,nmj->nmi", np.asarray(camera), xyz.astype(np.float64))
    xy = (projected[..., :2] / projected[..., 2:]).astype(np.float32)
    visible = rng.random((n, m)) > 0.2
    visible[2, 1] = False
    return Capture(
        template_name="grid", canonical_space="test-space", rest_vertices=rest,
        template_canonical=(rest / 0.1).astype(np.float32), faces=faces,
        uvs=rng.random((len(faces), 3, 2)).astype(np.float32),
        region_names=["skin", "lips", "eyes"],
        vertex_region=(np.arange(len(rest)) % 4 - 1).astype(np.int16), frame_numbers=frames,
        positions=positions, visibility=rng.random((n, len(rest))) > 0.3,
        head_pose=pose.astype(np.float32), intrinsics=np.tile(camera, (n, 1, 1)),
        camera=np.asarray(camera, np.float64), marker_names=list(marker_names),
        marker_xy=xy, marker_xyz=xyz.astype(np.float32), marker_visible=visible,
        marker_residual=rng.random((n, m)).astype(np.float32), footage_name=name,
        footage_size=tuple(size), fps=23.976, model_name="synthetic", contract_version="1",
        depth_units="metric", settings={})


# ---------------------------------------------------------------------------------- helpers

def objects_of(coll) -> dict:
    """{role: object} of a result collection: camera, face, head, markers (list)."""
    out = {"markers": []}
    for ob in coll.objects:
        if ob.type == "CAMERA":
            out["camera"] = ob
        elif ob.type == "MESH":
            out["face"] = ob
        elif markers.MARKER_PROPERTY in ob:
            out["markers"].append(ob)
        else:
            out["head"] = ob
    return out


def world_vertices(ob) -> np.ndarray:
    """The evaluated mesh's vertices in world space at the current frame."""
    dg = bpy.context.evaluated_depsgraph_get()
    ev = ob.evaluated_get(dg)
    mesh = ev.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
    finally:
        ev.to_mesh_clear()
    mw = np.array(ev.matrix_world)
    return co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]


def expected_world(camera_ob, points_cv) -> np.ndarray:
    mw = np.array(camera_ob.matrix_world)
    return points_to_blender(points_cv).astype(np.float64) @ mw[:3, :3].T + mw[:3, 3]


def live_visibility(ob) -> np.ndarray:
    dg = bpy.context.evaluated_depsgraph_get()
    attr = ob.evaluated_get(dg).data.attributes[visibility.LIVE_ATTRIBUTE]
    out = np.empty(len(attr.data), np.float32)
    attr.data.foreach_get("value", out)
    return out


def fingerprint() -> dict:
    """Everything a build could disturb: every datablock (name, identity), the scene's settings,
    the collection tree, object parents and transforms."""
    out = {}
    for kind in dir(bpy.data):
        coll = getattr(bpy.data, kind, None)
        if isinstance(coll, bpy.types.bpy_prop_collection) and kind not in (
                "window_managers", "screens", "workspaces", "batch_remove"):
            try:
                out[kind] = sorted((b.name, b.session_uid) for b in coll)
            except AttributeError:
                pass
    s = bpy.context.scene
    r = s.render
    out["scene"] = (s.frame_start, s.frame_end, s.camera and s.camera.name, r.resolution_x,
                    r.resolution_y, r.resolution_percentage, r.pixel_aspect_x, r.pixel_aspect_y,
                    r.fps, r.fps_base)
    out["tree"] = sorted((c.name, tuple(sorted(o.name for o in c.objects)),
                          tuple(sorted(ch.name for ch in c.children)))
                         for c in [s.collection, *bpy.data.collections])
    out["objects"] = sorted((o.name, o.parent and o.parent.name, tuple(np.round(
        np.array(o.matrix_world), 6).ravel())) for o in bpy.data.objects)
    return out


@pytest.fixture
def user_file(empty_file):
    """An empty file with the user's own things in it: an animated cube in a collection."""
    mesh = bpy.data.meshes.new("UserCube")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    ob = bpy.data.objects.new("UserCube", mesh)
    coll = bpy.data.collections.new("User stuff")
    bpy.context.scene.collection.children.link(coll)
    coll.objects.link(ob)
    ob.location = (1, 2, 3)
    ob.keyframe_insert("location", frame=1)
    s = bpy.context.scene
    s.frame_start, s.frame_end = 1, 250
    s.render.resolution_x, s.render.resolution_y = 640, 480
    return bpy.context


@pytest.fixture(scope="module")
def capture() -> Capture:
    return scene_capture()


@pytest.fixture
def built(empty_file, capture, tmp_path):
    coll = sc.build_scene(bpy.context, capture, capture_path=tmp_path / "shot.capture.npz")
    return coll, objects_of(coll)


# ---------------------------------------------------------------------------------- camera

@pytest.mark.parametrize("matrix, size, sensor", [
    (K, SIZE, 36.0),  # fx > fy, off-centre principal point
    ([[900.0, 0, 612.0], [0, 960.0, 377.5], [0, 0, 1]], (1280, 720), 36.0),  # fx < fy
    ([[1500.0, 0, 530.0], [0, 1500.0, 975.0], [0, 0, 1]], (1080, 1920), 36.0),  # portrait
    ([[800.0, 0, 310.0], [0, 700.0, 500.0], [0, 0, 1]], (640, 1000), 36.0),  # portrait, fx > fy
    (K, SIZE, 23.5),  # a known lens on a Super 35 sensor
    ([[1500.0, 0, 540.0], [0, 1500.0, 960.0], [0, 0, 1]], (1080, 1920), 6.17),  # a phone's
])
def test_camera_projects_like_the_capture_matrix(empty_file, matrix, size, sensor):
    matrix = np.array(matrix)
    fit = cam.fit_camera(matrix, size, sensor)
    assert max(fit.sensor_width, fit.sensor_height) == pytest.approx(sensor)
    scene = bpy.context.scene
    data = bpy.data.cameras.new("c")
    cam.apply_camera(data, fit)
    ob = bpy.data.objects.new("c", data)
    scene.collection.objects.link(ob)
    ob.matrix_world = Matrix.Translation((0.3, -2.0, 1.1)) @ Matrix.Rotation(1.2, 4, "X")
    cam.apply_render_settings(scene, fit, (1, 10), 25.0)
    bpy.context.view_layer.update()
    rng = np.random.default_rng(1)
    points = np.c_[rng.uniform(-0.4, 0.4, (50, 2)), rng.uniform(0.3, 3.0, 50)]  # OpenCV camera
    world = expected_world(ob, points)
    got = np.array([world_to_camera_view(scene, ob, Vector(p))[:2] for p in world])
    got_px = np.c_[got[:, 0] * size[0], (1 - got[:, 1]) * size[1]]
    h = points @ matrix.T
    want_px = h[:, :2] / h[:, 2:]
    assert np.abs(got_px - want_px).max() < 0.01
    assert (scene.render.resolution_x, scene.render.resolution_y) == size


def test_build_sets_camera_scene_and_names(built, capture):
    coll, obs = built
    scene = bpy.context.scene
    assert coll.name == "Face Anything: shot" and coll.name in scene.collection.children
    assert scene.camera == obs["camera"]
    fit = cam.fit_camera(capture.camera, capture.footage_size)
    assert obs["camera"].data.lens == pytest.approx(fit.lens)
    assert obs["camera"].data.shift_x == pytest.approx(fit.shift_x)
    assert (scene.frame_start, scene.frame_end) == (3, 13)
    assert scene.render.fps / scene.render.fps_base == pytest.approx(23.976)
    for role in ("face", "head"):
        assert obs[role].parent == obs["camera"]
    assert [ob.type for ob in coll.all_objects].count("MESH") == 1  # the table is in no collection
    table = bpy.data.objects["shot visibility table"]
    assert table[result.BUILD] == coll[result.BUILD] and not table.users_collection
    assert all(m.parent == obs["camera"] for m in obs["markers"])
    assert sorted(m.name for m in obs["markers"]) == sorted(MARKERS)
    assert coll[result.CAPTURE_PATH].endswith("shot.capture.npz")
    assert coll[result.STORAGE] == "SHAPE_KEYS"


def test_a_known_lens_is_the_cameras_lens_on_its_sensor(empty_file, capture, tmp_path):
    """A capture shot with a known lens (50 mm on a 23.5 mm sensor): the camera shows that lens
    and sensor; a capture without one keeps the 36 mm sensor."""
    from dataclasses import replace

    w, h = capture.footage_size
    f = 50.0 / 23.5 * max(w, h)
    known = replace(capture, camera=np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]]),
                    settings={**capture.settings,
                              "pipeline": {"lens_mm": 50.0, "sensor_mm": 23.5}})
    coll = sc.build_scene(bpy.context, known, capture_path=tmp_path / "known.capture.npz")
    data = objects_of(coll)["camera"].data
    assert data.lens == pytest.approx(50.0) and data.sensor_width == pytest.approx(23.5)
    assert (data.shift_x, data.shift_y) == pytest.approx((0.0, 0.0))
    assert cam.sensor_of(capture) == cam.SENSOR_MM
    predicted = replace(capture, settings={"pipeline": {"lens_mm": 0.0, "sensor_mm": 23.5}})
    assert cam.sensor_of(predicted) == cam.SENSOR_MM  # the sensor only goes with a known lens


# ---------------------------------------------------------------------------------- the face

def test_mesh_topology_uvs_and_regions(built, capture):
    _, obs = built
    mesh = obs["face"].data
    assert len(mesh.vertices) == len(capture.rest_vertices)
    loops = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loops)
    np.testing.assert_array_equal(loops.reshape(-1, 3), capture.faces)
    uv = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers["UVMap"].data.foreach_get("uv", uv)
    np.testing.assert_array_equal(uv.reshape(-1, 3, 2), capture.uvs)
    region = np.empty(len(mesh.vertices), np.int32)
    mesh.attributes[face_mesh.REGION_ATTRIBUTE].data.foreach_get("value", region)
    np.testing.assert_array_equal(region, capture.vertex_region)
    groups = obs["face"].vertex_groups
    assert [g.name for g in groups] == capture.region_names
    lips = sorted(v.index for v in mesh.vertices if any(g.group == groups["lips"].index
                                                        for g in v.groups))
    assert lips == np.flatnonzero(capture.vertex_region == 1).tolist()


def test_one_shape_key_per_frame_pulsing_on_its_frame(built, capture):
    _, obs = built
    blocks = obs["face"].data.shape_keys.key_blocks
    assert len(blocks) == capture.frame_count + 1  # + Basis
    assert [b.name for b in blocks[1:]] == [f"frame_{f:04d}" for f in FRAMES]
    scene = bpy.context.scene
    for f in (3, 6, 13):
        scene.frame_set(f)
        values = np.array([b.value for b in blocks[1:]])
        np.testing.assert_array_equal(values, (FRAMES == f).astype(float))
    scene.frame_set(7)  # the gap: halfway between frames 6 and 8
    values = {b.name: b.value for b in blocks[1:] if b.value}
    assert values == pytest.approx({"frame_0006": 0.5, "frame_0008": 0.5})
    scene.frame_set(1)  # before the first frame the first shape holds
    assert blocks["frame_0003"].value == 1.0


@pytest.mark.parametrize("storage", ["SHAPE_KEYS", "POINT_CACHE"])
def test_evaluated_face_equals_the_capture_in_world_space(empty_file, capture, tmp_path, storage):
    coll = sc.build_scene(bpy.context, capture, storage=storage,
                          capture_path=tmp_path / "shot.capture.npz")
    obs = objects_of(coll)
    scene = bpy.context.scene
    for i, f in enumerate(FRAMES):
        scene.frame_set(int(f))
        want = expected_world(obs["camera"], capture.positions[i])
        np.testing.assert_allclose(world_vertices(obs["face"]), want, atol=2e-6)
        np.testing.assert_array_equal(live_visibility(obs["face"]), capture.visibility[i])
    scene.frame_set(7)
    want = expected_world(obs["camera"], (capture.positions[3] + capture.positions[4]) / 2)
    np.testing.assert_allclose(world_vertices(obs["face"]), want, atol=2e-6)
    assert not live_visibility(obs["face"]).any()
    if storage == "POINT_CACHE":
        pc2 = tmp_path / "shot.capture.pc2"
        assert obs["face"].modifiers[0].type == "MESH_CACHE" and pc2.is_file()
        assert obs["face"].data.shape_keys is None
        start, samples = point_cache.read_pc2(pc2)
        assert start == 3 and samples.shape == (11, len(capture.rest_vertices), 3)
        assert coll[result.POINT_CACHE_PATH] == str(pc2.resolve())
        assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


@pytest.mark.parametrize("storage", ["SHAPE_KEYS", "POINT_CACHE"])
def test_a_result_survives_save_and_reload(empty_file, capture, tmp_path, storage):
    folder = write_sequence(tmp_path / "shot", FRAMES)
    sc.build_scene(bpy.context, capture, folder, storage=storage,
                   capture_path=tmp_path / "shot.capture.npz")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "result.blend"))
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "result.blend"))
    coll = bpy.data.collections["Face Anything: shot"]
    obs = objects_of(coll)
    bpy.context.scene.frame_set(9)
    want = expected_world(obs["camera"], capture.positions[5])
    np.testing.assert_allclose(world_vertices(obs["face"]), want, atol=2e-6)
    np.testing.assert_array_equal(live_visibility(obs["face"]), capture.visibility[5])
    assert obs["camera"].data.background_images[0].image.source == "SEQUENCE"


def test_visibility_bits_round_trip(capture):
    packed = visibility.pack_bits(capture.visibility, FRAMES)
    for i, f in enumerate(FRAMES):
        np.testing.assert_array_equal(visibility.unpack_bits(packed, f - 3), capture.visibility[i])
    assert not visibility.unpack_bits(packed, 4).any()  # frame 7, the gap


# ------------------------------------------------------------------------- markers and head

def test_marker_empties_follow_the_capture(built, capture):
    _, obs = built
    scene = bpy.context.scene
    by_name = {m[markers.MARKER_PROPERTY]: m for m in obs["markers"]}
    for i, f in enumerate(FRAMES):
        scene.frame_set(int(f))
        for j, name in enumerate(MARKERS):
            ob = by_name[name]
            assert ob["visible"] == int(capture.marker_visible[i, j]), (f, name)
            if np.isfinite(capture.marker_xyz[i, j]).all():
                want = expected_world(obs["camera"], capture.marker_xyz[i, j])
                np.testing.assert_allclose(np.array(ob.matrix_world.translation), want,
                                           atol=2e-6)
    scene.frame_set(5)  # marker 1 has no position on frame 5: interpolated from 4 and 6
    want = expected_world(obs["camera"], (capture.marker_xyz[1, 1] + capture.marker_xyz[3, 1]) / 2)
    np.testing.assert_allclose(np.array(by_name["mouth_left"].matrix_world.translation), want,
                               atol=2e-6)


def test_marker_filter_picks_markers(empty_file, capture, tmp_path):
    for flt, want in (("mouth_*", ["mouth_left", "mouth_right"]), (["auto_000"], ["auto_000"]),
                      (lambda n: n.startswith("b"), ["brow_left"]), ("", MARKERS)):
        coll = sc.build_scene(bpy.context, capture, marker_filter=flt,
                              capture_path=tmp_path / "c.npz")
        got = sorted(m.name for m in objects_of(coll)["markers"])
        assert got == sorted(want)


def test_head_empty_carries_the_head_pose(built, capture):
    _, obs = built
    scene = bpy.context.scene
    rest = capture.rest_vertices.astype(np.float64)
    for i, f in enumerate(FRAMES):
        scene.frame_set(int(f))
        mw = np.array(obs["head"].matrix_world)
        got = rest @ mw[:3, :3].T + mw[:3, 3]
        pose = capture.head_pose[i].astype(np.float64)
        want = expected_world(obs["camera"], rest @ pose[:3, :3].T + pose[:3, 3])
        np.testing.assert_allclose(got, want, atol=2e-6)


def test_unusable_head_poses_are_skipped(empty_file, capture, tmp_path):
    bad = scene_capture()
    bad.head_pose[0] = np.nan  # no pose on the first frame
    bad.head_pose[4, :3, :3] *= -1  # a mirror
    coll = sc.build_scene(bpy.context, bad, capture_path=tmp_path / "c.npz")
    obs = objects_of(coll)
    from face_anything_addon.blender import animation
    curves = animation.fcurves_of(obs["head"])
    assert {len(fc.keyframe_points) for fc in curves} == {len(FRAMES) - 2}
    assert np.isfinite(np.array([v.co for v in obs["face"].data.vertices])).all()


def test_expression_weights_are_keyed_on_the_face(empty_file, tmp_path):
    cap = scene_capture()
    n = cap.frame_count
    cap.expression_names = ["jawOpen", "eyeBlinkLeft"]
    cap.expression_weights = np.stack([np.linspace(0, 1, n), np.full(n, 0.25)],
                                      1).astype(np.float32)
    coll = sc.build_scene(bpy.context, cap, capture_path=tmp_path / "e.npz")
    face = objects_of(coll)["face"]
    for f, weights in zip(sc.blender_frames(cap), cap.expression_weights):
        bpy.context.scene.frame_set(int(f))
        assert [face[name] for name in cap.expression_names] == pytest.approx(weights, abs=1e-6)
    ui = face.id_properties_ui("jawOpen").as_dict()
    assert ui["min"] == 0 and ui["max"] == 1
    actions = len(bpy.data.actions)
    sc.build_scene(bpy.context, cap, capture_path=tmp_path / "e.npz")  # a rebuild: no leftovers
    assert len(bpy.data.actions) == actions
    # a capture without the fit (the fixture's): no properties, no action on the face
    plain = objects_of(sc.build_scene(bpy.context, scene_capture(name="plain"),
                                      capture_path=tmp_path / "p.npz"))["face"]
    assert "jawOpen" not in plain and plain.animation_data is None


def test_quaternions_are_continuous_and_exact():
    rng = np.random.default_rng(3)
    angles = np.cumsum(rng.normal(scale=0.4, size=(200, 3)), axis=0)
    mats = np.array([rotation(*a) for a in angles])
    q = markers.quaternions(mats)
    from mathutils import Quaternion
    for qi, m in zip(q, mats):
        np.testing.assert_allclose(np.array(Quaternion(qi).to_matrix()), m, atol=1e-6)  # float32
    assert (np.einsum("ij,ij->i", q[1:], q[:-1]) >= 0).all()


# ---------------------------------------------------------------------------------- footage

def write_sequence(folder, numbers, size=(16, 9)):
    folder.mkdir()
    img = bpy.data.images.new("writer", *size)
    try:
        for n in numbers:
            img.pixels.foreach_set(np.full(size[0] * size[1] * 4, n / 20, np.float32))
            img.filepath_raw = str(folder / f"shot_{n:04d}.png")
            img.file_format = "PNG"
            img.save()
    finally:
        bpy.data.images.remove(img)
    return folder


def write_movie(folder, frames: int, size=(64, 48)):
    """An H.264 movie of `frames` frames, cut from a PNG sequence by Blender's sequencer."""
    pngs = sorted(write_sequence(folder / "png", range(1, frames + 1), size).iterdir())
    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences  # 5.0 / 4.2
    strip = strips.new_image("footage", str(pngs[0]), 1, 1)
    for p in pngs[1:]:
        strip.elements.append(p.name)
    scene.frame_start, scene.frame_end = 1, frames
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = *size, 100
    if hasattr(r.image_settings, "media_type"):  # 5.0: choose video before the FFMPEG format
        r.image_settings.media_type = "VIDEO"
    r.image_settings.file_format = "FFMPEG"
    r.ffmpeg.format, r.ffmpeg.codec = "MPEG4", "H264"
    r.use_sequencer = True
    r.filepath = str(folder / "take_")
    bpy.ops.render.render(animation=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    (path,) = folder.glob("take_*.mp4")
    return path


def test_footage_movie_is_the_camera_background(empty_file, capture, tmp_path):
    movie = write_movie(tmp_path, 13)
    coll = sc.build_scene(bpy.context, capture, movie, capture_path=tmp_path / "c.npz")
    bg = objects_of(coll)["camera"].data.background_images[0]
    assert bg.image.source == "MOVIE" and bg.image.filepath == str(movie)
    user = bg.image_user
    assert (user.frame_start, user.frame_offset, user.frame_duration) == (1, 0, 13)
    assert coll[result.FOOTAGE] == str(movie.resolve())


def test_footage_sequence_is_the_camera_background(empty_file, capture, tmp_path):
    folder = write_sequence(tmp_path / "shot", FRAMES)
    coll = sc.build_scene(bpy.context, capture, folder, capture_path=tmp_path / "c.npz")
    data = objects_of(coll)["camera"].data
    assert data.show_background_images and len(data.background_images) == 1
    bg = data.background_images[0]
    assert bg.image.source == "SEQUENCE" and bg.image[result.BUILD] == coll[result.BUILD]
    user = bg.image_user
    assert (user.frame_start, user.frame_offset, user.frame_duration) == (3, 2, 11)
    for f in (3, 9, 13):  # Blender's own mapping: file number = frame - start + 1 + offset
        user.frame_current = f - user.frame_start + 1 + user.frame_offset
        assert bg.image.filepath_from_user(image_user=user).endswith(f"shot_{f:04d}.png")
    # A Movie Clip plays its frame 1 at clip.frame_start: the result follows it.
    clip = bpy.data.movieclips.load(str(folder / "shot_0003.png"))
    clip.frame_start = 101
    coll = sc.build_scene(bpy.context, capture, clip, capture_path=tmp_path / "c.npz")
    obs = objects_of(coll)
    assert (bpy.context.scene.frame_start, bpy.context.scene.frame_end) == (103, 113)
    assert obs["camera"].data.background_images[0].clip == clip
    assert obs["face"].data.shape_keys.key_blocks[1].name == "frame_0103"
    assert coll[result.FOOTAGE] == "clip:" + clip.name and coll[result.FRAME_OFFSET] == 100


def test_footage_files_with_a_lens_s_distortion_are_shown_undistorted(user_file, capture,
                                                                       tmp_path, monkeypatch):
    """A capture whose footage was undistorted (a lens given on the command line) over footage
    files: the camera shows them through a Movie Clip that carries the lens, undistorted, its
    frames lined up as the files'; the clip is the result's, replaced and removed with it."""
    import copy

    from face_anything_addon.blender.footage import footage_from_clip
    from face_anything_addon.core.lens_distortion import LensDistortion

    folder = write_sequence(tmp_path / "shot", FRAMES)
    lens = LensDistortion("BROWN", (-0.2, 0.03, 0.005, -0.001, 0.01, -0.005), 1400.0,
                          (980.3, 1080 - 530.7), SIZE)
    bent = copy.copy(capture)
    bent.settings = {**capture.settings, "lens_distortion": lens.record()}
    path = tmp_path / "shot.capture.npz"
    before = fingerprint()
    clips = set(bpy.data.movieclips)
    coll = sc.build_scene(bpy.context, bent, folder, capture_path=path)
    bg = objects_of(coll)["camera"].data.background_images[0]
    assert bg.source == "MOVIE_CLIP" and bg.clip_user.use_render_undistorted
    clip = bg.clip
    assert clip not in clips and clip[result.BUILD] == coll[result.BUILD]
    assert clip.name == "shot lens" and not bpy.data.images.get("shot_0003.png")
    camera = clip.tracking.camera
    assert camera.distortion_model == "BROWN"
    got = [getattr(camera, k) for k in ("brown_k1", "brown_k2", "brown_k3", "brown_k4",
                                         "brown_p1", "brown_p2")]
    np.testing.assert_allclose(got, lens.coefficients, rtol=1e-6)
    assert camera.focal_length_pixels == pytest.approx(1400.0)
    np.testing.assert_allclose(camera.principal_point_pixels, lens.principal, rtol=1e-6)
    # the clip plays each file at the Blender frame of its number (offset 0), as the files did
    read = footage_from_clip(clip)
    shown = [n + clip.frame_start - 1 for n in read.frame_numbers]
    assert shown == [int(f) for f in FRAMES] == list(sc.blender_frames(bent))
    # rebuilt: one clip still; removed: none left, the file as it was
    sc.build_scene(bpy.context, bent, folder, capture_path=path)
    assert len(bpy.data.movieclips) == len(clips) + 1
    result.remove_result(bpy.data.collections["Face Anything: shot"])
    assert set(bpy.data.movieclips) == clips
    assert {k: v for k, v in fingerprint().items() if k != "scene"} == {
        k: v for k, v in before.items() if k != "scene"}
    # a build that fails after the clip is made leaves no clip behind
    monkeypatch.setattr(markers, "key_marker", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        sc.build_scene(bpy.context, bent, folder, capture_path=path)
    assert set(bpy.data.movieclips) == clips


# --------------------------------------------------------------------- replace and roll back

KINDS = ("objects", "meshes", "cameras", "actions", "images", "node_groups", "collections",
         "shape_keys", "movieclips")


def counts() -> dict:
    return {k: len(getattr(bpy.data, k)) for k in KINDS}


def test_rebuild_replaces_the_previous_result_only(user_file, capture, tmp_path):
    folder = write_sequence(tmp_path / "shot", FRAMES)
    path = tmp_path / "shot.capture.npz"
    before = fingerprint()
    sc.build_scene(bpy.context, capture, folder, capture_path=path)
    once = counts()
    user_ob = bpy.data.objects["UserCube"]
    coll = sc.build_scene(bpy.context, capture, folder, capture_path=path)
    assert counts() == once
    assert bpy.data.objects["UserCube"] == user_ob and user_ob.animation_data.action
    assert [c.name for c in bpy.context.scene.collection.children] == [
        "User stuff", "Face Anything: shot"]
    assert not [b.name for k in KINDS for b in getattr(bpy.data, k) if ".001" in b.name]
    # Another footage gets its own result next to it.
    other = sc.build_scene(bpy.context, scene_capture(name="take2"), capture_path=path)
    assert other.name == "Face Anything: take2" and coll.name == "Face Anything: shot"
    # Point cache and fewer markers: the new result replaces the old one, no leftovers.
    sc.build_scene(bpy.context, capture, folder, storage="POINT_CACHE", marker_filter="nose_*",
                   capture_path=path)
    result.remove_result(bpy.data.collections["Face Anything: shot"])
    result.remove_result(bpy.data.collections["Face Anything: take2"])
    after = fingerprint()
    assert {k: v for k, v in after.items() if k != "scene"} == {
        k: v for k, v in before.items() if k != "scene"}


def test_objects_the_user_put_in_a_result_survive_a_rebuild(user_file, capture, tmp_path):
    coll = sc.build_scene(bpy.context, capture, capture_path=tmp_path / "c.npz")
    user_ob = bpy.data.objects["UserCube"]
    coll.objects.link(user_ob)
    bpy.data.collections["User stuff"].objects.unlink(user_ob)
    sc.build_scene(bpy.context, capture, capture_path=tmp_path / "c.npz")
    assert bpy.data.objects.get("UserCube") == user_ob
    assert bpy.context.scene.collection.objects.get("UserCube") == user_ob


@pytest.mark.parametrize("storage", ["SHAPE_KEYS", "POINT_CACHE"])
def test_a_failure_mid_build_leaves_the_file_exactly_as_it_was(user_file, capture, tmp_path,
                                                                monkeypatch, storage):
    path = tmp_path / "shot.capture.npz"
    sc.build_scene(bpy.context, capture, write_sequence(tmp_path / "shot", FRAMES),
                   capture_path=path)  # an earlier result that must survive
    before = fingerprint()
    files = sorted(tmp_path.iterdir())
    calls = []

    def fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the third marker: most of the build is done
            raise RuntimeError("forced failure")
        return real(*args, **kwargs)

    real = markers.key_marker
    monkeypatch.setattr(markers, "key_marker", fail)
    with pytest.raises(RuntimeError, match="forced failure"):
        sc.build_scene(bpy.context, capture, tmp_path / "shot", storage=storage,
                       capture_path=path)
    assert fingerprint() == before
    assert sorted(tmp_path.iterdir()) == files  # no .pc2, no temporary file


def test_unusable_arguments_are_refused_before_anything_is_made(user_file, capture, tmp_path):
    before = fingerprint()
    with pytest.raises(ValueError, match="pass capture_path"):
        sc.build_scene(bpy.context, capture, storage="POINT_CACHE")
    with pytest.raises(ValueError, match="storage must be one of"):
        sc.build_scene(bpy.context, capture, storage="ALEMBIC")
    with pytest.raises(FootageError, match="footage not found"):
        sc.build_scene(bpy.context, capture, tmp_path / "missing")
    assert fingerprint() == before
