# SPDX-License-Identifier: GPL-3.0-or-later
"""Face Anything: markerless facial capture from footage, inside Blender.

This file only registers and unregisters. `core` (numpy + onnxruntime, never bpy) stays importable
without Blender, so nothing here imports `blender` at module level.
"""


def register():
    from .blender import registration

    registration.register()


def unregister():
    from .blender import registration

    registration.unregister()
