# SPDX-License-Identifier: GPL-3.0-or-later
"""The whole job in the extension as a user installs it (zip, bundled onnxruntime wheel), on
Blender 5.0 and 4.2: footage files -> Reconstruct -> a scene with the animated face."""
from pathlib import Path

import bpy

from tests.blender.footage_helpers import disc_sequence

TINY_MODEL = Path(__file__).resolve().parents[1] / "data" / "tiny_face_model.onnx"


def test_installed_extension_reconstructs(addon_from_zip, empty_file, tmp_path):
    prefs = bpy.context.preferences.addons[addon_from_zip.__name__].preferences
    prefs.model_path = str(TINY_MODEL)
    prefs.execution_provider = "CPU"
    prefs.cache_dir = str(tmp_path / "cache")
    settings = bpy.context.scene.face_anything
    settings.footage_path = str(disc_sequence(tmp_path / "shot"))
    settings.resolution = 84
    settings.grid_vertices = 300
    assert bpy.ops.faceanything.reconstruct() == {"FINISHED"}
    (col,) = [c for c in bpy.data.collections if c.name.startswith("Face Anything")]
    (face,) = [o for o in col.all_objects if o.type == "MESH"]
    assert len(face.data.shape_keys.key_blocks) == 1 + 6
    assert any(o.type == "CAMERA" for o in col.all_objects)
    (capture,) = (tmp_path / "cache").glob("*.capture.npz")
    assert capture.stat().st_size > 0
