# SPDX-License-Identifier: GPL-3.0-or-later
"""Registers every bpy class of the add-on, in order, and removes them in reverse."""
from __future__ import annotations

import bpy

from . import panels, preferences, properties, reconstruct, scene_operators, vertex_markers

CLASSES = (preferences.CLASSES + properties.CLASSES + reconstruct.CLASSES
           + scene_operators.CLASSES + vertex_markers.CLASSES + panels.CLASSES)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    properties.register_properties()
    bpy.types.VIEW3D_MT_edit_mesh_vertices.append(vertex_markers.draw_menu)


def unregister():
    job = reconstruct.CURRENT["job"]
    if job is not None:  # disabled mid-run: stop the worker, build nothing
        job.cancel()
        reconstruct.CURRENT["job"] = None
    bpy.types.VIEW3D_MT_edit_mesh_vertices.remove(vertex_markers.draw_menu)
    properties.unregister_properties()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
