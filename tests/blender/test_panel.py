# SPDX-License-Identifier: GPL-3.0-or-later
"""The sidebar panel's settings: what it draws for which choices, and that what it shows reaches
the capture (`properties.capture_settings`). Drawn into a recording layout: background Blender
has no UI to draw into."""
import importlib
from types import SimpleNamespace

import bpy
import pytest


class _Layout:
    """Records the property names drawn; every container is another recorder."""

    def __init__(self, drawn: list):
        self.drawn, self.active, self.enabled = drawn, True, True

    def column(self, **_):
        return _Layout(self.drawn)

    row = box = column

    def prop(self, data, name, index=None, text=None, **_):
        self.drawn.append(name if index is None else f"{name}[{index}] {text}")

    def prop_search(self, data, name, search_data, search_name, **_):
        self.drawn.append(f"{name} in {search_name}")

    def label(self, text="", **_):
        self.drawn.append(f"label: {text}")

    def operator(self, *_, **__):
        return SimpleNamespace()


def drawn(panels, clip=None) -> list:
    names = []
    me = SimpleNamespace(layout=_Layout(names), bl_space_type="VIEW_3D")
    space = SimpleNamespace(clip=clip) if clip is not None else None
    panels._FaceAnythingPanel.draw(me, SimpleNamespace(scene=bpy.context.scene, space_data=space))
    return names


def test_the_expression_fit_settings_show_with_the_template_and_reach_the_solve(
        addon_from_source, empty_file):
    panels = importlib.import_module(addon_from_source.__name__ + ".blender.panels")
    props = importlib.import_module(addon_from_source.__name__ + ".blender.properties")
    settings = bpy.context.scene.face_anything
    assert settings.mesh == "AUTO" and settings.expressions and settings.expression_prior == 4.0
    names = drawn(panels)
    assert {"mesh", "expressions", "expression_prior", "actor_face", "depth_weight",
            "actor_face_file", "smoothing"} <= set(names)
    settings.actor_face = False
    assert "actor_face_file" not in drawn(panels)
    settings.actor_face = True
    assert "grid_vertices" not in names
    settings.mesh = "REFERENCE"  # a grid from a reference frame has no expression targets
    names = drawn(panels)
    assert "grid_vertices" in names and "expressions" not in names and "actor_face" not in names
    default = props.SolveSettings()
    solve = props.capture_settings(settings, None).solve
    assert (solve.expressions, solve.expression_prior_mm, solve.identity_rounds,
            solve.depth_weight) == (True, 4.0, default.identity_rounds,
                                    pytest.approx(default.depth_weight))
    settings.expressions, settings.expression_prior = False, 2.5
    settings.actor_face, settings.depth_weight = False, 0.8
    solve = props.capture_settings(settings, None).solve
    assert (solve.expressions, solve.expression_prior_mm, solve.identity_rounds,
            solve.depth_weight) == (False, 2.5, 0, pytest.approx(0.8))


def test_clip_s_camera_says_when_the_clip_s_lens_distortion_will_be_undone(
        addon_from_source, empty_file, tmp_path):
    panels = importlib.import_module(addon_from_source.__name__ + ".blender.panels")
    image = bpy.data.images.new("frame", 32, 24)
    image.filepath_raw, image.file_format = str(tmp_path / "frame_0001.png"), "PNG"
    image.save()
    clip = bpy.data.movieclips.load(str(tmp_path / "frame_0001.png"))
    bpy.context.scene.face_anything.lens_source = "CLIP"
    assert not [n for n in drawn(panels, clip) if "distortion" in n]
    clip.tracking.camera.distortion_model = "NUKE"
    clip.tracking.camera.nuke_k1 = -0.02
    assert "label: Nuke distortion: undone first" in drawn(panels, clip)
    clip.tracking.camera.pixel_aspect = 1.5  # the capture then undoes neither
    assert "label: Nuke distortion: not undone (non-square pixels)" in drawn(panels, clip)


