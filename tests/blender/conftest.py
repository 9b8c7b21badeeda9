# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for tests that run inside Blender (the bpy module), on Blender 5.0 and 4.2 LTS.

Two ways to get the add-on enabled, each undone after its test:
- `addon_from_zip`: the built Linux zip installed with `extensions.package_install_files`, offline,
  exactly as a user installs it (bundled wheels included);
- `addon_from_source`: the source folder enabled through a local extension repository (fast, no build).
Both register the same classes, so never use them in one test.
"""
import sys
from pathlib import Path

import bpy
import pytest

ROOT = Path(__file__).resolve().parents[2]
ADDON_ID = "face_anything"
SOURCE_REPO = "fa_source"


@pytest.fixture
def empty_file():
    """A fresh, empty .blend in memory for the test."""
    bpy.ops.wm.read_homefile(use_empty=True)
    yield bpy.context


@pytest.fixture(scope="session")
def source_repo(isolated_dir):
    """A local extension repository whose `face_anything` entry links to the source folder."""
    repo_dir = isolated_dir / "source-repo"
    ext_dir = repo_dir / ADDON_ID
    ext_dir.mkdir(parents=True)
    for item in (ROOT / "face_anything_addon").iterdir():
        if item.name != "__pycache__":
            (ext_dir / item.name).symlink_to(item)
    (ext_dir / "blender_manifest.toml").symlink_to(ROOT / "blender_manifest.toml")
    bpy.context.preferences.extensions.repos.new(
        name=SOURCE_REPO, module=SOURCE_REPO, custom_directory=str(repo_dir))
    return repo_dir


def _enable(module_name: str):
    assert bpy.ops.preferences.addon_enable(module=module_name) == {"FINISHED"}
    return sys.modules[module_name]


def _disable(module_name: str):
    if module_name in bpy.context.preferences.addons:
        bpy.ops.preferences.addon_disable(module=module_name)


@pytest.fixture
def addon_from_source(source_repo):
    """The add-on enabled from the source tree; yields its module."""
    name = f"bl_ext.{SOURCE_REPO}.{ADDON_ID}"
    yield _enable(name)
    _disable(name)


@pytest.fixture
def addon_from_zip(built_zips):
    """The built Linux zip installed and enabled offline, as a user does; yields its module."""
    assert bpy.app.online_access is False, "tests must install with online access off"
    repos = bpy.context.preferences.extensions.repos
    result = bpy.ops.extensions.package_install_files(
        filepath=str(built_zips["linux-x64"]), repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}
    name = f"bl_ext.user_default.{ADDON_ID}"
    assert name in bpy.context.preferences.addons
    yield sys.modules[name]
    _disable(name)
    repo_index = next(i for i, r in enumerate(repos) if r.module == "user_default")
    bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id=ADDON_ID)
