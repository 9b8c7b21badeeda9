# SPDX-License-Identifier: GPL-3.0-or-later
"""Lens distortion of a Movie Clip's camera (Blender's tracking models), undone on the footage.

The capture solves through a pinhole camera. Footage shot through a lens the clip's camera
describes as distorted (Track > Camera > Lens: Polynomial, Division, Nuke or Brown) is undistorted
frame by frame before the network sees it, the way Blender's Movie Distortion node undistorts it
(same size, same focal length and principal point, no overscan; pixels that come from outside
the frame are black). The capture then lives in the undistorted frame: its camera, its 3D scene
and its `marker_xy`; `distort` takes 2D results back onto the footage as shot (exports, the
preview), `undistort` takes points placed on the footage (Movie Clip tracks) into it.

The models are Blender's (libmv's), in Blender's pixel coordinates (x right, y up, the frame's
bottom-left corner at (0, 0): pixel centres at integer + 0.5), around the principal point
`principal_point_pixels`, on normalised coordinates (pixel - principal) / focal:
- POLYNOMIAL (k1, k2, k3): distorted = x (1 + k1 r^2 + k2 r^4 + k3 r^6);
- DIVISION (k1, k2): distorted = x / (1 + k1 r^2 + k2 r^4);
- NUKE (k1, k2): undistorted = d / (1 + k1 rd^2 + k2 rd^4), d in pixels from the principal point
  over half the frame's longer side (the one model defined from the distorted side);
- BROWN (k1..k4, p1, p2): radial to r^8 plus tangential p1, p2.
The direction without a formula is solved by Newton's method, vectorised over all points (in one
dimension, the radius, for NUKE, which is radial).

Outside this module, points are footage pixels as everywhere in core: x right, y down, the
top-left pixel's centre at (0.5, 0.5).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from .frames import Frame, reduced
from .preprocess import read_region

# each model's coefficients, in the order `LensDistortion.coefficients` holds them (the names of
# Blender's MovieTrackingCamera properties)
MODELS = {"POLYNOMIAL": ("k1", "k2", "k3"), "DIVISION": ("division_k1", "division_k2"),
          "NUKE": ("nuke_k1", "nuke_k2"),
          "BROWN": ("brown_k1", "brown_k2", "brown_k3", "brown_k4", "brown_p1", "brown_p2")}
NEWTON_STEPS = 20
NEWTON_TOLERANCE = 1e-10  # normalised units (about 1e-7 px)


class LensDistortionError(ValueError):
    pass


@dataclass(frozen=True)
class LensDistortion:
    """A clip camera's distortion. focal_px: focal length in footage pixels; principal: Blender's
    principal point (`principal_point_pixels`: pixels, y up from the bottom edge); size: the
    footage's (width, height) in pixels (NUKE's normalisation; the y flip)."""

    model: str
    coefficients: tuple[float, ...]
    focal_px: float
    principal: tuple[float, float]
    size: tuple[int, int]

    def __post_init__(self):
        if self.model not in MODELS:
            raise LensDistortionError(f"unknown lens distortion model {self.model!r}: one of "
                                      f"{', '.join(MODELS)}")
        if len(self.coefficients) != len(MODELS[self.model]):
            raise LensDistortionError(f"{self.model} distortion takes {len(MODELS[self.model])} "
                                      f"coefficients ({', '.join(MODELS[self.model])}), got "
                                      f"{len(self.coefficients)}")
        if not (np.isfinite(self.focal_px) and self.focal_px > 0):
            raise LensDistortionError(f"the lens's focal length must be positive, got "
                                      f"{self.focal_px} px")
        object.__setattr__(self, "coefficients", tuple(float(c) for c in self.coefficients))
        object.__setattr__(self, "principal", tuple(float(c) for c in self.principal))
        object.__setattr__(self, "size", tuple(int(c) for c in self.size))

    @classmethod
    def known(cls, model: str, coefficients, focal_mm: float, sensor_mm: float,
              size: tuple[int, int], principal=None) -> "LensDistortion":
        """A lens given by hand (the command line, the panel's Known lens): focal length and
        sensor size in mm (the sensor along the frame's longer side), `principal` in footage
        pixels, y down from the top (None: the frame's centre). LensDistortionError for an
        unknown model, a wrong number of coefficients or no focal length."""
        w, h = size
        px, py = principal if principal is not None else (w / 2.0, h / 2.0)
        focal_px = focal_mm / sensor_mm * max(w, h) if sensor_mm > 0 else float("nan")
        return cls(model, tuple(coefficients), focal_px, (float(px), h - float(py)), (w, h))

    @property
    def is_identity(self) -> bool:
        return not any(self.coefficients)

    # ------------------------------------------------------------------ record (capture settings)

    def record(self) -> dict:
        return {"model": self.model, "coefficients": list(self.coefficients),
                "names": list(MODELS[self.model]), "focal_px": self.focal_px,
                "principal": list(self.principal), "size": list(self.size)}

    @classmethod
    def from_record(cls, record: dict | None) -> "LensDistortion | None":
        if not record:
            return None
        return cls(str(record["model"]), tuple(record["coefficients"]),
                   float(record["focal_px"]), tuple(record["principal"]), tuple(record["size"]))

    @classmethod
    def of_capture(cls, capture) -> "LensDistortion | None":
        """The distortion a capture's footage was undistorted with (its settings record)."""
        return cls.from_record((getattr(capture, "settings", None) or {}).get("lens_distortion"))

    # ------------------------------------------------------------------ points

    def distort(self, points) -> np.ndarray:
        """Points (..., 2) of the undistorted frame -> where they lie on the footage as shot."""
        return self._map(points, self._distort_normalised)

    def undistort(self, points) -> np.ndarray:
        """Points (..., 2) on the footage as shot -> the undistorted frame."""
        return self._map(points, self._undistort_normalised)

    def undistort_boxes(self, boxes, samples: int = 9) -> np.ndarray:
        """Boxes (..., 4: x0, y0, x1, y1) on the footage as shot -> the boxes bounding them in
        the undistorted frame (each outline sampled at `samples` points a side: a straight edge
        comes out bent). A box the model cannot map anywhere stays as it is."""
        return self._bound_boxes(boxes, self.undistort, samples)

    def distort_boxes(self, boxes, samples: int = 9) -> np.ndarray:
        """Boxes (..., 4) of the undistorted frame -> the boxes bounding them on the footage as
        shot (as `undistort_boxes`, the other way)."""
        return self._bound_boxes(boxes, self.distort, samples)

    @staticmethod
    def _bound_boxes(boxes, fn, samples: int) -> np.ndarray:
        b = np.asarray(boxes, np.float64)
        t = np.linspace(0.0, 1.0, samples)
        x0, y0, x1, y1 = (b[..., i, None] for i in range(4))
        xs = np.concatenate([x0 + (x1 - x0) * t, x0 + (x1 - x0) * t,
                             np.broadcast_to(x0, x0.shape[:-1] + (samples,)),
                             np.broadcast_to(x1, x1.shape[:-1] + (samples,))], -1)
        ys = np.concatenate([np.broadcast_to(y0, y0.shape[:-1] + (samples,)),
                             np.broadcast_to(y1, y1.shape[:-1] + (samples,)),
                             y0 + (y1 - y0) * t, y0 + (y1 - y0) * t], -1)
        outline = fn(np.stack([xs, ys], -1))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-nan outlines: kept below
            out = np.concatenate([np.nanmin(outline, -2), np.nanmax(outline, -2)], -1)
        return np.where(np.isfinite(out).all(-1, keepdims=True), out, b)

    def _map(self, points, fn) -> np.ndarray:
        """(..., 2) float64; nan stays nan (and a point the model cannot map becomes nan)."""
        p = np.asarray(points, np.float64)
        x, y = fn(*self._to_normalised(p[..., 0], p[..., 1]))
        return np.stack(self._from_normalised(x, y), -1)

    def _to_normalised(self, x, y):
        h = self.size[1]
        return ((x - self.principal[0]) / self.focal_px,
                (h - y - self.principal[1]) / self.focal_px)

    def _from_normalised(self, x, y):
        h = self.size[1]
        return (x * self.focal_px + self.principal[0],
                h - (y * self.focal_px + self.principal[1]))

    # ------------------------------------------------------------------ the models

    def _distort_normalised(self, x, y):
        if self.model == "NUKE":
            return self._nuke_distort(x, y)
        return self._forward(x, y)

    def _undistort_normalised(self, x, y):
        if self.model == "NUKE":
            return self._nuke_undistort(x, y)
        return _newton(self._forward, x, y)

    def _forward(self, x, y):
        """The models given in the distorting direction (all but NUKE), normalised units."""
        c = self.coefficients
        r2 = x * x + y * y
        if self.model == "POLYNOMIAL":
            k1, k2, k3 = c
            radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
            return x * radial, y * radial
        if self.model == "DIVISION":
            k1, k2 = c
            radial = 1 + r2 * (k1 + r2 * k2)
            return x / radial, y / radial
        k1, k2, k3, k4, p1, p2 = c  # BROWN
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
        return (x * radial + p1 * (r2 + 2 * x * x) + 2 * p2 * x * y,
                y * radial + p2 * (r2 + 2 * y * y) + 2 * p1 * x * y)

    def _nuke_undistort(self, x, y):
        """NUKE maps the distorted point to the undistorted one, in units of half the frame's
        longer side from the principal point (normalised units in and out)."""
        k1, k2 = self.coefficients
        half = max(self.size) / 2.0
        to_half = self.focal_px / half
        xd, yd = x * to_half, y * to_half
        rd2 = xd * xd + yd * yd
        radial = 1 + rd2 * (k1 + rd2 * k2)
        return x / radial, y / radial

    def _nuke_distort(self, x, y):
        """NUKE's inverse: the model is radial, so each point's distorted radius rd is solved
        from ru = rd / (1 + k1 a rd^2 + k2 a^2 rd^4) by Newton's method in one dimension (with
        the derivative's formula: a whole frame's map in a fraction of a 2D solve's time), and
        the point scaled by rd / ru. Points it cannot reach come back as nan."""
        k1, k2 = self.coefficients
        a = (self.focal_px / (max(self.size) / 2.0)) ** 2
        ru = np.hypot(x, y)
        rd = ru.copy()
        for _ in range(NEWTON_STEPS):
            r2 = rd * rd
            d = 1 + r2 * a * (k1 + r2 * a * k2)
            residual = rd / d - ru
            if np.nanmax(np.abs(residual), initial=0) < NEWTON_TOLERANCE:
                break
            slope = (d - rd * (2 * k1 * a * rd + 4 * k2 * a * a * r2 * rd)) / (d * d)
            with np.errstate(divide="ignore", invalid="ignore"):
                rd = rd - residual / slope
        r2 = rd * rd
        good = np.abs(rd / (1 + r2 * a * (k1 + r2 * a * k2)) - ru) < 1e-6
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(ru > 0, rd / ru, 1.0)
        scale = np.where(good, scale, np.nan)
        return x * scale, y * scale

    # ------------------------------------------------------------------ images

    def undistort_image(self, image: np.ndarray, scale: tuple[float, float] = (1.0, 1.0),
                        remaps: dict | None = None, region=None) -> np.ndarray:
        """An (H, W, C) frame of the footage (reduced by `scale`, image pixels per footage pixel:
        `Frame.scale`) undistorted: each pixel bilinearly sampled where the lens put it; black
        where that falls outside the frame. region: (x0, y0, x1, y1), image pixels: only that
        part of the undistorted image (the pixels a crop reads), for what that part costs.
        remaps: a dict the caller keeps to reuse the sampling map across frames of one size
        (it lives as long as the caller's dict)."""
        h, w = image.shape[:2]
        key = ((w, h), (float(scale[0]), float(scale[1])))
        found = remaps.get(key) if remaps is not None else None
        if found is None:
            found = SamplingMap(self, *key)
            if remaps is not None:
                remaps[key] = found
        x0, y0, x1, y1 = (0, 0, w, h) if region is None else map(int, region)
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise LensDistortionError(f"region {region} is not inside the {w} x {h} image")
        index, fx, fy, inside = found.region(x0, y0, x1, y1)
        c = image.shape[2] if image.ndim == 3 else 1
        # one record per pixel (all its channels): each gather moves whole pixels
        pixels = np.ascontiguousarray(image, np.float32).reshape(-1).view(
            np.dtype((np.void, 4 * c)))

        def at(i):
            return np.take(pixels, i).view(np.float32).reshape(-1, c)

        top, right = at(index), at(index + 1)
        right -= top
        right *= fx
        top += right  # the upper pair interpolated along x
        below = index + w  # the lower pair
        bottom, right = at(below), at(below + 1)
        right -= bottom
        right *= fx
        bottom += right
        bottom -= top
        bottom *= fy
        top += bottom
        top *= inside
        shape = (y1 - y0, x1 - x0) + image.shape[2:]
        return top.reshape(shape).astype(image.dtype, copy=False)

    def undistort_frame(self, frame: Frame, remaps: dict | None = None) -> Frame:
        return replace(frame, image=self.undistort_image(frame.image, frame.scale, remaps))


class SamplingMap:
    """Where each pixel of an undistorted (w, h) image at `scale` samples the footage as shot:
    the flat index of the upper left of its four source pixels (the lower left is one row, w,
    on), the fractions (x, y) within them, and 1 / 0 (in / outside the frame). Made lazily in
    TILE x TILE tiles, the first time a region touches them: a face crop's capture makes the
    map of the tiles under the crops, not of the whole frame."""

    TILE = 128

    def __init__(self, lens: LensDistortion, image_size: tuple[int, int],
                 scale: tuple[float, float]):
        w, h = image_size
        if w < 2 or h < 2:
            raise LensDistortionError(f"a {w} x {h} image is too small to undistort")
        self.lens, self.w, self.h, self.scale = lens, w, h, scale
        t = self.TILE
        self.built = np.zeros((-(-h // t), -(-w // t)), bool)
        # index, fx, fy, inside; np.empty touches no memory until a tile is written
        self._maps = (np.empty((h, w), np.intp),) + tuple(np.empty((h, w), np.float32)
                                                           for _ in range(3))

    def region(self, x0: int, y0: int, x1: int, y1: int):
        """The map over image pixels [x0, x1) x [y0, y1): (index (n,), fx, fy, inside (n, 1)),
        the region's rows in order, not to be written to (the tiles under it are made first)."""
        t = self.TILE
        rows, cols = slice(y0 // t, (y1 - 1) // t + 1), slice(x0 // t, (x1 - 1) // t + 1)
        missing = np.argwhere(~self.built[rows, cols]) + (rows.start, cols.start)
        if missing.size:
            self._make(missing)
        index, fx, fy, inside = (a[y0:y1, x0:x1].reshape(-1) for a in self._maps)
        return index, fx[:, None], fy[:, None], inside[:, None]

    def _make(self, tiles: np.ndarray) -> None:
        """Make the tiles (k, 2) (row, column) in one pass over all their pixels."""
        t, w, h = self.TILE, self.w, self.h
        spans = [(ty * t, min(ty * t + t, h), tx * t, min(tx * t + t, w)) for ty, tx in tiles]
        grids = [np.mgrid[a:b, c:d].reshape(2, -1) for a, b, c, d in spans]
        v, u = np.concatenate(grids, 1).astype(np.float64)
        sx, sy = self.scale
        source = self.lens.distort(np.stack([(u + 0.5) / sx, (v + 0.5) / sy], -1))
        cx = source[:, 0] * sx - 0.5  # image corner coordinates: pixel centres at integers
        cy = source[:, 1] * sy - 0.5
        with np.errstate(invalid="ignore"):  # nan: a point the model cannot map
            inside = (cx > -0.5) & (cx < w - 0.5) & (cy > -0.5) & (cy < h - 0.5)
        # within half a pixel of the border: the border pixel (the last pair's right / lower one)
        cx = np.clip(np.nan_to_num(cx), 0, w - 1 - 1e-6)
        cy = np.clip(np.nan_to_num(cy), 0, h - 1 - 1e-6)
        x0, y0 = np.floor(cx), np.floor(cy)
        values = ((y0 * w + x0).astype(np.intp), cx - x0, cy - y0, inside)
        start = 0
        for (a, b, c, d), (ty, tx) in zip(spans, tiles):
            n = (b - a) * (d - c)
            for out, value in zip(self._maps, values):
                out[a:b, c:d] = value[start:start + n].reshape(b - a, d - c)
            start += n
            self.built[ty, tx] = True  # after its values: a reader never sees a half tile


def _newton(fn, tx, ty):
    """Solve fn(x, y) = (tx, ty) for (x, y), all points at once, from (tx, ty); the Jacobian by
    central differences. Points that do not converge (outside where the model is invertible)
    come back as nan."""
    x, y = np.array(tx, np.float64), np.array(ty, np.float64)
    eps = 1e-7
    for _ in range(NEWTON_STEPS):
        fx, fy = fn(x, y)
        rx, ry = fx - tx, fy - ty
        if np.nanmax(np.abs(rx), initial=0) < NEWTON_TOLERANCE and \
                np.nanmax(np.abs(ry), initial=0) < NEWTON_TOLERANCE:
            break
        ax, ay = fn(x + eps, y)
        bx, by = fn(x - eps, y)
        a_x, a_y = (ax - bx) / (2 * eps), (ay - by) / (2 * eps)
        ax, ay = fn(x, y + eps)
        bx, by = fn(x, y - eps)
        b_x, b_y = (ax - bx) / (2 * eps), (ay - by) / (2 * eps)
        det = a_x * b_y - b_x * a_y
        with np.errstate(divide="ignore", invalid="ignore"):
            x = x - (b_y * rx - b_x * ry) / det
            y = y - (a_x * ry - a_y * rx) / det
    fx, fy = fn(x, y)
    good = (np.abs(fx - tx) < 1e-6) & (np.abs(fy - ty) < 1e-6)
    return np.where(good, x, np.nan), np.where(good, y, np.nan)


def footage_xy(capture, xy) -> np.ndarray:
    """2D positions (..., 2) of `capture` (its frame) on the footage as shot: distorted again
    when the capture's footage was undistorted, else as they are (float64)."""
    lens = LensDistortion.of_capture(capture)
    return np.asarray(xy, np.float64) if lens is None else lens.distort(xy)


class UndistortedFrames:
    """`frames` (any frame source: a reader, a feed, a list) with each frame undistorted by
    `lens` as it is read; `reduced(n)` and the source's other attributes (its footage `size`,
    ...) pass through. The pipeline reads it through `crop_pixels` (`frames.crop_reading`),
    which undistorts only the pixels of each crop. The sampling maps, made once per frame size,
    are kept only as long as the wrapper (and the ones `reduced` gives) is."""

    def __init__(self, frames, lens: LensDistortion, remaps: dict | None = None):
        self._frames = frames
        self.lens = lens
        self._remaps = {} if remaps is None else remaps

    def __iter__(self):
        for frame in self._frames:
            yield self.lens.undistort_frame(frame, self._remaps)

    @property
    def as_read(self):
        """The source's frames as shot, for `crop_pixels` (`frames.crop_reading`)."""
        return self._frames

    def crop_pixels(self, frame: Frame, crop):
        """For a frame of `as_read` and a crop in its image's pixels (`preprocess.Crop`): the
        undistorted pixels the crop's resampling reads (`preprocess.read_region`), and the crop
        in them. A face crop of a large frame costs what the crop costs, not the frame."""
        h, w = frame.image.shape[:2]
        x0, y0, x1, y1 = read_region(crop, h, w)
        image = self.lens.undistort_image(frame.image, frame.scale, self._remaps,
                                          (x0, y0, x1, y1))
        return image, crop.shifted(-x0, -y0)

    def __len__(self) -> int:
        return len(self._frames)

    def reduced(self, factor: int) -> "UndistortedFrames":
        return UndistortedFrames(reduced(self._frames, factor), self.lens, self._remaps)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._frames, name)
