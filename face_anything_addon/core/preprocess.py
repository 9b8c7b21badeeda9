# SPDX-License-Identifier: GPL-3.0-or-later
"""From a footage frame to the model's input: crop, resize with aspect kept, normalise.

Coordinates are continuous pixel coordinates: pixel i covers [i, i + 1) and its centre is i + 0.5,
in footage and in model input alike. A `Crop` maps model-input coordinates to footage coordinates
exactly (`u_footage = x0 + u_input / scale_x`), and so maps intrinsics back (`to_footage_intrinsics`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def model_input_size(width: float, height: float, longest: int, patch: int) -> tuple[int, int]:
    """(W, H) with the longest side `longest`, the aspect kept, each side a multiple of `patch`."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {width} x {height} is empty")
    scale = longest / max(width, height)
    w = max(patch, int(round(width * scale / patch)) * patch)
    h = max(patch, int(round(height * scale / patch)) * patch)
    return w, h


@dataclass(frozen=True)
class Crop:
    """A region of the footage [x0, x0 + width) x [y0, y0 + height) resampled to out_w x out_h."""

    x0: float
    y0: float
    width: float
    height: float
    out_w: int
    out_h: int

    @property
    def scale(self) -> tuple[float, float]:
        return self.out_w / self.width, self.out_h / self.height

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.x0, self.y0, self.x0 + self.width, self.y0 + self.height

    def to_footage(self, points: np.ndarray) -> np.ndarray:
        """Model-input pixel coordinates (..., 2) -> footage pixel coordinates."""
        sx, sy = self.scale
        return np.asarray(points, np.float64) / (sx, sy) + (self.x0, self.y0)

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """Footage pixel coordinates (..., 2) -> model-input pixel coordinates."""
        sx, sy = self.scale
        return (np.asarray(points, np.float64) - (self.x0, self.y0)) * (sx, sy)

    def to_footage_intrinsics(self, k: np.ndarray) -> np.ndarray:
        """3 x 3 intrinsics (..., 3, 3) in model-input pixels -> footage pixels."""
        sx, sy = self.scale
        a = np.array([[1 / sx, 0, self.x0], [0, 1 / sy, self.y0], [0, 0, 1]])
        return a @ np.asarray(k, np.float64)


def crop_for_box(box, out_w: int, out_h: int) -> Crop:
    """The smallest crop around `box` (x0, y0, x1, y1) whose aspect is out_w : out_h, same centre."""
    x0, y0, x1, y1 = map(float, box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    aspect = out_w / out_h
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    return Crop(cx - w / 2, cy - h / 2, w, h, out_w, out_h)


def full_frame_crop(width: int, height: int, longest: int, patch: int) -> Crop:
    """The whole frame, resized to the model's size (aspect kept up to the patch rounding)."""
    out_w, out_h = model_input_size(width, height, longest, patch)
    return Crop(0.0, 0.0, float(width), float(height), out_w, out_h)


def _resample_taps(start: float, length: float, n_out: int, n_in: int):
    """Indices and weights (n_out, taps) of a triangle filter that maps input samples [start,
    start + length) onto n_out output samples; widened when shrinking (anti-aliasing). Indices
    outside the image are clamped (edge pixels repeat)."""
    step = length / n_out
    support = max(step, 1.0)
    centres = start + (np.arange(n_out) + 0.5) * step - 0.5  # in input index space
    first = np.floor(centres - support).astype(np.int64) + 1
    taps = int(np.ceil(2 * support)) + 1
    idx = first[:, None] + np.arange(taps)[None, :]
    weights = np.clip(1.0 - np.abs(idx - centres[:, None]) / support, 0.0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.clip(idx, 0, n_in - 1), weights.astype(np.float32)


def _band_blocks(idx: np.ndarray, weights: np.ndarray, block: int):
    """Yields (out slice, first input index, dense block matrix) of a banded resampling matrix:
    output o = sum_t weights[o, t] * input[idx[o, t]], split into blocks of output samples."""
    n_out, taps = idx.shape
    for b in range(0, n_out, block):
        i, w = idx[b:b + block], weights[b:b + block]
        lo, hi = int(i.min()), int(i.max()) + 1
        m = np.zeros((len(i), hi - lo), np.float32)
        np.add.at(m, (np.repeat(np.arange(len(i)), taps), (i - lo).ravel()), w.ravel())
        yield slice(b, b + len(i)), lo, m


def _rows_pass(data: np.ndarray, idx: np.ndarray, weights: np.ndarray, block: int) -> np.ndarray:
    """(n_in, M) -> (n_out, M): a banded matrix applied from the left, block by block."""
    out = np.empty((idx.shape[0], data.shape[1]), np.float32)
    for rows, lo, m in _band_blocks(idx, weights, block):
        np.matmul(m, data[lo:lo + m.shape[1]], out=out[rows])
    return out


def _cols_pass(data: np.ndarray, idx: np.ndarray, weights: np.ndarray, c: int,
               block: int) -> np.ndarray:
    """(R, n_in * C) -> (R, n_out * C), channels interleaved: each block is
    (R, span * C) @ kron(block.T, I_C)."""
    out = np.empty((data.shape[0], idx.shape[0] * c), np.float32)
    eye = np.eye(c, dtype=np.float32)
    for cols, lo, m in _band_blocks(idx, weights, block):
        np.matmul(data[:, lo * c:(lo + m.shape[1]) * c], np.kron(m.T, eye),
                  out=out[:, cols.start * c:cols.stop * c])
    return out


def resample(image: np.ndarray, crop: Crop, block: int = 32) -> np.ndarray:
    """The crop of an H x W x C image resampled to crop.out_h x crop.out_w (float32).

    Separable and banded: each pass is a series of small dense matrix products (BLAS) over just
    the input samples a block of outputs touches, on strided views (no copies, no transposes).
    The pass order with fewer multiplications goes first. Only the rows and columns the filter
    reaches are read: an 8K frame's crop costs what the crop costs.
    """
    h, w = image.shape[:2]
    c = image.shape[2] if image.ndim == 3 else 1
    rows, row_w = _resample_taps(crop.y0, crop.height, crop.out_h, h)
    cols, col_w = _resample_taps(crop.x0, crop.width, crop.out_w, w)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    flat = np.asarray(image, dtype=np.float32).reshape(h, w * c)
    src = flat[r0:r1, c0 * c:c1 * c]  # a view
    rows, cols = rows - r0, cols - c0
    per_row = (r1 - r0) / crop.out_h + row_w.shape[1] / block  # input rows per output row
    per_col = (c1 - c0) / crop.out_w + col_w.shape[1] / block
    rows_first = crop.out_h * per_row * (c1 - c0) * c + crop.out_h * crop.out_w * per_col * c * c
    cols_first = (r1 - r0) * crop.out_w * per_col * c * c + crop.out_h * per_row * crop.out_w * c
    if rows_first <= cols_first:
        out = _cols_pass(_rows_pass(src, rows, row_w, block), cols, col_w, c, block)
    else:
        out = _rows_pass(_cols_pass(src, cols, col_w, c, block), rows, row_w, block)
    return out.reshape(crop.out_h, crop.out_w, c)


def normalise(image: np.ndarray, mean, std) -> np.ndarray:
    """H x W x 3 RGB in [0, 1] -> 3 x H x W float32, (clip(rgb, 0, 1) - mean) / std."""
    out = np.empty((3,) + image.shape[:2], np.float32)
    for ch in range(3):
        np.clip(image[..., ch], 0.0, 1.0, out=out[ch])
        out[ch] -= mean[ch]
        out[ch] *= 1.0 / std[ch]
    return out
