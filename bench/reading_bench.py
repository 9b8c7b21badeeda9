# SPDX-License-Identifier: GPL-3.0-or-later
"""Frame reading speed of the add-on's footage readers (Blender's own decoders), ms per 1080p frame.

Writes JPEG, PNG and EXR sequences and an H.264 movie (rendered by Blender's sequencer through its
FFmpeg writer) into a temporary folder, then times `open_footage` + full iteration; and an 8K PNG
sequence read as the readers do by default (reduced to 2048 x 1152 inside Blender) and at full size;
and the JPEG sequence read through a Movie Clip camera's lens distortion undone
(`core.lens_distortion.UndistortedFrames`, as Reconstruct reads a distorted clip): whole frames,
and a 560-pixel face crop read and prepared for the bundled 196-pixel network as the pipeline
reads it (`core.frames.crop_reading`: only the crop's pixels are undistorted).
Run: .venv/bin/python -m bench.reading_bench [--frames N]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

WIDTH, HEIGHT = 1920, 1080


def footage_like_image(i: int):
    """Smooth shapes and mild noise: compresses like camera footage, unlike pure noise."""
    import numpy as np

    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    r = 0.5 + 0.4 * np.sin(xx / 97 + i / 5) * np.cos(yy / 131)
    g = 0.5 + 0.4 * np.sin((xx + yy) / 173 - i / 7)
    b = 0.5 + 0.3 * np.cos(np.hypot(xx - 960, yy - 540) / 60 - i / 3)
    noise = np.random.default_rng(i).normal(0, 0.02, (HEIGHT, WIDTH, 1)).astype(np.float32)
    rgb = np.clip(np.stack([r, g, b], 2) + noise, 0, 1)
    rgba = np.concatenate([rgb, np.ones((HEIGHT, WIDTH, 1), np.float32)], 2)
    return rgba[::-1].ravel()  # Blender's order: bottom row first


def write_sequences(folder: Path, frames: int) -> dict[str, Path]:
    import bpy

    out = {}
    for fmt, ext, settings in (("JPEG", "jpg", {"quality": 90}), ("PNG", "png", {}),
                               ("OPEN_EXR", "exr", {"exr_codec": "ZIP"})):
        seq = folder / fmt.lower()
        seq.mkdir()
        img = bpy.data.images.new("bench", WIDTH, HEIGHT, float_buffer=fmt == "OPEN_EXR")
        scene = bpy.context.scene
        scene.render.image_settings.file_format = fmt
        for k, v in settings.items():
            setattr(scene.render.image_settings, k, v)
        for i in range(1, frames + 1):
            img.pixels.foreach_set(footage_like_image(i))
            img.save_render(str(seq / f"frame_{i:04d}.{ext}"), scene=scene)
        bpy.data.images.remove(img)
        out[fmt] = seq
    return out


def write_movie(png_folder: Path, path: Path, frames: int) -> Path:
    """H.264 from the PNG sequence through Blender's sequencer and FFmpeg writer."""
    import bpy

    scene = bpy.context.scene
    scene.sequence_editor_create()
    files = sorted(png_folder.iterdir())
    editor = scene.sequence_editor
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences  # 5.0 / 4.2
    strip = strips.new_image("footage", str(files[0]), 1, 1)
    for f in files[1:]:
        strip.elements.append(f.name)
    scene.frame_start, scene.frame_end = 1, frames
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = WIDTH, HEIGHT, 100
    if hasattr(r.image_settings, "media_type"):
        r.image_settings.media_type = "VIDEO"
    r.image_settings.file_format = "FFMPEG"
    r.ffmpeg.format, r.ffmpeg.codec = "MPEG4", "H264"
    r.ffmpeg.constant_rate_factor = "HIGH"
    r.use_sequencer = True
    r.filepath = str(path)
    bpy.ops.render.render(animation=True)
    written = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    return written[0]


