# SPDX-License-Identifier: GPL-3.0-or-later
"""The "Face Anything" sidebar tab in the Movie Clip Editor (footage: the open clip) and the 3D
Viewport (footage: a path), with the settings, the Reconstruct button, progress and results."""
from __future__ import annotations

import bpy

from ..core.lens_distortion import MODELS
from ..core.runtime_info import runtime_info
from . import clip_region
from .clip_picks import track_count
from .properties import coefficient_label
from .reconstruct import CURRENT, distortion_coefficients, square_pixels


class _FaceAnythingPanel:
    bl_region_type = "UI"
    bl_category = "Face Anything"
    bl_label = "Face Anything"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.face_anything
        clip = getattr(context.space_data, "clip", None)
        job = CURRENT["job"]

        col = layout.column()
        if clip is not None:
            col.label(text=f"Footage: {clip.name}", icon="SEQUENCE")
        elif self.bl_space_type == "CLIP_EDITOR":
            col.label(text="Open a clip, or use the 3D Viewport tab", icon="INFO")
        else:
            col.prop(settings, "footage_path")
        row = col.row(align=True)
        row.prop(settings, "use_frame_range")
        sub = row.row(align=True)
        sub.active = settings.use_frame_range
        sub.prop(settings, "frame_start")
        sub.prop(settings, "frame_end")

        if job is None:
            layout.operator("faceanything.reconstruct", icon="PLAY")
        else:
            _progress(layout, job.status)
            layout.operator("faceanything.cancel", icon="CANCEL")
        last = CURRENT["last"]
        if job is None and last.phase in ("done", "failed", "cancelled"):
            icon = {"done": "CHECKMARK", "failed": "ERROR", "cancelled": "INFO"}[last.phase]
            layout.label(text=last.message, icon=icon)
            for text in last.warnings:
                layout.label(text=text, icon="ERROR")

        box = layout.box()
        box.label(text="Settings")
        col = box.column()
        col.prop(settings, "resolution")
        col.prop(settings, "window")
        col.prop(settings, "face_region")
        if settings.face_region == "BOX":
            col.prop(settings, "face_box")
        elif settings.face_region == "TRACK":
            if clip is None:
                col.label(text="Needs footage from the Movie Clip Editor", icon="ERROR")
            else:
                col.prop_search(settings, "face_track", clip.tracking, "tracks")
                user = getattr(context.space_data, "clip_user", None)
                frame = user.frame_current if user is not None else clip.frame_start
                col.label(text=clip_region.box_text(clip, settings.face_track, frame),
                          icon="TRACKER")
        col.prop(settings, "lens_source")
        if settings.lens_source == "KNOWN":
            row = col.row(align=True)
            row.prop(settings, "lens")
            row.prop(settings, "sensor_width")
            row = col.row(align=True)
            row.prop(settings, "use_principal", text="Optical Center")
            sub = row.row(align=True)
            sub.active = settings.use_principal
            sub.prop(settings, "principal", text="")
            col.prop(settings, "lens_distortion")
            if settings.lens_distortion != "NONE":
                sub = col.column(align=True)
                for i, name in enumerate(MODELS[settings.lens_distortion]):
                    sub.prop(settings, "distortion_coefficients", index=i,
                             text=coefficient_label(name))
        elif settings.lens_source == "CLIP":
            if clip is None:
                col.label(text="Needs footage from the Movie Clip Editor", icon="ERROR")
            else:
                camera = clip.tracking.camera
                col.label(text=f"{camera.focal_length:g} mm on a {camera.sensor_width:g} mm sensor",
                          icon="CAMERA_DATA")
                if any(distortion_coefficients(camera)):
                    model = camera.distortion_model.title()
                    if square_pixels(camera):
                        col.label(text=f"{model} distortion: undone first", icon="CHECKMARK")
                    else:
                        col.label(text=f"{model} distortion: not undone (non-square pixels)",
                                  icon="ERROR")
        col.prop(settings, "mesh")
        if settings.mesh == "REFERENCE":
            col.prop(settings, "reference_frame")
            col.prop(settings, "grid_vertices")
        else:
            row = col.row(align=True)
            row.prop(settings, "expressions")
            sub = row.row(align=True)
            sub.active = settings.expressions
            sub.prop(settings, "expression_prior", text="Prior")
            row = col.row(align=True)
            row.active = settings.expressions
            row.prop(settings, "actor_face")
            row.prop(settings, "depth_weight")
            if settings.actor_face:
                sub = col.row()
                sub.active = settings.expressions
                sub.prop(settings, "actor_face_file")
        col.prop(settings, "marker_count")
        if clip is not None:
            row = col.row()
            row.prop(settings, "use_clip_tracks")
            count = track_count(clip)
            row.label(text=f"{count} track{'s' * (count != 1)}")
        col.prop(settings, "smoothing")
        col.prop(settings, "storage")

        box = layout.box()
        box.label(text="Result")
        col = box.column(align=True)
        col.operator("faceanything.rebuild_scene", icon="FILE_REFRESH")
        col.operator("faceanything.export_alembic", icon="EXPORT")
        col.operator("faceanything.export_markers", icon="EXPORT")
        col.operator("faceanything.export_face_boxes", icon="EXPORT")
        if self.bl_space_type == "VIEW_3D":
            col = box.column(align=True)
            col.prop(settings, "vertex_marker_name")
            op = col.operator("faceanything.add_vertex_markers", icon="EMPTY_AXIS")
            op.name = settings.vertex_marker_name

        info = runtime_info()
        layout.label(text=f"ONNX Runtime {info.version}" if info.ok else info.error,
                     icon="CHECKMARK" if info.ok else "ERROR")


def _progress(layout, status) -> None:
    if hasattr(layout, "progress"):  # Blender 4.0+
        layout.progress(factor=status.factor, type="BAR", text=status.text())
    else:
        layout.label(text=status.text())
    if status.providers:
        layout.label(text=f"Running on {status.providers[0].replace('ExecutionProvider', '')}")
    if status.note:
        layout.label(text=status.note, icon="INFO")


class FACEANYTHING_PT_clip(_FaceAnythingPanel, bpy.types.Panel):
    bl_space_type = "CLIP_EDITOR"
    bl_idname = "FACEANYTHING_PT_clip"


class FACEANYTHING_PT_view3d(_FaceAnythingPanel, bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_idname = "FACEANYTHING_PT_view3d"


CLASSES = (FACEANYTHING_PT_clip, FACEANYTHING_PT_view3d)
