# SPDX-License-Identifier: GPL-3.0-or-later
"""The Blender camera fitted to a capture's shot camera, and the footage behind it.

`fit_camera` is the whole mapping from a pinhole camera matrix (footage pixels, pixel centres at
integer + 0.5, so the image spans [0, width] x [0, height]) to Blender's lens, sensor, sensor fit,
lens shift and scene pixel aspect; `apply_camera` writes it. With these settings Blender's camera
view projects a camera-space point to the same footage pixel as the matrix does (the tests check it
to < 0.01 px through `bpy_extras.object_utils.world_to_camera_view`).

Blender's view plane (BKE_camera_params_compute_viewplane): the fitted side spans `viewfac` pixels
(width for HORIZONTAL, ycor * height for VERTICAL, ycor = pixel_aspect_y / pixel_aspect_x), the
focal length in pixels along x is lens * viewfac / sensor, and the lens shift moves the frame by
shift * viewfac pixels. Pixel aspect carries fx != fy: ycor = fx / fy.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

SENSOR_MM = 36.0  # sensor size on the frame's longer (fitted) side; only fx/sensor matters
CLIP_START, CLIP_END = 0.01, 100.0  # metres; faces sit a few decimetres to metres away


@dataclass(frozen=True)
class CameraFit:
    lens: float  # mm
    sensor_width: float  # mm
    sensor_height: float  # mm
    sensor_fit: str  # 'HORIZONTAL' or 'VERTICAL'
    shift_x: float
    shift_y: float
    pixel_aspect_x: float  # scene render setting, >= 1
    pixel_aspect_y: float
    resolution: tuple[int, int]  # (width, height) pixels


def fit_camera(matrix: np.ndarray, size: tuple[int, int],
               sensor_mm: float = SENSOR_MM) -> CameraFit:
    """Blender camera settings that reproduce the 3 x 3 camera `matrix` on footage of `size`,
    on a sensor of `sensor_mm` along the frame's longer side (a known lens's: so the camera
    shows the lens the footage was shot with)."""
    k = np.asarray(matrix, np.float64)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    width, height = int(size[0]), int(size[1])
    if not (fx > 0 and fy > 0 and width > 0 and height > 0):
        raise ValueError(f"camera matrix {k.tolist()} or footage size {size} is not usable")
    aspect_x, aspect_y = (1.0, fx / fy) if fx >= fy else (fy / fx, 1.0)
    ycor = aspect_y / aspect_x  # = fx / fy
    if width * aspect_x >= height * aspect_y:
        fit, viewfac = "HORIZONTAL", float(width)
        sensor_w, sensor_h = sensor_mm, sensor_mm * height * aspect_y / (width * aspect_x)
        lens = fx * sensor_w / viewfac
    else:
        fit, viewfac = "VERTICAL", ycor * height
        sensor_h, sensor_w = sensor_mm, sensor_mm * width * aspect_x / (height * aspect_y)
        lens = fx * sensor_h / viewfac
    return CameraFit(lens=lens, sensor_width=sensor_w, sensor_height=sensor_h, sensor_fit=fit,
                     shift_x=(width / 2.0 - cx) / viewfac,
                     shift_y=(cy - height / 2.0) * ycor / viewfac,
                     pixel_aspect_x=aspect_x, pixel_aspect_y=aspect_y,
                     resolution=(width, height))


def sensor_of(capture) -> float:
    """The sensor size (mm, longer side) of a capture shot with a known lens, else SENSOR_MM."""
    pipeline = (capture.settings or {}).get("pipeline") or {}
    known = float(pipeline.get("lens_mm") or 0) > 0
    return float(pipeline.get("sensor_mm") or SENSOR_MM) if known else SENSOR_MM


def apply_camera(cam: bpy.types.Camera, fit: CameraFit) -> None:
    """Write the lens, sensor and shift of `fit` to a camera datablock."""
    cam.type = "PERSP"
    cam.lens_unit = "MILLIMETERS"
    cam.sensor_fit = fit.sensor_fit
    cam.sensor_width, cam.sensor_height = fit.sensor_width, fit.sensor_height
    cam.lens = fit.lens
    cam.shift_x, cam.shift_y = fit.shift_x, fit.shift_y
    cam.clip_start, cam.clip_end = CLIP_START, CLIP_END


def apply_render_settings(scene: bpy.types.Scene, fit: CameraFit, frames: tuple[int, int],
                          fps: float) -> None:
    """Resolution, pixel aspect, frame range and frame rate of `scene` for the footage."""
    r = scene.render
    r.resolution_x, r.resolution_y = fit.resolution
    r.resolution_percentage = 100
    r.pixel_aspect_x, r.pixel_aspect_y = fit.pixel_aspect_x, fit.pixel_aspect_y
    if fps > 0:
        r.fps = max(1, round(fps))
        r.fps_base = r.fps / fps
    scene.frame_start, scene.frame_end = frames


# ------------------------------------------------------------------------------------- footage

@dataclass(frozen=True)
class Background:
    """What the camera background shows: an image sequence or a movie file from `first` (the file
    of `first_number`) to `last_number`, or a Movie Clip datablock."""

    kind: str  # 'SEQUENCE', 'MOVIE' or 'MOVIE_CLIP'
    first: Path | None
    first_number: int
    last_number: int
    clip: object = None  # bpy.types.MovieClip for 'MOVIE_CLIP'


def find_background(source) -> Background:
    """The background for a footage path (folder of numbered images, one image of a sequence, a
    movie file) or a Movie Clip. Raises FootageError for an unusable path."""
    from . import footage as fo  # the footage readers' own rules for numbered sequences
    from ..core.errors import FootageError

    if isinstance(source, bpy.types.MovieClip):
        return Background("MOVIE_CLIP", None, 1, max(1, source.frame_duration), source)
    target = Path(bpy.path.abspath(os.fspath(source)))
    if not target.exists():
        raise FootageError(f"footage not found: {target}")
    if target.is_dir():
        files = fo.folder_sequence(target)
    elif target.suffix.lower() in fo.IMAGE_FAMILIES:
        files = fo.file_sequence(target)
    elif target.suffix.lower() in fo.MOVIE_EXTENSIONS:
        return Background("MOVIE", target, 1, 0)  # the frame count comes with the image
    else:
        raise FootageError(f"{target} is neither an image sequence nor a movie file")
    numbers = sorted(files)
    return Background("SEQUENCE", files[numbers[0]], numbers[0], numbers[-1])


def lens_clip(background: Background, lens, frame_offset: int = 0) -> Background:
    """A Movie Clip of footage files (`background`, a sequence or a movie) whose camera has
    `lens` (`core.lens_distortion.LensDistortion`: focal length, principal point, distortion),
    so that the camera view can show the footage undistorted as the capture saw it (a lens
    given on the command line or as a Known lens); clip frames line up as `add_background`
    lines up the files: Blender frame = footage frame number + frame_offset. Raises
    FootageError when Blender cannot open the files as a clip."""
    from ..core.errors import FootageError
    from ..core.lens_distortion import MODELS

    try:
        clip = bpy.data.movieclips.load(str(background.first), check_existing=False)
    except RuntimeError as err:
        raise FootageError(f"cannot open {background.first} as a movie clip: {err}") from None
    # clip frame 1 is the first file (a movie's frame 1), and plays at frame_start
    clip.frame_start = background.first_number + frame_offset
    camera = clip.tracking.camera
    camera.units = "PIXELS"
    camera.focal_length_pixels = lens.focal_px
    camera.principal_point_pixels = lens.principal
    camera.distortion_model = lens.model
    for name, value in zip(MODELS[lens.model], lens.coefficients):
        setattr(camera, name, value)
    last = background.last_number if background.kind == "SEQUENCE" else clip.frame_duration
    return Background("MOVIE_CLIP", None, background.first_number, last, clip)


def add_background(cam: bpy.types.Camera, background: Background, frame_offset: int = 0,
                   undistorted: bool = False) -> bpy.types.Image | None:
    """Show the footage behind `cam`'s view so that Blender frame (footage frame number +
    frame_offset) shows that footage frame. Returns the image datablock it loaded (None for a
    Movie Clip, which Blender lines up by the clip's own start frame). undistorted: a Movie Clip
    is shown through its camera's lens distortion undone (the capture's frame)."""
    from ..core.errors import FootageError

    bg = cam.background_images.new()
    bg.alpha, bg.display_depth, bg.frame_method = 1.0, "BACK", "STRETCH"
    cam.show_background_images = True
    if background.kind == "MOVIE_CLIP":
        bg.source, bg.clip = "MOVIE_CLIP", background.clip
        bg.clip_user.use_render_undistorted = undistorted
        return None
    try:
        img = bpy.data.images.load(str(background.first), check_existing=False)
    except RuntimeError as err:
        raise FootageError(f"cannot open {background.first}: {err}") from None
    bg.source, bg.image = "IMAGE", img
    first, last = background.first_number, background.last_number
    if background.kind == "SEQUENCE":
        img.source = "SEQUENCE"
    else:
        last = max(1, img.frame_duration)
    user = bg.image_user
    user.frame_start = first + frame_offset
    user.frame_offset = first - 1
    user.frame_duration = last - first + 1
    user.use_auto_refresh = True
    user.use_cyclic = False
    return img
