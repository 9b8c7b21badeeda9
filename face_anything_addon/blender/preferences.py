# SPDX-License-Identifier: GPL-3.0-or-later
"""Add-on preferences: model file, execution provider, CPU threads, cache folder."""
from __future__ import annotations

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from ..core.runtime_info import runtime_info
from ..core.session import expected_provider

ADDON_ID = __package__.rpartition(".")[0]  # "bl_ext.<repo>.face_anything"

PROVIDER_ITEMS = (
    ("AUTO", "Auto", "CUDA when it runs on this machine (CoreML on macOS, DirectML on Windows "
                     "builds that have it), else the CPU"),
    ("CUDA", "CUDA only", "Fail with a clear message when CUDA cannot run"),
    ("CPU", "CPU only", "Never use a GPU"),
)


def preferences():
    """This add-on's preferences (valid only while it is enabled)."""
    return bpy.context.preferences.addons[ADDON_ID].preferences


def default_cache_dir() -> str:
    return bpy.utils.extension_path_user(ADDON_ID, path="cache", create=False)


class FACEANYTHING_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    model_path: StringProperty(
        name="Model",
        description="A Face Anything ONNX model file; empty uses the bundled default model",
        subtype="FILE_PATH",
    )
    execution_provider: EnumProperty(
        name="Execution Provider", items=PROVIDER_ITEMS, default="AUTO",
        description="Where the network runs",
    )
    cpu_threads: IntProperty(
        name="CPU Threads", default=0, min=0, max=256,
        description="Threads ONNX Runtime uses on the CPU; 0 lets it choose",
    )
    cache_dir: StringProperty(
        name="Cache Folder", subtype="DIR_PATH",
        description="Where captures are cached; empty uses the extension's user folder",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "model_path")
        row = layout.row()
        row.prop(self, "execution_provider")
        row.prop(self, "cpu_threads")
        layout.prop(self, "cache_dir")
        if not self.cache_dir:
            layout.label(text=f"Cache: {default_cache_dir()}")
        info = runtime_info()
        layout.label(text=info.summary(), icon="INFO" if info.ok else "ERROR")
        if info.ok:
            runs, problem = expected_provider(self.execution_provider)
            layout.label(text=f"The network would run on: {runs}",
                         icon="CHECKMARK" if runs != "nothing" else "ERROR")
            if problem:
                layout.label(text=problem, icon="INFO")


CLASSES = (FACEANYTHING_AP_preferences,)
