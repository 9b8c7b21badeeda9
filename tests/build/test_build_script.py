# SPDX-License-Identifier: GPL-3.0-or-later
"""build.py: manifest and wheel hashes agree, wheels download verified, zips hold the right wheels."""
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("build", ROOT / "build.py")
build = importlib.util.module_from_spec(spec)
sys.modules["build"] = build
spec.loader.exec_module(build)


def test_manifest_and_lock_list_the_same_wheels():
    hashes = build.wheel_hashes()
    assert list(hashes) == build.manifest_wheels()
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes.values())


@pytest.mark.parametrize("generation", build.GENERATIONS, ids=lambda g: g.python)
@pytest.mark.parametrize("platform", build.PLATFORMS)
def test_every_platform_and_python_has_an_onnxruntime_wheel(generation, platform):
    names = {w.name for w in map(build.Wheel.parse, build.manifest_wheels())
             if w.fits(generation, platform)}
    expected = "onnxruntime" if platform.startswith("macos") else "onnxruntime_gpu"
    assert expected in names
    # and each dependency onnxruntime declares (besides numpy, which Blender ships)
    assert {"flatbuffers", "packaging", "protobuf"} <= names


def test_wheel_names_map_to_pip_download_arguments():
    w = build.Wheel.parse("onnxruntime_gpu-1.31.1-cp313-cp313-win_amd64.whl")
    assert w.platform == "windows-x64"
    assert w.pip_download_args() == [
        "--no-deps", "--only-binary", ":all:", "--platform", "win_amd64", "--implementation", "cp",
        "--abi", "cp313", "--python-version", "3.13", "onnxruntime-gpu==1.31.1"]
    pure = build.Wheel.parse("protobuf-7.36.2-py3-none-any.whl")
    assert pure.platform is None and pure.fits(build.GENERATIONS[1], "macos-arm64")
    assert pure.pip_download_args()[-3:] == ["--platform", "any", "protobuf==7.36.2"]
    with pytest.raises(build.BuildError, match="not a plain wheel file name"):
        build.Wheel.parse("onnxruntime.whl")


def test_staged_manifest_narrows_blender_range_and_wheels():
    old, new = build.GENERATIONS
    text = build.staged_manifest(old, ["a-1-py3-none-any.whl"])
    assert 'blender_version_min = "4.2.0"\nblender_version_max = "5.1.0"\n' in text
    assert re.search(r'wheels = \[\n  "\./wheels/a-1-py3-none-any\.whl",\n\]', text)
    text = build.staged_manifest(new, [])
    assert 'blender_version_min = "5.1.0"\n' in text and "blender_version_max" not in text


def test_fetch_wheels_replaces_a_corrupt_file_and_refuses_a_wrong_hash(monkeypatch):
    name = "flatbuffers-25.12.19-py2.py3-none-any.whl"
    path = build.WHEELS_DIR / name
    build.fetch_wheels(["linux-x64"], ["3.11"])
    path.write_bytes(b"not a wheel")  # damaged download: fetched again, then verified
    build.fetch_wheels(["linux-x64"], ["3.11"])
    assert build.sha256(path) == build.wheel_hashes()[name]

    real = build.wheel_hashes()
    monkeypatch.setattr(build, "wheel_hashes", lambda: {**real, name: "0" * 64})
    with pytest.raises(build.BuildError, match="sha256 does not match"):
        build.fetch_wheels(["linux-x64"], ["3.11"])
    assert not path.exists()  # a file that fails its hash is not left for a build to use
    monkeypatch.undo()
    build.fetch_wheels(["linux-x64"], ["3.11"])


def zip_manifest(zf: zipfile.ZipFile) -> str:
    return zf.read("blender_manifest.toml").decode()


@pytest.mark.parametrize("platform", ["linux-x64", "macos-arm64"])
def test_built_zip_holds_exactly_its_platforms_wheels(built_zips, platform):
    hashes = build.wheel_hashes()
    generation = build.GENERATIONS[0]
    expected = sorted(w.filename for w in map(build.Wheel.parse, hashes)
                      if w.fits(generation, platform))
    with zipfile.ZipFile(built_zips[platform]) as zf:
        in_zip = sorted(n[len("wheels/"):] for n in zf.namelist() if n.startswith("wheels/"))
        assert in_zip == expected
        for name in in_zip:
            assert hashlib.sha256(zf.read(f"wheels/{name}")).hexdigest() == hashes[name]
        manifest = zip_manifest(zf)
        generated = manifest.split("[build.generated]")[1]
        assert f'platforms = ["{platform}"]' in generated
        assert sorted(re.findall(r"\./wheels/([^\"]+)", generated)) == expected
        assert 'blender_version_max = "5.1.0"' in manifest
        for needed in ("__init__.py", "core/__init__.py", "blender/registration.py", "LICENSE",
                       "THIRD_PARTY.md"):
            assert needed in zf.namelist()
        assert not [n for n in zf.namelist() if "__pycache__" in n or n.endswith(".pyc")]


def test_blenders_tool_validates_the_built_zip(built_zips):
    tool = build.blender_ext_script(build.venv_python(build.ENVIRONMENTS[0].path))
    out = subprocess.run([sys.executable, str(tool), "validate", str(built_zips["linux-x64"])],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success" in out.stdout


def test_junit_counts(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite tests="5" failures="1" errors="1" skipped="1"/>'
                   '<testsuite tests="2" failures="0" errors="0" skipped="0"/></testsuites>')
    assert build.junit_counts(xml) == {"tests": 7, "failures": 1, "errors": 1, "skipped": 1}
    assert build.junit_counts(tmp_path / "missing.xml")["tests"] == 0


def test_test_command_fails_when_nothing_is_collected():
    out = subprocess.run([sys.executable, str(ROOT / "build.py"), "test", "-k", "no_such_test_xyz"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1
    assert "collected no tests" in out.stdout
    assert "total: 0 passed, 0 failed" in out.stdout