def test_a_known_lens_shows_its_optical_center_and_distortion_and_reaches_the_capture(
        addon_from_source, empty_file):
    panels = importlib.import_module(addon_from_source.__name__ + ".blender.panels")
    props = importlib.import_module(addon_from_source.__name__ + ".blender.properties")
    s = bpy.context.scene.face_anything
    assert "lens_distortion" not in drawn(panels)  # Estimate: no lens to describe
    s.lens_source, s.lens, s.sensor_width = "KNOWN", 35.0, 24.0
    names = drawn(panels)
    assert {"lens", "sensor_width", "use_principal", "principal", "lens_distortion"} <= set(names)
    assert not [n for n in names if n.startswith("distortion_coefficients")]
    assert props.known_distortion(s, (640, 480)) is None
    assert props.capture_settings(s, None).pipeline.principal_px is None  # the frame's centre
    s.lens_distortion = "BROWN"
    coefficients = [n for n in drawn(panels) if n.startswith("distortion_coefficients")]
    assert coefficients == [f"distortion_coefficients[{i}] {t}"
                            for i, t in enumerate(("K1", "K2", "K3", "K4", "P1", "P2"))]
    assert props.known_distortion(s, (640, 480)) is None  # all coefficients 0: nothing to undo
    s.lens_distortion = "DIVISION"
    s.distortion_coefficients = (-0.05, 0.01, 0.3, 0.0, 0.0, 0.0)  # a third is not DIVISION's
    assert [n for n in drawn(panels) if n.startswith("distortion_coefficients")] == [
        "distortion_coefficients[0] K1", "distortion_coefficients[1] K2"]
    s.use_principal, s.principal = True, (300.0, 200.0)
    lens = props.known_distortion(s, (640, 480))
    assert (lens.model, lens.coefficients) == ("DIVISION", (-0.05, 0.01))
    assert lens.focal_px == 35.0 / 24.0 * 640
    assert lens.principal == (300.0, 280.0) and lens.size == (640, 480)  # Blender's: y up
    assert props.capture_settings(s, None).pipeline.principal_px == (300.0, 200.0)
    s.lens_source = "ESTIMATE"  # the fields keep their values but describe no lens
    assert props.known_distortion(s, (640, 480)) is None
    assert props.capture_settings(s, None).pipeline.principal_px is None


def test_a_track_face_region_picks_one_of_the_clip_s_tracks(addon_from_source, empty_file,
                                                            tmp_path):
    panels = importlib.import_module(addon_from_source.__name__ + ".blender.panels")
    props = importlib.import_module(addon_from_source.__name__ + ".blender.properties")
    image = bpy.data.images.new("frame", 32, 24)
    image.filepath_raw, image.file_format = str(tmp_path / "frame_0001.png"), "PNG"
    image.save()
    clip = bpy.data.movieclips.load(str(tmp_path / "frame_0001.png"))
    settings = bpy.context.scene.face_anything
    settings.face_region = "TRACK"
    assert "face_track in tracks" in drawn(panels, clip)
    assert "label: Choose the track whose pattern area covers the face" in drawn(panels, clip)
    # the chosen track's box on the clip's frame shown (here: frame 1, the clip's start)
    track = clip.tracking.tracks.new(name="face", frame=1)
    track.markers.find_frame(1).co = (0.5, 0.5)
    track.markers.find_frame(1).pattern_corners = ((-0.25, -0.25), (0.25, -0.25), (0.25, 0.25),
                                                   (-0.25, 0.25))
    settings.face_track = "face"
    assert "label: Frame 1: box 16 x 12 px at 8, 6" in drawn(panels, clip)
    track.markers.find_frame(1).mute = True
    assert "label: Frame 1: not tracked, the box is interpolated or held" in drawn(panels, clip)
    assert "label: Needs footage from the Movie Clip Editor" in drawn(panels)  # 3D Viewport
    # the boxes come from the clip when the job starts (reconstruct.start_job)
    assert props.capture_settings(settings, None).pipeline.face_region == "auto"
    settings.face_region = "BOX"
    assert "face_box" in drawn(panels, clip) and "face_track in tracks" not in drawn(panels, clip)
