# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-scene settings of a reconstruction (saved with the .blend), and their translation into the
core's CaptureSettings."""
from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty,
                       IntProperty, StringProperty)

from ..core.capture_run import CaptureSettings
from ..core.lens_distortion import MODELS, LensDistortion
from ..core.pipeline import PipelineSettings
from ..core.solve import SolveSettings


class FACEANYTHING_PG_settings(bpy.types.PropertyGroup):
    footage_path: StringProperty(
        name="Footage", subtype="FILE_PATH",
        description="An image sequence (a folder, or one of its numbered images) or a movie file")
    use_frame_range: BoolProperty(name="Limit Frames", default=False,
                                  description="Process only the frames from Start to End")
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=250)
    resolution: IntProperty(
        name="Resolution", default=0, min=0, max=2016, step=14,
        description="Longest side of the network's input in pixels (a multiple of 14); 0 uses "
                    "the model's preferred size. Higher is sharper and slower")
    window: IntProperty(name="Frames per Window", default=1, min=1, max=64,
                        description="Frames the network sees together (up to the model's "
                                    "maximum): more is more consistent, less detailed")
    face_region: EnumProperty(
        name="Face Region", default="AUTO",
        items=(("AUTO", "Automatic", "Find the face in every frame"),
               ("FULL", "Whole Frame", "Use the whole frame (a face filling the frame)"),
               ("BOX", "Box", "A fixed box in footage pixels"),
               ("TRACK", "Track", "Follow a track of the Movie Clip: its pattern area, as "
                                  "tracked, is the face region on every frame (place a marker on "
                                  "the face, drag its pattern over the face, track it)")))
    face_box: FloatVectorProperty(name="Box", size=4, default=(0, 0, 512, 512),
                                  description="x0, y0, x1, y1 in footage pixels (top left 0, 0)")
    face_track: StringProperty(
        name="Track", description="The Movie Clip track whose pattern area is the face region on "
                                  "each frame (frames it was not tracked on take its box "
                                  "interpolated); it does not also become a marker")
    lens_source: EnumProperty(
        name="Lens", default="ESTIMATE",
        items=(("ESTIMATE", "Estimate", "The network estimates the focal length (a face alone "
                                        "tells it poorly)"),
               ("KNOWN", "Known", "The focal length and sensor the footage was shot with"),
               ("CLIP", "Clip's Camera", "The Movie Clip's camera: Focal Length, Sensor Width, "
                                         "Optical Center and Lens Distortion (undone on the "
                                         "footage first) in the Movie Clip Editor's "
                                         "Track > Camera panel")))
    lens: FloatProperty(name="Focal Length", default=50.0, min=1.0, max=5000.0, unit="CAMERA",
                        description="Focal length of the lens the footage was shot with (mm)")
    sensor_width: FloatProperty(
        name="Sensor Width", default=36.0, min=1.0, max=200.0, unit="CAMERA",
        description="Sensor size along the frame's longer side (mm): 36 for full frame, or "
                    "for a focal length given as 35 mm equivalent")
    use_principal: BoolProperty(
        name="Optical Center", default=False,
        description="The lens's optical center is off the frame's centre (Known lens)")
    principal: FloatVectorProperty(
        name="Optical Center", size=2, default=(0.0, 0.0), precision=1,
        description="The Known lens's optical center: x, y in footage pixels from the top left")
    lens_distortion: EnumProperty(
        name="Distortion", default="NONE",
        items=(("NONE", "None", "The footage is taken as shot through an undistorted lens"),
               ("POLYNOMIAL", "Polynomial", "Radial distortion k1, k2, k3, as Blender's tracking "
                                            "camera models it"),
               ("DIVISION", "Divisions", "Division model k1, k2 (strong barrel distortion)"),
               ("NUKE", "Nuke", "Nuke's radial model k1, k2"),
               ("BROWN", "Brown-Conrady", "Radial k1-k4 and tangential p1, p2")),
        description="The Known lens's distortion, undone on the footage before the capture (as "
                    "for Clip's Camera); the coefficients are the Movie Clip Editor's, in units of "
                    "the focal length")
    distortion_coefficients: FloatVectorProperty(
        name="Coefficients", size=6, default=(0.0,) * 6, precision=5, step=0.1,
        description="The distortion model's coefficients in the order of the Movie Clip "
                    "Editor's Lens panel (only as many as the model takes are used)")
    mesh: EnumProperty(
        name="Mesh", default="AUTO",
        items=(("AUTO", "Automatic", "The model's bundled template when it has one, else a "
                                     "grid from a reference frame"),
               ("TEMPLATE", "Template", "The bundled template topology"),
               ("REFERENCE", "Reference Frame", "A grid over the face in one frame")))
    reference_frame: IntProperty(name="Reference Frame", default=0, min=0,
                                 description="Footage frame for a reference-frame mesh; "
                                             "0 uses the first frame")
    grid_vertices: IntProperty(name="Density", default=5000, min=200, max=50000,
                               description="Vertices of a reference-frame mesh")
    marker_count: IntProperty(name="Extra Markers", default=0, min=0, max=500,
                              description="Markers spread evenly over the face, besides the "
                                          "template's named landmarks")
    expressions: BoolProperty(
        name="Expression Fit", default=True,
        description="Fit the template's expression targets (the 52 ARKit blendshapes) and a head "
                    "pose to each tracked frame: a cleaner mesh, and the weights keyed as "
                    "custom properties of the face for rigs. Off: the mesh as tracked")
    expression_prior: FloatProperty(
        name="Expression Prior", default=SolveSettings().expression_prior_mm, min=0.1,
        max=50.0, description="The misfit (RMS over the seen vertices, mm) one unit of an "
                              "expression's weight is worth: larger keeps the face nearer "
                              "neutral, smaller follows the tracking (and its noise) closer")
    actor_face: BoolProperty(
        name="Actor's Face", default=True,
        description="Fit the actor's own neutral face once for the shot (the template's identity "
                    "shapes) and the expressions on it: the mesh's Basis is the actor's face, "
                    "and a broad nose or a long chin does not read as an expression in every "
                    "frame. Off: the template's neutral face")
    actor_face_file: StringProperty(
        name="From Capture", subtype="FILE_PATH",
        description="A capture file (.capture.npz) of the same actor made with Actor's Face on: "
                    "its face is used as it is, the same face in every shot of the actor. "
                    "Empty: the face is fitted to this shot")
    depth_weight: FloatProperty(
        name="Depth Weight", default=SolveSettings().depth_weight, min=0.01, max=1.0,
        description="How much a tracked point's depth counts in the expression fit against its "
                    "place across the image: below 1 trusts the image more than the network's "
                    "depth, which is smoother than a real face")
    smoothing: FloatProperty(name="Smoothing", default=0.0, min=0.0, max=10.0,
                             description="Temporal filtering in frames (zero-lag, never across "
                                         "a gap in the footage); 0 is off")
    use_clip_tracks: BoolProperty(
        name="Use Clip Tracks as Markers", default=True,
        description="Footage from the Movie Clip Editor: every track of the clip becomes a marker "
                    "named after it, tracked over the whole shot like the landmarks (placed by "
                    "hand with Ctrl+click on a frame where the face is clear)")
    vertex_marker_name: StringProperty(
        name="Marker Name", default="vertex",
        description="Name of the marker added for one selected vertex; with several, each is "
                    "named <name>_<vertex index>")
    storage: EnumProperty(
        name="Animation", default="SHAPE_KEYS",
        items=(("SHAPE_KEYS", "Shape Keys", "One shape key per frame, saved in the .blend"),
               ("POINT_CACHE", "Point Cache", "A .pc2 file read by a Mesh Cache modifier: "
                                              "lighter .blend files for long shots")))


