# SPDX-License-Identifier: GPL-3.0-or-later
"""Frames as core consumes them, and the one conversion from Blender's pixel layout.

Core never decodes files: it takes an iterator of `Frame`s. Readers (in `blender/footage.py`, using
Blender's own decoders) produce them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One frame of footage.

    number: the footage's own frame number (an image sequence's file number; a movie's 1-based frame).
    image:  H x W x 3 float32 RGB, top row first; display-referred values in [0, 1] (HDR footage may
            exceed 1; preprocessing clips).
    footage_size: (width, height) of the footage when `image` is a reduced copy of the frame (a
            reader shrinks large frames as it decodes them); None: the image is full size.

    Everything 2D is measured in footage pixels (`size`): crops, face boxes, intrinsics, markers.
    A reduced image covers the same frame, so footage point (u, v) lies at (u * sx, v * sy) in
    it, with (sx, sy) = `scale` (pixel centres at integer + 0.5 in both).
    """

    number: int
    image: np.ndarray
    footage_size: tuple[int, int] | None = None

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
        return (self.image.shape[1] / self.footage_size[0],
                self.image.shape[0] / self.footage_size[1])


def reduced_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size a width x height frame is decoded at when its longest side may be at most
    `max_side` (0: no limit): the aspect kept, each side rounded, at least 1 pixel."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def from_blender_pixels(pixels: np.ndarray, width: int, height: int, channels: int = 4) -> np.ndarray:
    """Blender's flat pixel buffer (bottom row first, `channels` floats per pixel) -> H x W x 3 RGB,
    top row first. The only place that knows Blender's pixel order."""
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.size != width * height * channels:
        raise ValueError(f"{pixels.size} values do not make a {width} x {height} image with "
                         f"{channels} channels")
    image = pixels.reshape(height, width, channels)[::-1]
    if channels >= 3:
        return np.ascontiguousarray(image[:, :, :3])
    return np.ascontiguousarray(np.repeat(image[:, :, :1], 3, axis=2))  # grey (or grey + alpha)
