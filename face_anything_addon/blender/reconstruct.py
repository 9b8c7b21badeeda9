# SPDX-License-Identifier: GPL-3.0-or-later
"""The Reconstruct operator: footage in, tracked face out, with progress, Esc to cancel, and the
scene built (one undo step) only when everything succeeded."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy

from ..core.capture_run import DEFAULT_MODEL
from ..core.contract import ContractError, describe_model
from ..core.errors import FootageError
from ..core.lens_distortion import MODELS, LensDistortion
from ..core.solve import ActorFace, SolveError
from . import clip_picks, clip_region, preferences, result, vertex_markers
from .footage import footage_from_clip, open_footage
from .job import JobStatus, ReconstructJob, capture_path
from .properties import capture_settings, frame_range, known_distortion

# The job of the running operator (one at a time), for the panels to draw.
CURRENT: dict[str, object] = {"job": None, "last": JobStatus(phase="idle", message="")}


def _model_path(prefs) -> Path:
    chosen = bpy.path.abspath(prefs.model_path) if prefs and prefs.model_path else ""
    return Path(chosen) if chosen else DEFAULT_MODEL


def _source(context, settings, clip=None):
    """(footage, what build_scene shows as background), or FootageError."""
    if clip is None:
        clip = getattr(context.space_data, "clip", None) if context.space_data else None
    if clip is not None:
        return footage_from_clip(clip, frame_range(settings)), clip
    if not settings.footage_path:
        raise FootageError("no footage: choose an image sequence or a movie in the Face Anything "
                           "panel (or open a clip in the Movie Clip Editor)")
    path = bpy.path.abspath(settings.footage_path)
    return open_footage(path, frame_range(settings)), path


def _fps(context, clip) -> float:
    if isinstance(clip, bpy.types.MovieClip) and clip.fps:
        return float(clip.fps)
    render = context.scene.render
    return render.fps / render.fps_base


def distortion_coefficients(camera) -> tuple[float, ...]:
    """A Movie Clip camera's coefficients of its distortion model (all 0: no distortion)."""
    return tuple(float(getattr(camera, k)) for k in MODELS.get(camera.distortion_model, ()))


def square_pixels(camera) -> bool:
    """Whether a Movie Clip camera's pixel aspect is 1 (the capture undoes distortion only then)."""
    return abs(camera.pixel_aspect - 1.0) <= 1e-6


@dataclass(frozen=True)
class ClipLens:
    """A Movie Clip's camera as the capture uses it, and what of it the capture cannot use."""

    focal_mm: float
    sensor_mm: float  # along the frame's longer side
    principal_px: tuple[float, float]  # footage pixels, y down
    warnings: list[str]
    distortion: LensDistortion | None = None  # undone on the footage before the capture


def clip_lens(background, size) -> ClipLens:
    """The lens of a Movie Clip's camera (Track > Camera): focal length, sensor width (which spans
    the frame's width; the capture's sensor size is along the longer side), principal point and
    lens distortion (undone on the footage: `core.lens_distortion`); warnings for non-square
    pixels, which the capture does not undo. A FootageError for footage that is no clip."""
    if not isinstance(background, bpy.types.MovieClip):
        raise FootageError("Lens: Clip's Camera needs footage from the Movie Clip Editor; choose "
                           "Known (and give the lens) or Estimate")
    camera = background.tracking.camera
    w, h = size
    px, py = camera.principal_point_pixels  # the clip's pixels, y up from the bottom
    clip_w, clip_h = background.size
    principal = (float(px) * w / clip_w, h - float(py) * h / clip_h) if clip_w and clip_h \
        else (w / 2.0, h / 2.0)
    warnings, distortion = [], None
    model = camera.distortion_model
    coefficients = distortion_coefficients(camera)
    square = square_pixels(camera)
    if not square:
        warnings.append(f"Clip's Camera: the clip's pixel aspect {camera.pixel_aspect:g} is not "
                        "used; the capture takes the footage's pixels as square")
    if any(coefficients):
        if square:
            to_footage = (w / clip_w, h / clip_h) if clip_w and clip_h else (1.0, 1.0)
            distortion = LensDistortion(
                model, coefficients, float(camera.focal_length_pixels) * to_footage[0],
                (float(px) * to_footage[0], float(py) * to_footage[1]), (w, h))
        else:
            values = ", ".join(f"{k} {v:g}" for k, v in zip(MODELS[model], coefficients) if v)
            warnings.append(f"Clip's Camera: the clip's lens distortion ({model.title()}: "
                            f"{values}) is not undone with non-square pixels; the face is solved "
                            "on the footage as it is, through an undistorted lens")
    return ClipLens(float(camera.focal_length), float(camera.sensor_width) * max(w, h) / w,
                    principal, warnings, distortion)


