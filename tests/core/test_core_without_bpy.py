# SPDX-License-Identifier: GPL-3.0-or-later
"""`core` is the part of the add-on that runs without Blender."""
import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import onnxruntime

from face_anything_addon.core import runtime_info as ri

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "face_anything_addon" / "core"


def core_modules():
    return ["face_anything_addon.core"] + [
        f"face_anything_addon.core.{m.name}" for m in pkgutil.walk_packages([str(CORE)])]


def test_every_core_module_imports_with_bpy_unavailable():
    modules = core_modules()
    assert "face_anything_addon.core.runtime_info" in modules
    # sys.modules["bpy"] = None makes any `import bpy` raise ImportError.
    code = ("import sys, importlib; sys.modules['bpy'] = None\n"
            "for m in sys.argv[1:]: importlib.import_module(m)\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('bpy', 'mathutils', 'bl_ext')))")
    out = subprocess.run([sys.executable, "-c", code, *modules], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['bpy']"  # only the blocking entry itself


def test_no_core_source_mentions_blender_modules():
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + (["..blender"] if node.level > 1 else [])
            for name in names:
                assert name.split(".")[0] not in ("bpy", "mathutils", "bpy_extras", "blender"), (
                    f"{path.name} imports {name}")


def test_runtime_info_reports_onnxruntime():
    info = ri.runtime_info()
    assert info.ok
    assert info.version == onnxruntime.__version__
    assert "CPUExecutionProvider" in info.built_in_providers
    assert info.summary().startswith(f"ONNX Runtime {onnxruntime.__version__}; ")
    assert info.summary().endswith("CPU")


def test_runtime_info_says_what_to_do_without_onnxruntime(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    info = ri.runtime_info()
    assert not info.ok and info.version == "" and info.built_in_providers == ()
    assert "not importable" in info.summary() and "Reinstall" in info.summary()
