# SPDX-License-Identifier: GPL-3.0-or-later
"""Small footage written with Blender itself, for the end-to-end tests."""
from pathlib import Path

import bpy
import numpy as np

W, H = 96, 72


def write_png(path: Path, rgb: np.ndarray) -> None:
    h, w = rgb.shape[:2]
    img = bpy.data.images.new("t", w, h)
    rgba = np.concatenate([rgb, np.ones((h, w, 1), np.float32)], 2)[::-1]
    img.pixels.foreach_set(rgba.astype(np.float32).ravel())
    img.filepath_raw = str(path)
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def textured_disc(i: int) -> np.ndarray:
    """A bright disc with a colour gradient fixed to it (so the tiny test model's canonical map
    moves with it), on a dark background; it moves 2 px right per frame."""
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    cx, cy, r = 40 + 2 * i, 36, 22
    u, v = (xx - cx) / r, (yy - cy) / r
    rgb = np.full((H, W, 3), 0.05, np.float32)
    inside = u ** 2 + v ** 2 < 1
    rgb[inside] = np.stack([0.65 + 0.3 * u, 0.65 + 0.3 * v, np.full_like(u, 0.75)], 2)[inside]
    return rgb


def disc_sequence(folder: Path, frames: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, frames + 1):
        write_png(folder / f"shot_{i:04d}.png", textured_disc(i))
    return folder