def capture_settings(s: FACEANYTHING_PG_settings, prefs) -> CaptureSettings:
    """The settings as the core takes them. A Track face region is left "auto" here: its boxes
    come from the clip (`reconstruct.start_job`, `clip_region.track_region`)."""
    region = {"AUTO": "auto", "FULL": "full", "TRACK": "auto"}.get(s.face_region,
                                                                   tuple(s.face_box))
    return CaptureSettings(
        pipeline=PipelineSettings(resolution=s.resolution - s.resolution % 14,
                                  window=s.window, overlap=1 if s.window > 1 else 0,
                                  face_region=region,
                                  lens_mm=s.lens if s.lens_source == "KNOWN" else 0.0,
                                  sensor_mm=s.sensor_width,
                                  principal_px=known_principal(s)),
        solve=SolveSettings(temporal_sigma=s.smoothing, marker_count=s.marker_count,
                            expressions=s.expressions, expression_prior_mm=s.expression_prior,
                            identity_rounds=SolveSettings().identity_rounds if s.actor_face
                            else 0, depth_weight=s.depth_weight),
        provider=prefs.execution_provider if prefs else "AUTO",
        cpu_threads=prefs.cpu_threads if prefs else 0, mesh=s.mesh,
        reference_frame=s.reference_frame or None, grid_vertices=s.grid_vertices)


def known_principal(s: FACEANYTHING_PG_settings) -> tuple[float, float] | None:
    """The Known lens's optical center (footage pixels, y down), None: the frame's centre."""
    if s.lens_source == "KNOWN" and s.use_principal:
        return float(f"{s.principal[0]:.7g}"), float(f"{s.principal[1]:.7g}")
    return None


def known_distortion(s: FACEANYTHING_PG_settings, size: tuple[int, int]):
    """The Known lens's distortion (`core.lens_distortion.LensDistortion`) for footage of
    `size`, None without one (another lens source, the model None, or all coefficients 0)."""
    if s.lens_source != "KNOWN" or s.lens_distortion == "NONE":
        return None
    names = MODELS[s.lens_distortion]
    # Blender keeps them as float32: to 7 digits they are what the user typed (-0.2, not
    # -0.20000000298), in the capture's record as on the command line
    coefficients = tuple(float(f"{c:.7g}") for c in s.distortion_coefficients[:len(names)])
    if not any(coefficients):
        return None
    return LensDistortion.known(s.lens_distortion, coefficients, s.lens, s.sensor_width, size,
                                known_principal(s))


def coefficient_label(name: str) -> str:
    """A model's coefficient name as Blender's Lens panel shows it: brown_k1 -> K1."""
    return name.rpartition("_")[2].upper()


def frame_range(s: FACEANYTHING_PG_settings):
    return (s.frame_start, s.frame_end) if s.use_frame_range else None


CLASSES = (FACEANYTHING_PG_settings,)


def register_properties():
    bpy.types.Scene.face_anything = bpy.props.PointerProperty(type=FACEANYTHING_PG_settings)


def unregister_properties():
    del bpy.types.Scene.face_anything