def write_8k_sequence(folder: Path, frames: int) -> Path:
    """7680 x 4320 PNGs: drawn small, enlarged by Blender (no 8K array in Python)."""
    import bpy
    import numpy as np

    folder.mkdir()
    for i in range(1, frames + 1):
        img = bpy.data.images.new("bench8k", 192, 108)
        yy, xx = np.mgrid[0:108, 0:192] / 100.0
        rgba = np.stack([np.sin(xx + i) ** 2, np.cos(yy) ** 2, 0.5 + 0 * xx, 1 + 0 * xx], 2)
        img.pixels.foreach_set(rgba[::-1].astype(np.float32).ravel())
        img.scale(7680, 4320)
        img.filepath_raw, img.file_format = str(folder / f"uhd_{i:04d}.png"), "PNG"
        img.save()
        bpy.data.images.remove(img)
    return folder


FACE_BOX = (680.0, 260.0, 1240.0, 820.0)  # a face 560 pixels tall in 1080p


def time_reading(path: Path, reduction: int = 1, undistort: bool = False, face_crop: bool = False,
                 **options) -> dict:
    """ms per frame to read the footage; face_crop: and prepare the network's input of
    FACE_BOX from each frame, as the pipeline does (reduced as far as the crop allows)."""
    from face_anything_addon.blender.footage import open_footage
    from face_anything_addon.core.frames import crop_reading
    from face_anything_addon.core.lens_distortion import LensDistortion, UndistortedFrames
    from face_anything_addon.core.preprocess import crop_for_box, prepare, reduction_factor

    footage = open_footage(path, **options)
    if undistort:  # a wide lens's barrel distortion, Blender's Polynomial model
        lens = LensDistortion("POLYNOMIAL", (-0.12, 0.02, 0.0), 1400.0,
                              (WIDTH / 2, HEIGHT / 2), (WIDTH, HEIGHT))
        footage = UndistortedFrames(footage, lens)
    crop = crop_for_box(FACE_BOX, 196, 196)
    if face_crop:
        reduction = reduction_factor(crop)
    footage = footage.reduced(reduction)
    frames, pixels = crop_reading(footage) if face_crop else (footage, None)
    t0 = time.perf_counter()
    n = 0
    for frame in frames:
        if face_crop:
            image, in_image = pixels(frame, crop.scaled(*frame.scale))
            prepare(image, in_image, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        n += 1
    elapsed = time.perf_counter() - t0
    return {"frames": n, "ms_per_frame": round(1000 * elapsed / n, 1),
            "size": list(footage.size), "read_size": list(footage.read_size)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=24)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fa-read-bench-") as tmp:
        os.environ.setdefault("BLENDER_USER_RESOURCES", str(Path(tmp) / "blender"))
        import bpy

        folder = Path(tmp)
        seqs = write_sequences(folder, a.frames)
        movie = write_movie(seqs["PNG"], folder / "movie.mp4", a.frames)
        results = {name: time_reading(path) for name, path in
                   (("JPEG sequence", seqs["JPEG"]), ("PNG sequence", seqs["PNG"]),
                    ("EXR sequence (ZIP, float)", seqs["OPEN_EXR"]), ("H.264 movie", movie))}
        # as the pipeline asks for the bundled 140-pixel model on whole frames
        for name, path in (("JPEG sequence", seqs["JPEG"]), ("H.264 movie", movie)):
            results[f"{name}, in blocks of 6 (bundled model, whole frame)"] = \
                time_reading(path, reduction=6)
        results["JPEG sequence, lens distortion undone"] = time_reading(seqs["JPEG"],
                                                                        undistort=True)
        results["JPEG sequence, in blocks of 6, lens distortion undone"] = \
            time_reading(seqs["JPEG"], reduction=6, undistort=True)
        results["JPEG sequence, a 560-pixel face crop prepared for the network"] = \
            time_reading(seqs["JPEG"], face_crop=True)
        results["JPEG sequence, a 560-pixel face crop prepared, lens distortion undone"] = \
            time_reading(seqs["JPEG"], face_crop=True, undistort=True)
        uhd = write_8k_sequence(folder / "uhd", max(2, a.frames // 8))
        results["8K PNG sequence, read at 2048 x 1152"] = time_reading(uhd)
        results["8K PNG sequence, read at full size"] = time_reading(uhd, max_side=0)
        results["blender"] = bpy.app.version_string
    json.dump(results, sys.stdout)
    print()


if __name__ == "__main__":
    main()
