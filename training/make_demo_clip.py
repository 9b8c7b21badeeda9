# SPDX-License-Identifier: GPL-3.0-or-later
"""Renders the bundled demo clip (demo/footage/*.jpg) with the synthetic data engine.

    .venv/bin/python -m training.make_demo_clip [--identity 7] [--clip 11] [--frames 48]

A talking, turning synthetic head (CC0 MakeHuman data); the JPEG files are written with Blender's
own encoder (bpy), quality 90. Deterministic in its seeds.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo" / "footage"


def render_clip(identity: int, clip: int, frames: int, width: int, height: int) -> np.ndarray:
    import torch

    from .head_model import load_head_model
    from .render import Renderer
    from .sequences import make_clip

    torch.set_num_threads(2)
    model = load_head_model()
    scene = make_clip(model, identity, clip, frames, height, width, props=False, effects=False)
    renderer = Renderer(model, "cpu")
    out = []
    for start in range(0, frames, 8):
        rgb = renderer.render(scene[start:start + 8], height, width)["rgb"]  # (B, 3, H, W)
        out.append(rgb.permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)  # (F, H, W, 3) uint8


def write_jpegs(rgb: np.ndarray, folder: Path, quality: int = 90) -> None:
    import bpy

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    h, w = rgb.shape[1:3]
    scene = bpy.context.scene
    scene.render.image_settings.file_format = "JPEG"
    scene.render.image_settings.quality = quality
    img = bpy.data.images.new("demo", w, h)
    for i, frame in enumerate(rgb, start=1):
        rgba = np.concatenate([frame / 255.0, np.ones((h, w, 1))], 2)[::-1]
        img.pixels.foreach_set(rgba.astype(np.float32).ravel())
        img.filepath_raw = str(folder / f"demo_{i:04d}.jpg")
        img.file_format = "JPEG"
        img.save()
    bpy.data.images.remove(img)


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--identity", type=int, default=7)
    p.add_argument("--clip", type=int, default=11)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--width", type=int, default=480)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    write_jpegs(render_clip(a.identity, a.clip, a.frames, a.width, a.height), a.out)
    print(f"wrote {a.frames} frames to {a.out}")


if __name__ == "__main__":
    main()
