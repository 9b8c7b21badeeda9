# SPDX-License-Identifier: GPL-3.0-or-later
"""The "Face Anything" sidebar tab in the Movie Clip Editor and the 3D Viewport."""
from __future__ import annotations

import bpy

from ..core.runtime_info import runtime_info


class _FaceAnythingPanel:
    bl_region_type = "UI"
    bl_category = "Face Anything"
    bl_label = "Face Anything"

    def draw(self, context):
        layout = self.layout
        clip = getattr(context.space_data, "clip", None)
        if clip is not None:
            layout.label(text=f"Footage: {clip.name}", icon="SEQUENCE")
        info = runtime_info()
        col = layout.column(align=True)
        col.label(text=f"ONNX Runtime {info.version}" if info.ok else "ONNX Runtime missing",
                  icon="CHECKMARK" if info.ok else "ERROR")
        if not info.ok:
            col.label(text=info.error)


class FACEANYTHING_PT_clip(_FaceAnythingPanel, bpy.types.Panel):
    bl_space_type = "CLIP_EDITOR"
    bl_idname = "FACEANYTHING_PT_clip"


class FACEANYTHING_PT_view3d(_FaceAnythingPanel, bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_idname = "FACEANYTHING_PT_view3d"


CLASSES = (FACEANYTHING_PT_clip, FACEANYTHING_PT_view3d)
