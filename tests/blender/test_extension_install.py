# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on as a user gets it: installed from the zip, enabled, disabled, enabled again."""
import subprocess
import sys
import sysconfig
from pathlib import Path

import bpy

ROOT = Path(__file__).resolve().parents[2]
IDENTITY_MODEL = ROOT / "tests" / "data" / "identity.onnx"


def extension_site_packages() -> Path:
    """Where Blender unpacks extensions' bundled wheels (it puts this folder on sys.path)."""
    (site,) = [p for p in sys.path if "extensions" in p and ".local" in p]
    return Path(site)


def registered_names():
    return {cls.__name__ for cls in bpy.types.Panel.__subclasses__() if cls.is_registered} | {
        cls.__name__ for cls in bpy.types.AddonPreferences.__subclasses__() if cls.is_registered}


def test_zip_installs_offline_and_registers(addon_from_zip):
    from_zip = Path(addon_from_zip.__file__).parent
    assert from_zip.parent.name == "user_default"
    assert (from_zip / "blender_manifest.toml").is_file()
    classes = sys.modules[addon_from_zip.__name__ + ".blender.registration"].CLASSES
    assert classes and all(cls.is_registered for cls in classes)
    assert {"FACEANYTHING_PT_clip", "FACEANYTHING_PT_view3d"} <= set(dir(bpy.types))
    prefs = bpy.context.preferences.addons[addon_from_zip.__name__].preferences
    assert prefs.execution_provider == "AUTO"


def test_bundled_wheels_import_inside_blender(addon_from_zip):
    site = extension_site_packages()
    assert (site / "onnxruntime" / "__init__.py").is_file()
    assert list(site.glob("onnxruntime_gpu-1.31.1.dist-info"))
    for pure in ("flatbuffers", "packaging", "google/protobuf"):
        assert (site / pure).is_dir(), pure

    # In this Blender process: the add-on's own status must see ONNX Runtime. Where the virtual
    # environment has no onnxruntime of its own (Blender 4.2's), it can only be the bundled wheel.
    info_mod = sys.modules[addon_from_zip.__name__ + ".core.runtime_info"]
    info = info_mod.runtime_info()
    assert info.ok and info.version == "1.31.1"
    venv_has_own = (Path(sysconfig.get_paths()["purelib"]) / "onnxruntime").is_dir()
    expected_home = Path(sysconfig.get_paths()["purelib"]) if venv_has_own else site
    assert Path(info.location).is_relative_to(expected_home)

    # The bundled wheel on its own runs a real model on the CPU.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import numpy as np, onnxruntime as ort;"
        "assert ort.__file__.startswith(sys.argv[1]), ort.__file__;"
        "s = ort.InferenceSession(sys.argv[2], providers=['CPUExecutionProvider']);"
        "x = np.arange(3, dtype=np.float32).reshape(1, 3);"
        "print(s.run(None, {'x': x})[0].tolist(), s.get_providers())")
    out = subprocess.run([sys.executable, "-c", code, str(site), str(IDENTITY_MODEL)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[[0.0, 1.0, 2.0]] ['CPUExecutionProvider']"


def snapshot():
    """What an add-on could leave behind in this Blender session."""
    handlers = {name: len(getattr(bpy.app.handlers, name)) for name in dir(bpy.app.handlers)
                if not name.startswith("_") and isinstance(getattr(bpy.app.handlers, name), list)}
    return {
        "types": set(dir(bpy.types)),
        "addons": set(bpy.context.preferences.addons.keys()),
        "handlers": handlers,
        "scene_props": set(bpy.types.Scene.bl_rna.properties.keys()),
        "wm_props": set(bpy.types.WindowManager.bl_rna.properties.keys()),
        "keymaps": sum(len(km.keymap_items) for km in bpy.context.window_manager.keyconfigs.addon.keymaps)
        if bpy.context.window_manager.keyconfigs.addon else 0,
    }


def test_disable_leaves_nothing_behind_and_reenable_works(source_repo):
    name = "bl_ext.fa_source.face_anything"
    before = snapshot()
    for _ in range(2):  # enable, disable, and the same again
        assert bpy.ops.preferences.addon_enable(module=name) == {"FINISHED"}
        mod = sys.modules[name]
        classes = sys.modules[name + ".blender.registration"].CLASSES
        assert all(cls.is_registered for cls in classes)
        assert name in bpy.context.preferences.addons
        assert snapshot() != before
        assert bpy.ops.preferences.addon_disable(module=name) == {"FINISHED"}
        assert not any(cls.is_registered for cls in classes)
        assert snapshot() == before
    assert Path(mod.__file__).resolve().parent == ROOT / "face_anything_addon"


def test_preferences_hold_settings(addon_from_source):
    prefs = bpy.context.preferences.addons[addon_from_source.__name__].preferences
    assert (prefs.execution_provider, prefs.cpu_threads, prefs.model_path) == ("AUTO", 0, "")
    prefs.execution_provider = "CPU"
    prefs.cpu_threads = 2
    assert (prefs.execution_provider, prefs.cpu_threads) == ("CPU", 2)
    cache = sys.modules[addon_from_source.__name__ + ".blender.preferences"].default_cache_dir()
    assert Path(cache).is_relative_to(bpy.utils.resource_path("USER"))
