# SPDX-License-Identifier: GPL-3.0-or-later
"""Test isolation shared by the whole suite.

Blender (bpy) and ONNX Runtime write user configuration and caches under the home folder. Before
anything imports them, point every such location into one temporary folder for this test session,
so a test run never touches the developer's own Blender set-up.
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ISOLATED = Path(tempfile.mkdtemp(prefix="face-anything-tests-"))
for var, sub in (("BLENDER_USER_RESOURCES", "blender"), ("XDG_CACHE_HOME", "cache"),
                 ("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data")):
    os.environ[var] = str(ISOLATED / sub)
    (ISOLATED / sub).mkdir()
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(ISOLATED, ignore_errors=True)


@pytest.fixture(scope="session")
def isolated_dir() -> Path:
    """The folder that stands in for the user's home-folder configuration and caches."""
    return ISOLATED


@pytest.fixture(scope="session")
def built_zips() -> dict:
    """The extension zips for Blender 4.2-5.0 (Python 3.11), built by `build.py extension`.

    Linux (what the tests install) and macOS arm64 (small) are built; Windows only differs in its
    onnxruntime wheel. Returns {platform: zip path}.
    """
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "extension", "--python", "3.11",
         "--platform", "linux-x64", "--platform", "macos-arm64"],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    zips = {}
    for plat, stem in (("linux-x64", "linux_x64"), ("macos-arm64", "macos_arm64")):
        (path,) = (ROOT / "dist").glob(f"face_anything-*-{stem}-blender-4.2-to-5.0.zip")
        zips[plat] = path
    return zips
