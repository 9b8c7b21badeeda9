# SPDX-License-Identifier: GPL-3.0-or-later
"""Frames as core consumes them, and the one conversion from Blender's pixel layout.

Core never decodes files: it takes an iterator of `Frame`s. Readers (in `blender/footage.py`, using
Blender's own decoders) produce them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One frame of footage.

    number: the footage's own frame number (an image sequence's file number; a movie's 1-based frame).
    image:  H x W x 3 float32 RGB, top row first; display-referred values in [0, 1] (HDR footage may
            exceed 1; preprocessing clips).
    footage_size: (width, height) of the footage when `image` is a reduced copy of the frame (a
            reader shrinks large frames as it decodes them); None: the image is full size.
    pixel_scale: (sx, sy) image pixels per footage pixel when they are not the ratio of the sizes
            (a copy reduced in blocks of n x n pixels, whose last block may be partial: 1 / n);
            None: the ratio of the sizes.

    Everything 2D is measured in footage pixels (`size`): crops, face boxes, intrinsics, markers.
    A reduced image covers the same frame, so footage point (u, v) lies at (u * sx, v * sy) in
    it, with (sx, sy) = `scale` (pixel centres at integer + 0.5 in both).
    """

    number: int
    image: np.ndarray
    footage_size: tuple[int, int] | None = None
    pixel_scale: tuple[float, float] | None = None

    def __post_init__(self):
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.float32:
            raise ValueError(f"frame {self.number}: expected an H x W x 3 float32 image, got "
                             f"{self.image.dtype} {self.image.shape}")
        if self.footage_size is not None:
            width, height = map(int, self.footage_size)
            if width < self.image.shape[1] or height < self.image.shape[0]:
                raise ValueError(f"frame {self.number}: a {self.image.shape[1]} x "
                                 f"{self.image.shape[0]} image cannot be a reduced copy of a "
                                 f"{width} x {height} frame")
            object.__setattr__(self, "footage_size", (width, height))
        if self.pixel_scale is not None:
            sx, sy = map(float, self.pixel_scale)
            if self.footage_size is None or not (0 < sx <= 1 and 0 < sy <= 1):
                raise ValueError(f"frame {self.number}: pixel scale {self.pixel_scale} needs a "
                                 f"footage size and values in (0, 1]")
            object.__setattr__(self, "pixel_scale", (sx, sy))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the footage frame, in footage pixels."""
        return self.footage_size or self.image_size

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of `image` in pixels."""
        return self.image.shape[1], self.image.shape[0]

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): image pixels per footage pixel (1, 1 for a full-size image)."""
        if self.footage_size is None:
            return 1.0, 1.0
        if self.pixel_scale is not None:
            return self.pixel_scale
        return (self.image.shape[1] / self.footage_size[0],
                self.image.shape[0] / self.footage_size[1])


def reduced(frames, factor: int):
    """`frames` asked for frames up to `factor` times smaller than the footage, when it is a source
    that can make them (a reader's `reduced`, e.g. `blender.footage.Footage`); else `frames`
    unchanged. Core works on frames of any scale (everything is in footage pixels)."""
    reduce = getattr(frames, "reduced", None)
    return reduce(int(factor)) if reduce is not None else frames


def crop_reading(frames):
    """How to read `frames` for crops: (the frames to iterate, pixels), pixels(frame, crop) ->
    (image, crop in it): the image a crop (`preprocess.Crop`, in the frame image's pixels) is
    resampled from. A source that makes each frame's pixels from the frames it reads (e.g.
    `lens_distortion.UndistortedFrames`) hands those over (`as_read`) and makes only the pixels
    each crop reads (`crop_pixels`); any other gives its frames, and their images as they are."""
    pixels = getattr(frames, "crop_pixels", None)
    if pixels is None:
        return frames, _whole_image
    return frames.as_read, pixels


def _whole_image(frame: Frame, crop):
    return frame.image, crop


def reduced_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size a width x height frame is decoded at when its longest side may be at most
    `max_side` (0: no limit): the aspect kept, each side rounded, at least 1 pixel."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def from_blender_pixels(pixels: np.ndarray, width: int, height: int, channels: int = 4,
                        block: int = 1) -> np.ndarray:
    """Blender's flat pixel buffer (bottom row first, `channels` floats per pixel) -> H x W x 3 RGB,
    top row first. The only place that knows Blender's pixel order.

    block > 1: each output pixel is the mean of a block x block square of the frame (the last row
    and column of blocks average what is left: ceil(H / block) x ceil(W / block) out), computed in
    the same single read of the buffer that the copy to RGB makes, so a frame the model needs
    much smaller never exists at full size outside Blender. Pixel i then covers frame pixels
    [block * i, block * i + block): `Frame.pixel_scale` (1 / block)."""
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.size != width * height * channels:
        raise ValueError(f"{pixels.size} values do not make a {width} x {height} image with "
                         f"{channels} channels")
    image = pixels.reshape(height, width, channels)[::-1]
    if block > 1:
        return _block_mean(image, int(block))
    if channels >= 3:
        return np.ascontiguousarray(image[:, :, :3])
    return np.ascontiguousarray(np.repeat(image[:, :, :1], 3, axis=2))  # grey (or grey + alpha)


def block_size(width: int, height: int, block: int) -> tuple[int, int]:
    """(width, height) of a frame reduced in blocks of `block` pixels (the last ones partial)."""
    return -(-width // block), -(-height // block)


@lru_cache(maxsize=32)
def block_picks(k: int, channels: int, take: tuple[int, ...]) -> np.ndarray:
    """(k * channels, len(take)) 0/1 matrix: a row of k interleaved pixels times it is the sum of
    their channels `take` (the same channel may be taken twice). Read-only, shared."""
    picks = np.zeros((k * channels, len(take)), np.float32)
    for j in range(k):
        picks[j * channels + np.array(take), np.arange(len(take))] = 1.0
    picks.flags.writeable = False
    return picks


def _block_mean(image: np.ndarray, k: int) -> np.ndarray:
    """(H, W, C) any strides -> (ceil(H / k), ceil(W / k), 3) float32 means of k x k blocks (RGB
    from the first three channels, grey repeated). Rows: k-row sums of strided views, one read of
    the input; columns: each block row of k pixels times a 0/1 matrix that also picks the
    channels."""
    h, w, c = image.shape
    hb, wb = h // k, w // k
    out_w, out_h = block_size(w, h, k)
    rows = np.empty((out_h, w, c), np.float32)
    if hb:
        np.sum(image[:hb * k].reshape(hb, k, w, c), axis=1, out=rows[:hb])
    if h > hb * k:
        np.sum(image[hb * k:], axis=0, out=rows[hb])
    picks = block_picks(k, c, (0, 1, 2) if c >= 3 else (0, 0, 0))
    out = np.empty((out_h, out_w, 3), np.float32)
    if wb:
        np.matmul(rows[:, :wb * k].reshape(out_h, wb, k * c), picks, out=out[:, :wb])
    if w > wb * k:
        np.matmul(rows[:, wb * k:].reshape(out_h, 1, (w - wb * k) * c),
                  picks[:(w - wb * k) * c], out=out[:, wb:])
    counts = np.full((out_h, out_w, 1), float(k * k), np.float32)
    counts[hb:] *= (h - hb * k) / k
    counts[:, wb:] *= (w - wb * k) / k
    out /= counts
    return out