def start_job(context, clip=None) -> tuple[ReconstructJob, object]:
    """Check everything that can be checked up front; raise FootageError / ContractError.
    clip: a Movie Clip to use as footage (default: the Movie Clip Editor's clip, if any)."""
    prefs = preferences.preferences()
    settings = context.scene.face_anything
    footage, background = _source(context, settings, clip)
    model = _model_path(prefs)
    describe_model(model)  # a bad model file is reported now, not after the footage is read
    config = capture_settings(settings, prefs)
    if settings.mesh != "REFERENCE" and settings.expressions and settings.actor_face and \
            settings.actor_face_file.strip():
        try:
            config.solve.actor_face = ActorFace.from_capture(
                bpy.path.abspath(settings.actor_face_file.strip()))
        except SolveError as exc:
            raise FootageError(f"Actor's Face: {exc}") from None
    pick_frames, warnings = {}, []
    if settings.lens_source == "CLIP":
        lens = clip_lens(background, footage.size)
        config.pipeline.lens_mm, config.pipeline.sensor_mm = lens.focal_mm, lens.sensor_mm
        config.pipeline.principal_px = lens.principal_px
        config.lens_distortion = lens.distortion
        warnings += lens.warnings
    elif settings.lens_source == "KNOWN":
        config.lens_distortion = known_distortion(settings, footage.size)
        if config.lens_distortion is not None and isinstance(background, bpy.types.MovieClip):
            raise FootageError("Lens: a Known lens's distortion is for footage files; for a "
                               "Movie Clip, set it in the Movie Clip Editor (Track > Camera > "
                               "Lens) and choose Clip's Camera, or set Distortion to None")
    region_track = ""
    if settings.face_region == "TRACK":
        if not isinstance(background, bpy.types.MovieClip):
            raise FootageError("Face Region: Track follows a track of a Movie Clip; open the "
                               "footage in the Movie Clip Editor, or choose another face region")
        region_track = settings.face_track
        config.pipeline.face_region, region_warnings = clip_region.track_region(
            background, region_track, footage.frame_numbers, footage.size)
        warnings += region_warnings
    if isinstance(background, bpy.types.MovieClip) and settings.use_clip_tracks:
        picks, left_out = clip_picks.track_picks(background, footage.frame_numbers, footage.size,
                                                 exclude=region_track)
        warnings += [clip_picks.warning(name, why) for name, why in left_out.items()]
        pick_frames = clip_picks.read_frames(background, {p.frame for p in picks})
        config.pixel_picks = picks
    job = ReconstructJob(footage, config, model, fps=_fps(context, background),
                         background=background, pick_frames=pick_frames, warnings=warnings)
    return job, background


def finish_job(context, job: ReconstructJob):
    """Save the capture (atomically) and build the scene from it."""
    from .scene import build_scene  # bpy-heavy; imported when first needed

    prefs = preferences.preferences()
    cache = bpy.path.abspath(prefs.cache_dir) if prefs.cache_dir else \
        preferences.default_cache_dir()
    path = capture_path(bpy.data.filepath, cache, job.capture.footage_name)
    job.capture.save(path)
    storage = context.scene.face_anything.storage
    # markers added from vertices of the previous result carry over when the mesh is the same
    previous = result.results_for(job.capture.footage_name)
    carried = vertex_markers.carry_over(job.capture, previous[0] if previous else None)
    job.status.warnings += carried.warnings
    collection = build_scene(context, carried.capture, job.background, storage=storage,
                             capture_path=path)
    vertex_markers.store(collection, carried.kept)
    return collection


class FACEANYTHING_OT_reconstruct(bpy.types.Operator):
    """Reconstruct the face in the footage: camera, animated face mesh, markers"""

    bl_idname = "faceanything.reconstruct"
    bl_label = "Reconstruct Face"
    bl_options = {"REGISTER", "UNDO"}

    _timer = None

    @classmethod
    def poll(cls, context):
        if CURRENT["job"] is not None:
            cls.poll_message_set("A reconstruction is already running")
            return False
        return context.scene is not None

    def invoke(self, context, event):
        try:
            job, _ = start_job(context)
        except (FootageError, ContractError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        CURRENT["job"] = job
        job.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.02, window=context.window)
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):  # from scripts: run to the end, blocking
        try:
            job, _ = start_job(context)
            job.run()
        except Exception as exc:  # noqa: BLE001 - every failure is reported, nothing built
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if job.capture is None:
            self.report({"WARNING"}, "Cancelled: nothing was changed")
            return {"CANCELLED"}
        finish_job(context, job)
        CURRENT["last"] = job.status
        _report_warnings(self, job.status)
        return {"FINISHED"}

    def modal(self, context, event):
        job: ReconstructJob = CURRENT["job"]
        if event.type == "ESC" or job.cancel_event.is_set():
            job.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        done = job.tick()
        context.window_manager.progress_update(int(100 * job.status.factor))
        _redraw(context)
        if not done:
            return {"PASS_THROUGH"}
        return self._end(context, job)

    def _end(self, context, job: ReconstructJob):
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        CURRENT["job"], CURRENT["last"] = None, job.status
        _redraw(context)
        if job.status.phase == "cancelled":
            self.report({"WARNING"}, "Reconstruction cancelled: nothing was changed")
            return {"CANCELLED"}
        if job.status.phase == "failed":
            self.report({"ERROR"}, f"Reconstruction failed: {job.status.message}")
            return {"CANCELLED"}
        try:
            collection = finish_job(context, job)
        except Exception as exc:  # noqa: BLE001 - the build undoes itself; say why
            job.status.phase, job.status.message = "failed", str(exc)
            self.report({"ERROR"}, f"Could not build the scene: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"{collection.name}: {job.capture.frame_count} frames")
        _report_warnings(self, job.status)
        return {"FINISHED"}

    def cancel(self, context):  # Blender closing the operator (e.g. file load)
        job = CURRENT["job"]
        if job is not None:
            job.cancel()
        CURRENT["job"] = None


class FACEANYTHING_OT_cancel(bpy.types.Operator):
    """Stop the running reconstruction (the scene stays as it was)"""

    bl_idname = "faceanything.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return CURRENT["job"] is not None

    def execute(self, context):
        CURRENT["job"].cancel()
        return {"FINISHED"}


def _report_warnings(op, status) -> None:
    for text in status.warnings:
        op.report({"WARNING"}, text)


def _redraw(context):
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("CLIP_EDITOR", "VIEW_3D"):
                area.tag_redraw()


CLASSES = (FACEANYTHING_OT_reconstruct, FACEANYTHING_OT_cancel)
