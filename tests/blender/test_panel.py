# SPDX-License-Identifier: GPL-3.0-or-later
"""The sidebar panel's settings: what it draws for which choices, and that what it shows reaches
the capture (`properties.capture_settings`). Drawn into a recording layout: background Blender
has no UI to draw into."""
import importlib
from types import SimpleNamespace

import bpy


class _Layout:
    """Records the property names drawn; every container is another recorder."""

    def __init__(self, drawn: list):
        self.drawn, self.active, self.enabled = drawn, True, True

    def column(self, **_):
        return _Layout(self.drawn)

    row = box = column

    def prop(self, data, name, **_):
        self.drawn.append(name)

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
    assert {"mesh", "expressions", "expression_prior", "smoothing"} <= set(names)
    assert "grid_vertices" not in names
    settings.mesh = "REFERENCE"  # a grid from a reference frame has no expression targets
    names = drawn(panels)
    assert "grid_vertices" in names and "expressions" not in names
    solve = props.capture_settings(settings, None).solve
    assert (solve.expressions, solve.expression_prior_mm) == (True, 4.0)
    settings.expressions, settings.expression_prior = False, 2.5
    solve = props.capture_settings(settings, None).solve
    assert (solve.expressions, solve.expression_prior_mm) == (False, 2.5)


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
