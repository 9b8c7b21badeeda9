# SPDX-License-Identifier: GPL-3.0-or-later
"""core.lens_distortion against Blender's own undistortion: the compositor's Movie Distortion node
(Undistort) on a Movie Clip whose pixels hold their own coordinates. Bilinear sampling of a
linear ramp is exact, so each output pixel tells where Blender read the clip: that must be where
`LensDistortion.distort` puts the pixel, for every model, off-centre principal point included.

The compositor may place its output a whole number of pixels off (Blender 5's grows the image by
the distortion's bounds and the render crops it), so one shift over the whole image is allowed.
"""
from pathlib import Path

import bpy
import numpy as np
import pytest

from face_anything_addon.core.lens_distortion import LensDistortion, MODELS

W, H, FOCAL, PRINCIPAL = 120, 80, 100.0, (57.0, 43.0)
CASES = {"POLYNOMIAL": (-0.25, 0.05, 0.01), "DIVISION": (-0.2, 0.03), "NUKE": (-0.1, 0.02),
         "BROWN": (-0.2, 0.03, 0.005, -0.001, 0.01, -0.005)}


@pytest.fixture(scope="module")
def ramp_clip(tmp_path_factory):
    """A one-frame clip (32-bit EXR) whose pixel (i, j) (j up) holds (0, i, j, 1)."""
    path = tmp_path_factory.mktemp("ramp") / "ramp_0001.exr"
    j, i = np.mgrid[0:H, 0:W]
    pixels = np.stack([np.zeros_like(i), i, j, np.ones_like(i)], -1).astype(np.float32)
    image = bpy.data.images.new("ramp", W, H, alpha=True, float_buffer=True)
    image.colorspace_settings.name = "Non-Color"  # data: saved as it is (Blender 4.2 would not)
    image.pixels.foreach_set(pixels.ravel())
    image.filepath_raw, image.file_format = str(path), "OPEN_EXR"
    image.save()
    bpy.data.images.remove(image)
    return path


def undistorted_by_blender(clip, out: Path) -> np.ndarray:
    """(H, W, 2) where Blender's Movie Distortion node read the clip for each output pixel."""
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = W, H
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Raw"
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    if hasattr(scene, "compositing_node_group"):  # Blender 5
        tree = bpy.data.node_groups.new("undistort", "CompositorNodeTree")
        scene.compositing_node_group = tree
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        output = tree.nodes.new("NodeGroupOutput")
    else:  # Blender 4.2
        scene.use_nodes = True
        tree = scene.node_tree
        tree.nodes.clear()
        output = tree.nodes.new("CompositorNodeComposite")
    source = tree.nodes.new("CompositorNodeMovieClip")
    source.clip = clip
    node = tree.nodes.new("CompositorNodeMovieDistortion")
    node.clip = clip
    if "Type" in node.inputs:
        node.inputs["Type"].default_value = "Undistort"
    else:
        node.distortion_type = "UNDISTORT"
    tree.links.new(source.outputs["Image"], node.inputs["Image"])
    tree.links.new(node.outputs["Image"], output.inputs[0])
    scene.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)
    rendered = bpy.data.images.load(str(out), check_existing=False)
    pixels = np.empty(W * H * 4, np.float32)
    rendered.pixels.foreach_get(pixels)
    bpy.data.images.remove(rendered)
    return pixels.reshape(H, W, 4)[..., 1:3]


@pytest.mark.parametrize("model", sorted(CASES))
def test_undistortion_reads_the_clip_where_blender_does(empty_file, ramp_clip, tmp_path, model):
    clip = bpy.data.movieclips.load(str(ramp_clip))
    clip.colorspace_settings.name = "Non-Color"
    camera = clip.tracking.camera
    camera.focal_length_pixels = FOCAL
    camera.principal_point_pixels = PRINCIPAL
    camera.distortion_model = model
    for name, value in zip(MODELS[model], CASES[model]):
        setattr(camera, name, value)
    read = undistorted_by_blender(clip, tmp_path / f"{model}.exr")
    lens = LensDistortion(model, CASES[model], FOCAL, PRINCIPAL, (W, H))
    # ours: output pixel (i, j up) is footage point (i + 0.5, H - j - 0.5); where the lens put
    # it, back in Blender's pixel indices (the ramp's values)
    j, i = np.mgrid[0:H, 0:W]
    best = None
    for dx in range(-4, 5):
        for dy in range(-4, 5):
            q = lens.distort(np.stack([i + dx + 0.5, H - (j + dy) - 0.5], -1))
            ours = np.stack([q[..., 0] - 0.5, H - q[..., 1] - 0.5], -1)
            inside = (read[..., 0] > 1) & (read[..., 0] < W - 2) & \
                (read[..., 1] > 1) & (read[..., 1] < H - 2)
            close = np.abs(ours - read).max(-1)[inside] < 0.01
            share = close.mean()
            if best is None or share > best[0]:
                best = (share, dx, dy, inside.mean())
    share, dx, dy, inside = best
    assert inside > 0.6, f"Blender's output is mostly outside the clip ({inside:.0%})"
    assert share > 0.95, f"only {share:.0%} of the pixels agree to 0.01 px (shift {dx}, {dy})"
