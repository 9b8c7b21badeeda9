# SPDX-License-Identifier: GPL-3.0-or-later
"""The streaming prediction pipeline: frames in, per-frame model predictions out.

    pipeline = Pipeline(model_session, PipelineSettings(window=4), progress=print, cancel=event)
    for prediction in pipeline.run(footage, total=len(footage.frame_numbers)):
        ...  # maps at model resolution, intrinsics in footage pixels, the crop box

Frames are never all in memory: they are read and prepared one at a time on the calling thread
(full resolution only while prepared), and two windows of S frames at model resolution exist at a
time: the network runs on one in a worker thread (ONNX Runtime releases the GIL) while the next is
prepared (`PipelineSettings.pipelined`; off: one after the other on the calling thread). Safe to
run in a worker thread (no global state). `cancel.set()` stops it cleanly within one window.
With `face_region="auto"`, `frames` is iterated twice (a quick detection pass at low resolution,
then the prediction pass), so it must be re-iterable (a footage object or a list).

A frame source that knows its footage `size` and has `reduced(n)` (a reader: `blender.footage`,
`core.frame_feed`) is asked, before each pass, for frames up to n times smaller, n being the
integer area reduction the preprocessing would make first for that pass's smallest crop
(`preprocess.reduction_factor`): the reader averages the blocks while it copies the pixels out
anyway, so full-resolution frames never reach the pipeline when the model does not need them.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator

import numpy as np

from .face_components import clean_face, face_pixels
from .frames import Frame, crop_reading, reduced
from .preprocess import (Crop, crop_for_box, full_frame_crop, model_input_size, prepare,
                         reduction_factor)
from .session import ModelSession

MAP_OUTPUTS = ("depth", "depth_conf", "canonical", "canonical_conf", "mask")


class PipelineError(Exception):
    """The footage or settings cannot be processed; the message says what to do."""


@dataclass
class PipelineSettings:
    resolution: int = 0  # longest side of the model input; 0: the model's preferred input_size
    window: int = 1  # frames per window, 1 .. the model's max_window
    overlap: int = 1  # frames shared by consecutive windows (window > 1 only)
    # "auto" | "full" | a box (x0, y0, x1, y1) in footage pixels | a box per frame,
    # ((frame number, x0, y0, x1, y1), ...) for every frame (a followed track: `frame_boxes`)
    face_region: str | tuple = "auto"
    box_margin: float = 0.35  # auto box grown by this fraction of its size on each side
    box_smoothing: float = 4.0  # sigma, in frames, of the zero-lag smoothing of auto boxes
    detect_resolution: int = 224  # longest side of the detection pass
    detect_every: int = 2  # detection pass looks at every n-th frame
    align_depth_scale: bool = True  # relative-depth models: chain scale through window overlaps
    shot_focal: bool = True  # one robust focal length for the shot (else per-frame)
    # the shot camera from whole frames (face region auto: the detection pass's; a box: the
    # first window's): a face crop shows too little of the scene to tell the lens
    # (training.evaluate: the bundled model's focal length is 24 % short on whole frames,
    # under half the truth on crops; a known lens, below, replaces it)
    camera_from_whole_frames: bool = True
    # a known lens: focal length in mm (0: the network's prediction) on a sensor of sensor_mm
    # along the frame's longer side (36: a full-frame still camera, or 35 mm equivalent);
    # the shot camera is then that focal length, on principal_px (else the frame's centre)
    lens_mm: float = 0.0
    sensor_mm: float = 36.0
    # a known lens's principal point (x, y) in footage pixels, y down (None: the frame's centre)
    principal_px: tuple[float, float] | None = None
    face_threshold: float = 0.5
    pipelined: bool = True  # the network runs in its own thread while the next window is prepared

    @property
    def one_camera(self) -> bool:
        """Whether every frame is seen through the shot camera (a known lens always is)."""
        return self.shot_focal or self.lens_mm > 0


@dataclass(frozen=True)
class Progress:
    phase: str  # "detect" | "predict"
    done: int
    total: int  # 0 when unknown
    fps: float
    eta_s: float  # nan when unknown

    def text(self) -> str:
        of = f"/{self.total}" if self.total else ""
        eta = f", {self.eta_s:.0f} s left" if np.isfinite(self.eta_s) else ""
        return f"{self.phase}: frame {self.done}{of}, {self.fps:.1f} fps{eta}"


@dataclass
class FramePrediction:
    number: int
    footage_size: tuple[int, int]  # (width, height)
    crop: Crop  # the footage region the maps cover (model-input pixel -> footage pixel)
    depth: np.ndarray  # H x W at model resolution (scale-aligned across windows)
    depth_conf: np.ndarray
    canonical: np.ndarray  # H x W x 3
    canonical_conf: np.ndarray
    intrinsics: np.ndarray  # 3 x 3, footage pixels, as predicted for this frame
    mask: np.ndarray | None = None
    depth_scale: float = 1.0  # factor applied to this window's depth by scale alignment
    # the face weight as the pipeline cleaned it (the parts that show no face at 0:
    # `face_components.clean_face`); None: from mask / canonical_conf (`face_weight`)
    weight: np.ndarray | None = None
    # canonical cells the face's best part covers (`face_components.clean_face`; 0: none)
    face_cells: int = 0

    @property
    def face_weight(self) -> np.ndarray:
        if self.weight is not None:
            return self.weight
        return face_weight(self.mask, self.canonical_conf)


def face_weight(mask: np.ndarray | None, canonical_conf: np.ndarray) -> np.ndarray:
    """Per-pixel face probability: the model's mask, else its canonical confidence rescaled."""
    if mask is not None:
        return mask
    c = np.maximum(canonical_conf - 1.0, 0.0)
    top = c.max(axis=(-2, -1), keepdims=True)
    return c / np.where(top > 0, top, 1.0)


