# SPDX-License-Identifier: GPL-3.0-or-later
"""Registers every bpy class of the add-on, in order, and removes them in reverse."""
from __future__ import annotations

import bpy

from . import panels, preferences

CLASSES = preferences.CLASSES + panels.CLASSES


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
