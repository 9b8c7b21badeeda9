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
    """

    number: int
    image: np.ndarray

    def __post_init__(self):
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.float32:
            raise ValueError(f"frame {self.number}: expected an H x W x 3 float32 image, got "
                             f"{self.image.dtype} {self.image.shape}")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.image.shape[1], self.image.shape[0]


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