def box_from_weight(weight: np.ndarray, crop: Crop, threshold: float, min_pixels: int = 6,
                    canonical: np.ndarray | None = None) -> np.ndarray | None:
    """The face's bounding box (x0, y0, x1, y1) in footage pixels, or None when no face.
    canonical: the frame's canonical map; then only the connected parts of the mask that show
    the face count (`face_components`: not a sleeve with a cheek's coordinates)."""
    valid = weight > threshold
    if canonical is not None:
        valid = face_pixels(valid, canonical)
    ys, xs = np.nonzero(valid)
    if xs.size < min_pixels:
        return None
    lo = np.percentile(np.stack([xs, ys], 1), 0.5, axis=0)
    hi = np.percentile(np.stack([xs, ys], 1), 99.5, axis=0) + 1.0
    corners = crop.to_footage(np.array([lo, hi]))
    return corners.ravel()


def smooth_boxes(boxes: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-lag Gaussian smoothing of (F, 4) boxes over frames (rows with nan are filled first)."""
    boxes = np.array(boxes, np.float64)
    valid = ~np.isnan(boxes[:, 0])
    idx = np.arange(len(boxes))
    for c in range(4):
        boxes[:, c] = np.interp(idx, idx[valid], boxes[valid, c])
    if sigma <= 0 or len(boxes) < 2:
        return boxes
    radius = int(3 * sigma)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    # odd reflection at the ends keeps a steady motion steady (no pull towards the end values)
    padded = np.pad(boxes, ((radius, radius), (0, 0)), mode="reflect", reflect_type="odd")
    norm = k.sum()
    return np.stack([np.convolve(padded[:, c], k, mode="valid") / norm for c in range(4)], 1)


def _focal_row(k: np.ndarray) -> np.ndarray:
    """fx, fy, cx, cy of 3 x 3 intrinsics."""
    return np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]], np.float64)


def _check_size(frame: Frame, first: tuple[int, int] | None) -> tuple[int, int]:
    """The footage's frame size; PipelineError when `frame` is not that size."""
    if first is not None and frame.size != first:
        raise PipelineError(f"frame {frame.number} is {frame.size[0]} x {frame.size[1]}, the "
                            f"footage started at {first[0]} x {first[1]}: all frames must "
                            f"share one size")
    return frame.size


def frame_boxes(face_region) -> dict[int, np.ndarray] | None:
    """The boxes of a face region given per frame, ((frame, x0, y0, x1, y1), ...), as
    {frame number: box}; None for any other face region ("auto", "full", one box). A
    PipelineError for a face region of no known form, a box that is empty or not finite, or a
    frame given twice."""
    if isinstance(face_region, str):
        if face_region in ("auto", "full"):
            return None
        raise PipelineError(f"face region {face_region!r}: use 'auto', 'full', a box (x0, y0, "
                            f"x1, y1) or a box per frame ((frame, x0, y0, x1, y1), ...)")
    try:
        rows = np.asarray(face_region, np.float64)
    except (TypeError, ValueError):
        rows = np.zeros((0, 0))
    if rows.shape == (4,):
        rows, per_frame = rows[None], False
    elif rows.ndim == 2 and rows.shape[1] == 5 and len(rows):
        rows, per_frame = rows[:, 1:], True
        numbers = np.asarray(face_region, np.float64)[:, 0]
    else:
        raise PipelineError(f"face region {face_region!r}: a box is 4 numbers (x0, y0, x1, y1) "
                            f"in footage pixels; a box per frame is 5 (frame, x0, y0, x1, y1)")
    bad = ~(np.isfinite(rows).all(1) & (rows[:, 2] > rows[:, 0]) & (rows[:, 3] > rows[:, 1]))
    if bad.any():
        where = f" on frame {numbers[bad][0]:g}" if per_frame else ""
        raise PipelineError(f"face box {tuple(rows[bad][0].tolist())}{where} is empty: give (x0, "
                            f"y0, x1, y1) with x1 > x0 and y1 > y0, in footage pixels")
    if not per_frame:
        return None
    if len(np.unique(numbers)) != len(numbers) or not np.all(numbers == np.round(numbers)):
        raise PipelineError("a face region given per frame needs one box per whole frame "
                            "number, each frame once")
    return {int(n): box for n, box in zip(numbers, rows)}


def boxes_on_frames(known, numbers) -> tuple[tuple, int]:
    """A face region given per frame (`frame_boxes`) for every frame of `numbers`, from boxes
    known on some of them ({frame number: (x0, y0, x1, y1)}, e.g. where a track was tracked):
    frames between take the box interpolated linearly, frames before the first and after the
    last hold its box. Returns (region, how many frames were filled in); ValueError when no box
    is known on any of `numbers`."""
    numbers = sorted({int(n) for n in numbers})
    index = {n: i for i, n in enumerate(numbers)}
    boxes = np.full((len(numbers), 4), np.nan)
    for n, box in known.items():
        if int(n) in index:
            boxes[index[int(n)]] = box
    found = ~np.isnan(boxes).any(1)
    if not found.any():
        raise ValueError("no box on any of the frames")
    filled = smooth_boxes(boxes, 0.0)  # fills the gaps; no smoothing of what was given
    return tuple((n, *(float(v) for v in box)) for n, box in zip(numbers, filled)), \
        int((~found).sum())


def grow_box(box, margin: float) -> np.ndarray:
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return np.array([x0 - dx, y0 - dy, x1 + dx, y1 + dy])


@dataclass(frozen=True)
class _Prepared:
    """A frame as the model takes it: 3 x H x W normalised (a slot of its window's input), with
    where it came from."""

    number: int
    size: tuple[int, int]
    crop: Crop
    tensor: np.ndarray


class _Batch:
    """Up to `capacity` prepared frames, written straight into the model's input array
    [1, S, 3, H, W] (no stacking); one new array per window, so a window being run is never
    written to."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.items: list[_Prepared] = []
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)

    def slot(self, crop: Crop) -> np.ndarray:
        if self._array is None:
            self._array = np.empty((1, self.capacity, 3, crop.out_h, crop.out_w), np.float32)
        elif self._array.shape[-2:] != (crop.out_h, crop.out_w):
            raise PipelineError(f"model input {crop.out_w} x {crop.out_h} differs within a window "
                                f"({self._array.shape[-1]} x {self._array.shape[-2]})")
        return self._array[0, len(self.items)]

    def keep(self, prepared: _Prepared) -> None:
        """A frame of the previous window that this one shares (window overlap)."""
        slot = self.slot(prepared.crop)
        np.copyto(slot, prepared.tensor)
        self.items.append(replace(prepared, tensor=slot))

    @property
    def images(self) -> np.ndarray:
        return self._array[:, :len(self.items)]


class _Runner:
    """Runs the model on batches: in one worker thread when `threaded` (the caller prepares the
    next window meanwhile), else at once on the caller's thread."""

    def __init__(self, session: ModelSession, threaded: bool):
        self.session = session
        self._pool = ThreadPoolExecutor(1, "face-anything-model") if threaded else None

    def submit(self, batch: _Batch) -> Future:
        if self._pool is not None:
            return self._pool.submit(self._run, batch)
        done: Future = Future()
        try:
            done.set_result(self._run(batch))
        except Exception as exc:  # noqa: BLE001 - raised by result(), as from the thread
            done.set_exception(exc)
        return done

    def _run(self, batch: _Batch) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in self.session.run(batch.images).items()}

    def close(self) -> None:
        """Waits for a run in progress (never leaves a thread behind)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Clock:
    phase: str
    total: int
    callback: Callable[[Progress], None] | None
    start: float = field(default_factory=time.perf_counter)

    def report(self, done: int) -> None:
        if self.callback is None:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        fps = done / elapsed
        eta = (self.total - done) / fps if self.total and fps > 0 else float("nan")
        self.callback(Progress(self.phase, done, self.total, fps, eta))


class Pipeline:
    def __init__(self, session: ModelSession, settings: PipelineSettings | None = None,
                 progress: Callable[[Progress], None] | None = None,
                 cancel: threading.Event | None = None):
        self.session = session
        self.model = session.description
        self.settings = settings or PipelineSettings()
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.cancelled = False
        self._focals: list[np.ndarray] = []  # fx, fy, cx, cy of each predicted frame
        self._whole_focals: list[np.ndarray] = []  # the same on whole frames (see shot_intrinsics)
        self._footage_size: tuple[int, int] | None = None
        s = self.settings
        lens = np.array([s.lens_mm, s.sensor_mm], np.float64)
        if not (np.isfinite(lens).all() and lens[0] >= 0 and lens[1] > 0):
            raise PipelineError(f"a known lens needs a focal length of 0 mm or more (0: predict "
                                f"it; got {s.lens_mm}) and a sensor size above 0 mm (got "
                                f"{s.sensor_mm})")
        if s.principal_px is not None and not (len(s.principal_px) == 2 and
                                               np.isfinite(np.asarray(s.principal_px, float)).all()):
            raise PipelineError(f"a known lens's principal point must be two numbers, x and y in "
                                f"footage pixels (got {s.principal_px})")
        if not 1 <= s.window <= self.model.max_window:
            raise PipelineError(f"frames per window must be 1 to {self.model.max_window} for this "
                                f"model (got {s.window})")
        if s.window > 1 and not 0 <= s.overlap < s.window:
            raise PipelineError(f"window overlap must be 0 to {s.window - 1} (got {s.overlap})")
        self._frame_boxes = frame_boxes(s.face_region)  # checks every form of face region

    # ---------------------------------------------------------------- sizes and crops

    def _longest(self) -> int:
        longest = self.settings.resolution or self.model.input_size
        if longest % self.model.patch_size:
            raise PipelineError(f"processing resolution {longest} is not a multiple of the "
                                f"model's patch size {self.model.patch_size}")
        return longest

    def _crop_size(self, width: float, height: float, longest: int) -> tuple[int, int]:
        if self.model.fixed_size:
            h, w = self.model.fixed_size
            return w, h
        return model_input_size(width, height, longest, self.model.patch_size)

    def _whole_frame(self, size, longest: int) -> Crop:
        w, h = size
        if self.model.fixed_size:
            return crop_for_box((0, 0, w, h), *self._crop_size(w, h, longest))
        return full_frame_crop(w, h, longest, self.model.patch_size)

    # ---------------------------------------------------------------- running the model

    def _whole_frames(self, frames: Iterable[Frame]) -> tuple[Iterable[Frame], int]:
        """`frames` as the whole-frame passes read them (reduced where the reader can) and the
        longest side of their network input (the detection resolution)."""
        longest = self.settings.detect_resolution
        longest -= longest % self.model.patch_size
        size = getattr(frames, "size", None)  # a reader that knows it can reduce frames for us
        if size is not None:
            frames = reduced(frames, reduction_factor(self._whole_frame(size, longest)))
        return frames, longest

    def _note_whole_camera(self, prepared: _Prepared, intrinsics: np.ndarray) -> None:
        """Keep a whole frame's predicted intrinsics (input pixels) for the shot camera."""
        self._whole_focals.append(_focal_row(prepared.crop.to_footage_intrinsics(intrinsics)))

    def _prepare(self, frame: Frame, crop: Crop, batch: _Batch, pixels) -> None:
        """Crop, resize and normalise a frame into its window's input at once, so no
        full-resolution frame is held. `crop` is in footage pixels, the image may be reduced;
        pixels: the frame source's (`frames.crop_reading`)."""
        slot = batch.slot(crop)
        image, in_image = pixels(frame, crop.scaled(*frame.scale))
        prepare(image, in_image, self.model.mean, self.model.std, out=slot)
        batch.items.append(_Prepared(frame.number, frame.size, crop, slot))

    def detect_boxes(self, frames: Iterable[Frame], total: int = 0) -> dict[int, np.ndarray]:
        """Face boxes (footage pixels, smoothed, margin added) for every frame number."""
        runner = _Runner(self.session, self.settings.pipelined)
        try:
            return self._detect_boxes(frames, total, runner)
        finally:
            runner.close()

    def _detect_boxes(self, frames, total: int, runner: _Runner) -> dict[int, np.ndarray]:
        s = self.settings
        frames, longest = self._whole_frames(frames)
        frames, pixels = crop_reading(frames)
        clock = _Clock("detect", total, self.progress)
        numbers = []
        found = []  # per frame: box, or nan (not looked at, or no face)
        batch, positions = _Batch(self.model.max_window), []
        running = None  # (future, batch, positions) on the network now

        def collect(future, done: _Batch, where: list[int]) -> None:
            out = future.result()
            weights = face_weight(out.get("mask"), out["canonical_conf"])
            for i, prepared in enumerate(done.items):
                box = box_from_weight(weights[i], prepared.crop, s.face_threshold,
                                      canonical=out["canonical"][i])
                if box is not None:
                    found[where[i]] = box
                    self._note_whole_camera(prepared, out["intrinsics"][i])

        first_size = None
        for i, frame in enumerate(frames):
            if self.cancel.is_set():
                self.cancelled = True
                return {}
            first_size = _check_size(frame, first_size)
            numbers.append(frame.number)
            found.append(np.full(4, np.nan))
            if i % max(s.detect_every, 1) == 0:
                self._prepare(frame, self._whole_frame(frame.size, longest), batch, pixels)
                positions.append(i)
                if len(batch) == batch.capacity:
                    if running:
                        collect(*running)
                    running = (runner.submit(batch), batch, positions)
                    batch, positions = _Batch(self.model.max_window), []
            clock.report(i + 1)
        if running:
            collect(*running)
        if batch:
            collect(runner.submit(batch), batch, positions)
        if not numbers:
            raise PipelineError("the footage has no frames")
        boxes = np.array(found, np.float64)
        if np.isnan(boxes[:, 0]).all():
            raise PipelineError("no face found in the footage: check the footage, or draw a face "
                                "box by hand (face region: box)")
        boxes = smooth_boxes(boxes, s.box_smoothing)
        return {n: grow_box(b, s.box_margin) for n, b in zip(numbers, boxes)}

    def _camera_pass(self, frames: Iterable[Frame]) -> None:
        """With a face box drawn by hand (or given per frame) there is no detection pass: the
        network looks at the first window of whole frames (at the detection resolution) for
        the shot camera only."""
        frames, longest = self._whole_frames(frames)
        frames, pixels = crop_reading(frames)
        batch, first_size = _Batch(self.model.max_window), None
        for frame in frames:  # a pass over the first frames only, then abandoned
            if self.cancel.is_set():
                self.cancelled = True
                return
            first_size = _check_size(frame, first_size)
            self._prepare(frame, self._whole_frame(frame.size, longest), batch, pixels)
            if len(batch) == batch.capacity:
                break
        if not batch:
            return
        runner = _Runner(self.session, False)
        try:
            out = runner.submit(batch).result()
        finally:
            runner.close()
        for i, prepared in enumerate(batch.items):
            self._note_whole_camera(prepared, out["intrinsics"][i])

    def run(self, frames: Iterable[Frame], total: int = 0) -> Iterator[FramePrediction]:
        s = self.settings
        longest = self._longest()
        boxes: dict[int, np.ndarray] | None = self._frame_boxes
        if isinstance(s.face_region, str) and s.face_region == "auto":
            boxes = self.detect_boxes(frames, total)
            if self.cancelled:
                return
        elif isinstance(s.face_region, str) and s.face_region == "full":
            out_size = None
        elif boxes is None:
            x0, y0, x1, y1 = map(float, s.face_region)
            out_size = self._crop_size(x1 - x0, y1 - y0, longest)
        if boxes is not None:  # one crop size for the shot: the boxes' median size
            sizes = np.array([[b[2] - b[0], b[3] - b[1]] for b in boxes.values()])
            out_size = self._crop_size(*np.median(sizes, axis=0), longest)
        if (not isinstance(s.face_region, str) and s.shot_focal and s.camera_from_whole_frames
                and not s.lens_mm):
            self._camera_pass(frames)
            if self.cancelled:
                return

        def crop_of(frame: Frame) -> Crop:
            if boxes is not None:
                if frame.number not in boxes:
                    raise PipelineError(f"the face region has no box for frame {frame.number}: "
                                        "a face region given per frame needs a box on every "
                                        "frame being captured")
                return crop_for_box(boxes[frame.number], *out_size)
            if out_size is None:
                return self._whole_frame(frame.size, longest)
            return crop_for_box(s.face_region, *out_size)

        size = getattr(frames, "size", None)  # a reader that knows it can reduce frames for us
        if boxes is not None:  # the smallest face box sets the reduction
            ratios = np.max(sizes / np.asarray(out_size, np.float64), axis=1)
            smallest = list(boxes.values())[int(np.argmin(ratios))]
            frames = reduced(frames, reduction_factor(crop_for_box(smallest, *out_size)))
        elif out_size is not None:
            frames = reduced(frames, reduction_factor(crop_for_box(s.face_region, *out_size)))
        elif size is not None:
            frames = reduced(frames, reduction_factor(self._whole_frame(size, longest)))
        frames, pixels = crop_reading(frames)
        runner = _Runner(self.session, s.pipelined)
        try:
            yield from self._windows(iter(frames), crop_of, pixels, runner, total)
        finally:
            runner.close()

    def _windows(self, pending: Iterator[Frame], crop_of, pixels, runner: _Runner,
                 total: int) -> Iterator[FramePrediction]:
        s = self.settings
        step = s.window - (s.overlap if s.window > 1 else 0)
        clock = _Clock("predict", total, self.progress)
        first_size = None

        def fill(batch: _Batch) -> None:
            """Read and prepare frames until the window is full or the footage ends."""
            nonlocal first_size
            while len(batch) < batch.capacity:
                frame = next(pending, None)
                if frame is None:
                    return
                first_size = _check_size(frame, first_size)
                self._prepare(frame, crop_of(frame), batch, pixels)

        batch = _Batch(s.window)
        fill(batch)
        if not batch:
            raise PipelineError("the footage has no frames")
        if self.cancel.is_set():
            self.cancelled = True
            return
        running = runner.submit(batch)
        previous: dict[int, tuple] = {}  # overlap frame number -> aligned depth, face weight
        scale, done = 1.0, 0
        while True:
            # the next window is read and prepared while the network runs on this one
            following, error = None, None
            if not self.cancel.is_set():
                following = _Batch(s.window)
                for prepared in (batch.items[step:] if s.window > 1 else []):
                    following.keep(prepared)
                kept = len(following)
                try:
                    fill(following)
                except Exception as exc:  # noqa: BLE001 - raised after this window's frames,
                    error, following = exc, None  # where reading one window at a time raises it
                if following is not None and len(following) == kept:
                    following = None  # nothing new after the overlap
            out = running.result()
            if self.cancel.is_set():
                self.cancelled = True
                return
            if following is not None:
                running = runner.submit(following)
            faces = [clean_face(w, c, s.face_threshold) for w, c in
                     zip(face_weight(out.get("mask"), out["canonical_conf"]), out["canonical"])]
            # parts of the mask (or of a mask-less model's weight) that show no face are not
            # the face
            weights = out["weight"] = np.stack([w for w, _ in faces])
            if "mask" in out:
                out["mask"] = weights
            numbers = [p.number for p in batch.items]
            scale = self._align(scale, previous, numbers, out["depth"], weights)
            for i, prepared in enumerate(batch.items):
                if prepared.number in previous:
                    continue  # already yielded by the previous window
                yield self._frame_prediction(prepared, out, i, scale, faces[i][1])
                done += 1
            clock.report(done)
            if error is not None:
                raise error
            if following is None:
                return
            keep = batch.items[step:] if s.window > 1 else []
            previous = {p.number: (out["depth"][i + step] * scale, weights[i + step])
                        for i, p in enumerate(keep)}
            batch = following

    def _align(self, scale, previous, numbers, depth, weights) -> float:
        """The factor for this window's depth: relative-depth models chain it through the frames
        two windows share (median ratio over pixels that are face in both predictions)."""
        if self.model.metric or not self.settings.align_depth_scale:
            return 1.0
        ratios = []
        for i, number in enumerate(numbers):
            if number in previous:
                old_depth, old_weight = previous[number]
                sel = (old_weight > self.settings.face_threshold) & \
                      (weights[i] > self.settings.face_threshold)
                if sel.sum() < 16:  # too little face in common: use the whole frame
                    sel = np.ones_like(sel)
                ratios.append(old_depth[sel] / depth[i][sel])
        return float(np.median(np.concatenate(ratios))) if ratios else scale

    def _frame_prediction(self, prepared: _Prepared, out, i, scale,
                          face_cells: int) -> FramePrediction:
        k = prepared.crop.to_footage_intrinsics(out["intrinsics"][i])
        self._focals.append(_focal_row(k))
        self._footage_size = prepared.size
        return FramePrediction(
            number=prepared.number, footage_size=prepared.size, crop=prepared.crop,
            depth=out["depth"][i] * scale if scale != 1.0 else out["depth"][i],
            depth_conf=out["depth_conf"][i],
            canonical=out["canonical"][i], canonical_conf=out["canonical_conf"][i],
            intrinsics=k, mask=out["mask"][i] if "mask" in out else None, depth_scale=scale,
            weight=out["weight"][i], face_cells=face_cells)

    def shot_intrinsics(self) -> np.ndarray:
        """One camera for the whole shot, in footage pixels: the median (robust to outlier
        frames) of the whole-frame predictions (`camera_from_whole_frames`: the detection
        pass's frames where it found a face, or with a hand-drawn box the camera pass's first
        window), else of the per-frame predictions on their crops. Available once frames have
        been predicted. With a known lens (`lens_mm`), that lens, on its principal point
        (`principal_px`, else the frame's centre)."""
        if self.settings.lens_mm:
            if self._footage_size is None:
                raise PipelineError("no frame has been predicted yet")
            w, h = self._footage_size
            f = self.settings.lens_mm / self.settings.sensor_mm * max(w, h)
            cx, cy = self.settings.principal_px or (w / 2.0, h / 2.0)
            return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
        rows = self._whole_focals if self.settings.camera_from_whole_frames else []
        rows = rows or self._focals
        if not rows:
            raise PipelineError("no frame has been predicted yet")
        fx, fy, cx, cy = np.median(np.array(rows), axis=0)
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])

    def camera_for(self, prediction: FramePrediction) -> np.ndarray:
        """The intrinsics to use for a frame: the shot's or the frame's, per the settings (a
        known lens is the shot's)."""
        return self.shot_intrinsics() if self.settings.one_camera else prediction.intrinsics
