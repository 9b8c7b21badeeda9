# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender run by the tests writes nothing to the user's own configuration."""
from pathlib import Path

import bpy


def test_blender_user_folders_are_the_test_sessions(isolated_dir):
    for kind in ("CONFIG", "SCRIPTS", "EXTENSIONS"):
        assert Path(bpy.utils.user_resource(kind)).is_relative_to(isolated_dir), kind
    assert Path(bpy.utils.resource_path("USER")).is_relative_to(isolated_dir)
