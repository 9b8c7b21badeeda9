# SPDX-License-Identifier: GPL-3.0-or-later
"""From a footage frame to the model's input: crop, resize with aspect kept, normalise.

Coordinates are continuous pixel coordinates: pixel i covers [i, i + 1) and its centre is i + 0.5,
in footage and in model input alike. A `Crop` maps model-input coordinates to footage coordinates
exactly (`u_footage = x0 + u_input / scale_x`), and so maps intrinsics back (`to_footage_intrinsics`).
A frame the reader decoded at reduced size is resampled through `Crop.scaled`: the crop, and so
everything mapped back, stays in footage pixels.

`prepare` is the per-frame path: `resample_planar` (area average by an integer factor, then a
triangle filter; channels first, straight into the caller's buffer) and `normalise_planar` in place.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .frames import block_picks


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

    def scaled(self, sx: float, sy: float) -> "Crop":
        """The same region in the pixels of a copy of the footage scaled by (sx, sy) (a reduced
        frame, `Frame.scale`): the model input is unchanged."""
        if (sx, sy) == (1.0, 1.0):
            return self
        return Crop(self.x0 * sx, self.y0 * sy, self.width * sx, self.height * sy,
                    self.out_w, self.out_h)

    def shifted(self, dx: float, dy: float) -> "Crop":
        """The same region in the coordinates of an image whose origin lies at (-dx, -dy) in
        this one's: `shifted(-x0, -y0)` for the part of the image from (x0, y0) on
        (`read_region`)."""
        return Crop(self.x0 + dx, self.y0 + dy, self.width, self.height, self.out_w, self.out_h)

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


# OpenBLAS runs a matrix product on one thread when m * n * k is at most this. Above it, it wakes
# its worker threads, which then busy-wait for a while after the product and take the CPU from
# ONNX Runtime's next run; every product here is cut to stay below it.
_ONE_THREAD_MNK = 262144
# With reduction, the triangle filter still shrinks by at least this factor after the area
# average: then as anti-aliased as the triangle alone (measured on sines: passband within 0.04
# of it, aliasing no stronger), where averaging down to a factor of 1 to 2 aliases up to 0.5.
_FINE_FACTOR = 1.5


def _area_factor(length: float, n_out: int) -> int:
    """The integer area reduction of one axis shrunk from `length` to `n_out` samples: as much
    as leaves the triangle filter at least _FINE_FACTOR to do."""
    return max(1, int(length / n_out / _FINE_FACTOR))


def reduction_factor(crop: Crop) -> int:
    """How many times smaller than the footage a frame may be for this crop and lose nothing its
    resampling keeps: the integer area reduction `resample_planar` makes first (the smaller of
    the two axes'). A reader can make it as it copies the frame out (`Frame.pixel_scale`)."""
    return min(_area_factor(crop.width, crop.out_w), _area_factor(crop.height, crop.out_h))


def _axis(start: float, length: float, n_out: int, n_in: int, k: int):
    """One axis of a resampling: (a, m, idx, weights). Reduced sample i (0 <= i < m) is the sum
    of the k input samples a + k i ... a + k i + k - 1 (clamped to the image: edges repeat); the
    fine filter maps the reduced samples onto n_out outputs (idx into [0, m), weights that sum
    to 1 per output). k = 1: no reduction, idx are input indices minus a."""
    if k == 1:
        idx, weights = _resample_taps(start, length, n_out, n_in)
        a = int(idx.min())
        return a, int(idx.max()) + 1 - a, idx - a, weights
    # on the frame's own k-grid (every crop of a frame sees the same reduced samples), with a
    # margin each side wider than the fine filter's support (in reduced samples)
    pad = int(np.ceil(length / (k * n_out))) + 1
    a = k * (int(np.floor(start / k)) - pad)
    m = int(np.ceil((start + length - a) / k)) + pad + 1
    idx, weights = _resample_taps((start - a) / k, length / k, n_out, m)
    return a, m, idx, weights


def _inside(a: int, m: int, k: int, n: int) -> tuple[int, int, int, int]:
    """Reduced samples by where their k input samples a + k i ... lie: [0, b0) all before the
    frame, [b0, i0) partly, [i0, i1) all inside [0, n), [i1, b1) partly, [b1, m) all after."""
    i0 = min(m, max(0, -(a // k)))
    i1 = max(i0, min(m, (n - a) // k))
    b0 = min(i0, max(0, (-a) // k))
    b1 = max(i1, min(m, -((a - n) // k)))
    return b0, i0, i1, b1


def _box_rows(src: np.ndarray, a: int, m: int, k: int) -> np.ndarray:
    """(n, N) -> (m, N): row i = sum of rows a + k i ... a + k i + k - 1 (clamped: edge rows
    repeat). One read of the rows it covers (strided views, no copy of the source)."""
    n = src.shape[0]
    out = np.empty((m, src.shape[1]), np.float32)
    b0, i0, i1, b1 = _inside(a, m, k, n)
    if i1 > i0:
        np.sum(src[a + k * i0:a + k * i1].reshape(i1 - i0, k, -1), axis=1, out=out[i0:i1])
    np.multiply(src[0], np.float32(k), out=out[:b0])
    np.multiply(src[n - 1], np.float32(k), out=out[b1:])
    for i in (*range(b0, i0), *range(i1, b1)):  # blocks across the frame's edge
        np.sum(src[np.clip(np.arange(a + k * i, a + k * i + k), 0, n - 1)], axis=0, out=out[i])
    return out


def _box_cols_planar(src: np.ndarray, a: int, m: int, k: int, c: int) -> np.ndarray:
    """(R, n * C) channels interleaved -> (C, R, m) planar: column i = sum of columns a + k i ...
    a + k i + k - 1 (clamped). k = 1: the columns [a, a + m) de-interleaved."""
    rows, n = src.shape[0], src.shape[1] // c
    pixels = src.reshape(rows, n, c)
    out = np.empty((c, rows, m), np.float32)
    b0, i0, i1, b1 = _inside(a, m, k, n)
    if i1 > i0:
        view = pixels[:, a + k * i0:a + k * i1]
        if k == 1:
            for ch in range(c):
                np.copyto(out[ch, :, i0:i1], view[:, :, ch])
        else:  # each block of k pixels is one row of k * c values: a product with a 0/1 matrix
            picks = block_picks(k, c, tuple(range(c)))
            np.matmul(view.reshape(rows, i1 - i0, k * c), picks,  # one small product a row
                      out=out[:, :, i0:i1].transpose(1, 2, 0))
    out[:, :, :b0] = (pixels[:, 0].T * np.float32(k))[:, :, None]
    out[:, :, b1:] = (pixels[:, n - 1].T * np.float32(k))[:, :, None]
    for i in (*range(b0, i0), *range(i1, b1)):
        cols = np.clip(np.arange(a + k * i, a + k * i + k), 0, n - 1)
        out[:, :, i] = pixels[:, cols].sum(axis=1).T
    return out


def _band(idx: np.ndarray, weights: np.ndarray, block: int):
    """The banded matrix of (idx, weights), cut into blocks of `block` output samples: (dense
    blocks (nb, block, span), first input sample (nb,), end (nb,)). Clamped taps add up."""
    n_out, taps = idx.shape
    nb = -(-n_out // block)
    pad = nb * block - n_out
    if pad:
        idx = np.concatenate([idx, np.repeat(idx[-1:], pad, 0)])
        weights = np.concatenate([weights, np.zeros((pad, taps), weights.dtype)])
    grouped = idx.reshape(nb, block * taps)
    lo, hi = grouped.min(axis=1), grouped.max(axis=1) + 1
    span = int((hi - lo).max())
    flat = (np.arange(nb * block)[:, None] * span + (idx - np.repeat(lo, block)[:, None]))
    dense = np.bincount(flat.ravel(), weights.ravel().astype(np.float64), nb * block * span)
    return dense.astype(np.float32).reshape(nb, block, span), lo, hi


_ROW_BLOCK, _COL_BLOCK = 8, 16  # output rows / columns per banded block


def _rows_pass(data: np.ndarray, band, n_out: int, block: int = _ROW_BLOCK) -> np.ndarray:
    """(..., n, N) -> (..., n_out, N): out[..., o, :] = sum_t w[o, t] * data[..., idx[o, t], :]
    with `band` = `_band(idx, w, block)`. Each block of output rows is a small matrix times just
    the input rows it touches (a strided view), cut along N to stay on one BLAS thread."""
    dense, lo, hi = band
    width = data.shape[-1]
    out = np.empty(data.shape[:-2] + (n_out, width), np.float32)
    chunk = max(1, _ONE_THREAD_MNK // (block * dense.shape[2]))
    for j in range(dense.shape[0]):
        r0, r1 = j * block, min((j + 1) * block, n_out)
        m = dense[j, :r1 - r0, :hi[j] - lo[j]]
        for s in range(0, width, chunk):
            np.matmul(m, data[..., lo[j]:hi[j], s:s + chunk], out=out[..., r0:r1, s:s + chunk])
    return out


def _cols_pass(data: np.ndarray, band, n_out: int, out: np.ndarray,
               block: int = _COL_BLOCK) -> np.ndarray:
    """(C, R, n) -> out (C, R, n_out): out[..., o] = sum_t w[o, t] * data[..., idx[o, t]] with
    `band` = `_band(idx, w, block)`. Blocks of output columns, each the input columns it touches
    times a small matrix, cut along R to stay on one BLAS thread; written in place into `out`."""
    dense, lo, hi = band
    rows = data.shape[1]
    chunk = max(1, _ONE_THREAD_MNK // (block * dense.shape[2]))
    for j in range(dense.shape[0]):
        o0, o1 = j * block, min((j + 1) * block, n_out)
        m = dense[j, :o1 - o0, :hi[j] - lo[j]].T
        for s in range(0, rows, chunk):
            np.matmul(data[:, s:s + chunk, lo[j]:hi[j]], m, out=out[:, s:s + chunk, o0:o1])
    return out


def resample_planar(image: np.ndarray, crop: Crop, reduce: bool = True,
                    out: np.ndarray | None = None) -> np.ndarray:
    """The crop of an H x W x C image (or H x W) resampled to C x crop.out_h x crop.out_w float32
    (channels first, as the model takes them), written into `out` when given.

    Anti-aliased and separable. With `reduce`, an axis shrunk by a factor s >= 3 is
    first reduced by the integer k = floor(s / 1.5) with an area average on the frame's k-grid
    (sums of strided views: one read of the pixels), then resampled by the remaining 1.5 to 3
    with a triangle filter as wide as that factor; without it, one triangle filter as wide as s
    (the reference). Both map pixel centres exactly (`Crop`), repeat edge pixels past the frame,
    and read only the pixels the crop needs (an 8K frame's crop costs what the crop costs). A
    float32 C-contiguous image is never copied whole.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    ky, kx, ay, my, ax, mx, c0, c1, row_band, col_band = _plan(crop, h, w, reduce)
    src = img.reshape(h, w * c)[:, c0 * c:c1 * c]
    src = src[ay:ay + my] if ky == 1 else _box_rows(src, ay, my, ky)
    if kx > 1:  # columns reduced first: the row filter then works on fewer of them
        half = _rows_pass(_box_cols_planar(src, ax - c0, mx, kx, c), row_band, crop.out_h)
    else:  # rows filtered first, on the interleaved pixels: fewer rows to de-interleave
        half = _box_cols_planar(_rows_pass(src, row_band, crop.out_h), ax - c0, mx, 1, c)
    if out is None:
        out = np.empty((c, crop.out_h, crop.out_w), np.float32)
    return _cols_pass(half, col_band, crop.out_w, out)


@lru_cache(maxsize=16)
def _plan(crop: Crop, h: int, w: int, reduce: bool):
    """Everything of a resampling that depends only on the crop and the image size (reduction
    factors, the samples read, the banded filter matrices), kept for the next frames with the
    same crop (a whole-frame or fixed-box run computes it once). Arrays read-only."""
    ky = _area_factor(crop.height, crop.out_h) if reduce else 1
    kx = _area_factor(crop.width, crop.out_w) if reduce else 1
    ay, my, rows, row_w = _axis(crop.y0, crop.height, crop.out_h, h, ky)
    ax, mx, cols, col_w = _axis(crop.x0, crop.width, crop.out_w, w, kx)
    c0 = min(max(ax, 0), w - 1)  # the image columns the reduced columns read
    c1 = max(min(ax + kx * mx, w), c0 + 1)
    row_band = _band(rows, row_w * np.float32(1.0 / ky), _ROW_BLOCK)
    col_band = _band(cols, col_w * np.float32(1.0 / kx), _COL_BLOCK)
    for a in (*row_band, *col_band):
        a.flags.writeable = False
    return ky, kx, ay, my, ax, mx, c0, c1, row_band, col_band


def read_region(crop: Crop, h: int, w: int, reduce: bool = True) -> tuple[int, int, int, int]:
    """The part (x0, y0, x1, y1) of an h x w image that resampling `crop` reads: inside the
    image, its origin on the area reduction's grid, so that resampling
    `crop.shifted(-x0, -y0)` from image[y0:y1, x0:x1] gives what resampling `crop` from the
    image gives (a source that makes its pixels, e.g. undistorts them, makes only these)."""
    ky, kx, ay, my, _, _, c0, c1, _, _ = _plan(crop, h, w, reduce)
    # as the columns (c0, c1): the first row read (on the ky-grid), or the frame's edge row
    # where every row read is clamped to it
    y0 = min(max(ay, 0), h - 1)
    y1 = max(min(ay + ky * my, h), y0 + 1)
    return c0, y0, c1, y1


def resample(image: np.ndarray, crop: Crop, reduce: bool = True) -> np.ndarray:
    """As `resample_planar`, channels last: crop.out_h x crop.out_w x C."""
    return resample_planar(image, crop, reduce).transpose(1, 2, 0)


def normalise_planar(x: np.ndarray, mean, std) -> np.ndarray:
    """In place: 3 x H x W RGB -> (clip(rgb, 0, 1) - mean) / std per channel."""
    np.minimum(x, np.float32(1.0), out=x)
    np.maximum(x, np.float32(0.0), out=x)
    x -= np.asarray(mean, np.float32).reshape(-1, 1, 1)
    x *= (1.0 / np.asarray(std, np.float32)).reshape(-1, 1, 1)
    return x


def normalise(image: np.ndarray, mean, std) -> np.ndarray:
    """H x W x 3 RGB in [0, 1] -> 3 x H x W float32, (clip(rgb, 0, 1) - mean) / std."""
    return normalise_planar(np.array(np.moveaxis(image, 2, 0), np.float32), mean, std)


def prepare(image: np.ndarray, crop: Crop, mean, std, out: np.ndarray | None = None) -> np.ndarray:
    """Crop, resize and normalise in one go: the model input 3 x crop.out_h x crop.out_w."""
    return normalise_planar(resample_planar(image, crop, out=out), mean, std)
