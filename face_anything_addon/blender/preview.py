# SPDX-License-Identifier: GPL-3.0-or-later
"""A preview picture: the tracked mesh and markers drawn over a few footage frames."""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..core.capture import Capture
from ..core.lens_distortion import footage_xy
from ..core.solve import project

SEEN, FILLED, MARKER, BOX = (0.2, 1.0, 0.3), (1.0, 0.55, 0.1), (1.0, 0.15, 0.15), (1.0, 0.95, 0.2)


def _dots(image: np.ndarray, xy: np.ndarray, colour, radius: int = 0) -> None:
    h, w = image.shape[:2]
    xy = xy[np.isfinite(xy).all(1)]
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            if radius and dx and dy:
                continue  # a cross for markers, a dot for vertices
            x = np.floor(xy[:, 0]).astype(int) + dx
            y = np.floor(xy[:, 1]).astype(int) + dy
            keep = (x >= 0) & (y >= 0) & (x < w) & (y < h)
            image[y[keep], x[keep]] = colour


def _outline(image: np.ndarray, box, colour, line: int = 1) -> None:
    """A box's outline (x0, y0, x1, y1 in image pixels), `line` pixels wide inside the box
    (so that shrinking the image by keeping every line-th pixel keeps it), clipped to the image."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = np.floor(np.asarray(box, np.float64)).astype(int)
    inside = np.zeros((h, w), bool)
    inside[max(y0, 0):max(y1 + 1, 0), max(x0, 0):max(x1 + 1, 0)] = True
    core = np.zeros((h, w), bool)
    core[max(y0 + line, 0):max(y1 + 1 - line, 0), max(x0 + line, 0):max(x1 + 1 - line, 0)] = True
    image[inside & ~core] = colour


def overlay(image: np.ndarray, capture: Capture, index: int,
            scale: tuple[float, float] = (1.0, 1.0), line: int = 1) -> np.ndarray:
    """The footage frame with the face box the network saw (yellow, `line` pixels wide), the
    mesh vertices (green: seen, orange: filled) and markers. scale: image pixels per footage
    pixel (`Frame.scale`; a reader may reduce large frames)."""
    out = image.copy()
    boxes = (getattr(capture, "settings", None) or {}).get("face_boxes")
    if boxes is not None:
        sx, sy = scale
        _outline(out, np.asarray(boxes[index], np.float64) * [sx, sy, sx, sy], BOX, line)
    xy = footage_xy(capture, project(capture.camera, capture.positions[index])) * scale
    seen = capture.visibility[index]
    _dots(out, xy[~seen], FILLED)
    _dots(out, xy[seen], SEEN)
    _dots(out, footage_xy(capture, capture.marker_xy[index]) * scale, MARKER, radius=3)
    return out


def write_preview(capture: Capture, footage, path, count: int = 4, width: int = 1600) -> Path:
    """Up to `count` frames spread over the shot, side by side, scaled to about `width` pixels."""
    numbers = list(capture.frame_numbers)
    picks = sorted({numbers[int(i)] for i in np.linspace(0, len(numbers) - 1, count)})
    tiles = []
    for frame in footage:
        if frame.number in picks:
            # the strip is shrunk by keeping every step-th pixel: outlines that wide survive it
            step = max(1, int(np.ceil(len(picks) * frame.image.shape[1] / width)))
            tiles.append(overlay(frame.image, capture, numbers.index(frame.number), frame.scale,
                                 line=step))
            if len(tiles) == len(picks):
                break
    strip = np.concatenate(tiles, axis=1)
    step = max(1, int(np.ceil(strip.shape[1] / width)))
    strip = np.clip(strip[::step, ::step], 0, 1)
    h, w = strip.shape[:2]
    rgba = np.concatenate([strip, np.ones((h, w, 1), np.float32)], 2)[::-1]
    path = Path(path)
    img = bpy.data.images.new(".face_anything_preview", w, h)
    try:
        img.pixels.foreach_set(rgba.astype(np.float32).ravel())
        img.filepath_raw = str(path)
        img.file_format = "PNG"
        img.save()
    finally:
        bpy.data.images.remove(img)
    return path
