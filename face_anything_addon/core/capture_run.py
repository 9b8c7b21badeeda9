# SPDX-License-Identifier: GPL-3.0-or-later
"""One call from footage to a Capture: check the model, open the session, stream the pipeline,
solve every frame. Used by the Blender operator (in a worker thread), the command line and the demo.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from .capture import Capture
from .contract import ModelDescription, describe_model
from .face_components import off_face_warning
from .frames import Frame
from .lens_distortion import LensDistortion, UndistortedFrames
from .marker_picks import PickResult, pixels_text, resolve_picks
from .pipeline import Pipeline, PipelineError, PipelineSettings, Progress, frame_boxes
from .session import open_session
from .solve import CaptureSolver, Markers, SolveSettings
from .template import Template, TemplateError
from .template_grid import grid_template

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = ASSETS / "face_anything_default.onnx"


@dataclass
class CaptureSettings:
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    solve: SolveSettings = field(default_factory=SolveSettings)
    provider: str = "AUTO"  # AUTO | CUDA | CPU
    cpu_threads: int = 0
    mesh: str = "AUTO"  # AUTO: the bundled template when the model's space has one, else REFERENCE
    reference_frame: int | None = None  # footage frame number for a REFERENCE mesh; None: first
    grid_vertices: int = 5000
    marker_picks: dict = field(default_factory=dict)  # name -> canonical xyz
    # points picked in the footage (marker_picks.PixelPick), resolved before the solve
    pixel_picks: list = field(default_factory=list)
    # the lens's distortion (a Movie Clip camera's): the footage and the picks are undistorted
    # before the network sees them, and the capture is in the undistorted frame
    lens_distortion: LensDistortion | None = None


def bundled_templates(folder: Path = ASSETS) -> dict[str, Path]:
    """canonical space id -> template file, for the templates shipped with the add-on."""
    found = {}
    for path in sorted(folder.glob("template_*.npz")):
        try:
            found[Template.load(path).canonical_space] = path
        except Exception:  # noqa: BLE001 - a broken asset must not hide the others
            continue
    return found


def run_capture(frames: Iterable[Frame], *, footage_name: str, footage_size: tuple[int, int],
                fps: float, frame_count: int = 0, model_path=None,
                settings: CaptureSettings | None = None,
                progress: Callable[[Progress], None] | None = None,
                cancel: threading.Event | None = None,
                on_session: Callable[[object], None] | None = None,
                pick_frames: Mapping[int, Frame] | None = None,
                on_picks: Callable[[PickResult], None] | None = None) -> Capture | None:
    """Footage -> Capture, or None when cancelled. `frames` must be re-iterable when the face
    region is automatic or the mesh comes from a reference frame.

    settings.pixel_picks become markers named after them: each is resolved on its own frame,
    taken from `pick_frames` (frame number -> Frame), before the solve; `on_picks` gets the
    outcome (picks left out, and why) and the capture's settings record it ("marker_picks").
    With settings.lens_distortion the frames, the pick frames and the picks are undistorted first
    (`lens_distortion`; of a frame, only the pixels the network's crops read): the capture is
    the undistorted lens's, and records the lens.

    Raises ContractError (bad model file), RuntimeUnavailable (provider), PipelineError,
    SolveError, TemplateGridError, each with a message for the user."""
    settings = settings or CaptureSettings()
    cancel = cancel or threading.Event()
    lens = settings.lens_distortion
    pixel_picks = list(settings.pixel_picks)
    if lens is not None and lens.is_identity:
        lens = None
    as_shot = frames
    if lens is not None:  # from here on everything is in the undistorted frame
        frames = UndistortedFrames(frames, lens)
        pixel_picks = [replace(p, xy=tuple(float(v) for v in lens.undistort(p.xy)))
                       for p in pixel_picks]
    frame_boxes(settings.pipeline.face_region)  # a bad face region fails before the model loads
    # a face box drawn on the footage as shot, in the frame the network sees
    pipeline_settings = replace(settings.pipeline, face_region=undistorted_region(
        settings.pipeline.face_region, lens))
    model = describe_model(model_path or DEFAULT_MODEL)
    session = open_session(model, settings.provider, settings.cpu_threads)
    if on_session:
        on_session(session)
    template = _template(model, settings, pipeline_settings, as_shot, lens, session)
    if template is None or cancel.is_set():
        return None
    picks, resolved = dict(settings.marker_picks), None
    if pixel_picks:
        reserved = Markers.from_template(template, settings.solve.marker_count, picks).names
        resolved = resolve_picks(session, pipeline_settings, pixel_picks,
                                 pick_frames or {}, template, min_weight=settings.solve.min_weight,
                                 reserved=reserved, cancel=cancel, lens=lens)
        if cancel.is_set():
            return None
        picks.update(resolved.canonical)
        if lens is not None:
            _as_placed(resolved, settings.pixel_picks)
        if on_picks:
            on_picks(resolved)
    markers = Markers.from_template(template, settings.solve.marker_count, picks)
    solver = CaptureSolver(template, settings.solve, markers)
    pipeline = Pipeline(session, pipeline_settings, progress, cancel)
    crops, cells = {}, {}  # frame number -> the footage box the network saw, the face's cells
    for prediction in pipeline.run(frames, frame_count):
        crops[prediction.number] = prediction.crop.box
        cells[prediction.number] = prediction.face_cells
        solver.add(prediction)
    if pipeline.cancelled:
        return None
    camera = pipeline.shot_intrinsics() if settings.pipeline.one_camera else None
    record = {"pipeline": asdict(settings.pipeline), "provider": session.providers[0],
              "mesh": settings.mesh, "model_path": str(model.path)}
    if lens is not None:
        record["lens_distortion"] = lens.record()
    capture = solver.finish(camera=camera, footage_name=footage_name, footage_size=footage_size,
                            fps=fps, model=model, settings=record,
                            progress=_fit_progress(progress), cancel=cancel)
    if capture is None:  # cancelled during the expression fit
        return None
    if resolved is not None:
        capture.settings["marker_picks"] = _on_footage(resolved.record(capture), lens)
    # per frame: the canonical cells the face in the face region covers (`capture_warnings`)
    capture.settings["face_cells"] = [int(cells[int(n)]) for n in capture.frame_numbers]
    # per frame: the box the network saw, on the footage as shot (a face region per frame)
    boxes = np.array([crops[int(n)] for n in capture.frame_numbers], np.float64).reshape(-1, 4)
    if lens is not None:
        boxes = lens.distort_boxes(boxes)
    capture.settings["face_boxes"] = np.round(boxes, 3).tolist()
    return capture


def capture_warnings(capture) -> list[str]:
    """Sentences for the user about a finished capture: a face region that looks off the face
    (`face_components.off_face_warning`)."""
    warning = off_face_warning((capture.settings or {}).get("face_cells", []))
    return [warning] if warning else []


def _as_placed(resolved: PickResult, placed) -> None:
    """A PickResult of undistorted picks told in the picks as placed on the footage: the
    picks, and the positions the reasons for the ones left out quote."""
    for pick in placed:
        if pick.name not in resolved.picks:
            continue
        said = resolved.picks[pick.name]
        resolved.picks[pick.name] = pick
        if pick.name in resolved.rejected:
            resolved.rejected[pick.name] = resolved.rejected[pick.name].replace(
                pixels_text(said.xy), pixels_text(pick.xy))


def _on_footage(record: dict, lens: LensDistortion | None) -> dict:
    """The picks' record with the capture's marker on the pick frame (`tracked_xy`) taken back
    onto the footage as shot, where the picks were placed, and the offset between them again."""
    if lens is None:
        return record
    for entry in record.get("accepted", {}).values():
        if "tracked_xy" in entry:
            tracked = lens.distort(entry["tracked_xy"])
            entry["tracked_xy"] = [float(v) for v in tracked]
            entry["offset_px"] = float(np.hypot(*(tracked - np.asarray(entry["xy"]))))
    return record


def _fit_progress(progress: Callable[[Progress], None] | None):
    """The solve's progress(done, total) as `Progress` of phase "fit" (frames per second and
    time left from the frames fitted so far)."""
    if progress is None:
        return None
    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - start, 1e-9)
        progress(Progress("fit", done, total, rate, (total - done) / rate))
    return report


def undistorted_region(face_region, lens: LensDistortion | None):
    """A face region drawn on the footage as shot (one box, or a box per frame: `Pipeline`'s
    `face_region`), as the boxes bounding it in the frame `lens` undistorts; "auto" and "full"
    as they are."""
    if lens is None or isinstance(face_region, str):
        return face_region
    rows = np.asarray(face_region, np.float64)
    if rows.shape == (4,):
        return tuple(float(v) for v in lens.undistort_boxes(rows))
    if rows.ndim != 2 or rows.shape[1] != 5:
        return face_region  # not a region: the pipeline says what is wrong with it
    boxes = lens.undistort_boxes(rows[:, 1:])
    return tuple((int(n), *(float(v) for v in box)) for n, box in zip(rows[:, 0], boxes))


def _template(model: ModelDescription, settings: CaptureSettings,
              pipeline_settings: PipelineSettings, frames, lens: LensDistortion | None, session):
    """The bundled template, or a grid over the reference frame's face: `frames` as shot, the
    reference frame undistorted by `lens` (only it, and only its face crop's pixels)."""
    if settings.mesh in ("AUTO", "TEMPLATE"):
        path = bundled_templates().get(model.canonical_space)
        if path is not None:
            return Template.load(path)
        if settings.mesh == "TEMPLATE":
            raise TemplateError(f"no bundled template for the model's canonical space "
                                f"'{model.canonical_space}': choose a reference-frame mesh")
    wanted = settings.reference_frame
    chosen = None
    for frame in frames:
        if wanted is None or frame.number == wanted:
            chosen = frame
            break
    if chosen is None:
        raise PipelineError(f"reference frame {wanted} is not in the footage")
    reference = replace(pipeline_settings, window=1, overlap=0)
    pipe = Pipeline(session, reference)
    (prediction,) = list(pipe.run([chosen] if lens is None else
                                  UndistortedFrames([chosen], lens), 1))
    return grid_template(prediction, model.canonical_space, settings.grid_vertices,
                         metric_depth=model.metric, landmarks=model.landmarks)
