# SPDX-License-Identifier: GPL-3.0-or-later
"""Footage readers on Blender's own decoders: image sequences, movies and Movie Clips.

All test footage is written here by Blender itself (images: `images.new` + `save`/`save_render`;
the movie: Cycles at 64 x 48, 1 sample, through Blender's FFmpeg writer).
"""
import time
from pathlib import Path

import bpy
import numpy as np
import pytest

from face_anything_addon.blender import footage as fo
from face_anything_addon.core.errors import FootageError
from face_anything_addon.core.frames import Frame

W, H = 32, 24
BYTE = 0.5 / 255 + 1e-6  # an 8-bit value read back exactly
# The movie's background per frame (linear), and as displayed (the 'Standard' view is plain sRGB).
MOVIE_COLOURS = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (0.2, 0.2, 0.2)]
MOVIE_SIZE = (64, 48)


def pattern(tag: float, width: int = W, height: int = H) -> np.ndarray:
    """H x W x 3, top row first: red grows to the right, green downwards, blue = tag, and the
    top-left 4 x 4 corner white, so that any flip or channel swap shows."""
    rgb = np.empty((height, width, 3), np.float32)
    rgb[..., 0] = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    rgb[..., 1] = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    rgb[..., 2] = tag
    rgb[:4, :4] = 1.0
    return rgb


def as_bytes(rgb: np.ndarray) -> np.ndarray:
    return np.round(rgb * 255) / 255


FORMATS = {".png": "PNG", ".jpg": "JPEG", ".tif": "TIFF", ".bmp": "BMP", ".exr": "OPEN_EXR"}


def write_image(path: Path, rgb: np.ndarray, depth: str = "8") -> Path:
    """Write `rgb` (top row first) with Blender. 8-bit: `Image.save`, which stores the bytes as set.
    EXR and 16-bit: `save_render` from a float image (EXR stores the floats as they are; 16-bit
    stores the 'Standard' view, i.e. sRGB-encoded values)."""
    height, width = rgb.shape[:2]
    file_format = FORMATS[path.suffix]
    use_float = file_format == "OPEN_EXR" or depth == "16"
    img = bpy.data.images.new("writer", width, height, float_buffer=use_float)
    try:
        rgba = np.concatenate([rgb, np.ones((height, width, 1), np.float32)], axis=2)[::-1]
        img.pixels.foreach_set(rgba.ravel())
        if use_float:
            scene = bpy.context.scene
            scene.view_settings.view_transform = "Standard"
            settings = scene.render.image_settings
            settings.file_format = file_format
            settings.color_mode = "RGB"
            settings.color_depth = "32" if file_format == "OPEN_EXR" else depth
            img.save_render(str(path), scene=scene)
        else:
            img.filepath_raw = str(path)
            img.file_format = file_format
            img.save(quality=95)
    finally:
        bpy.data.images.remove(img)
    return path


def write_sequence(folder: Path, names_tags, **kw) -> Path:
    folder.mkdir(exist_ok=True)
    for name, tag in names_tags:
        write_image(folder / name, as_bytes(pattern(tag)), **kw)
    return folder


def datablocks() -> dict:
    return {"images": sorted(i.name for i in bpy.data.images),
            "textures": sorted(t.name for t in bpy.data.textures)}


def mean_colour(frame: Frame) -> np.ndarray:
    return frame.image.reshape(-1, 3).mean(axis=0)


# --------------------------------------------------------------------------------- image folders

def test_png_sequence_round_trips_bytes_top_row_first(tmp_path, empty_file):
    folder = write_sequence(tmp_path / "shot", [(f"shot_{i:04d}.png", i / 10) for i in (1, 2, 3)])
    footage = fo.open_footage(str(folder))
    assert (footage.kind, footage.name, footage.size) == ("SEQUENCE", "shot", (W, H))
    assert footage.frame_numbers == [1, 2, 3] and len(footage) == 3
    started = time.perf_counter()
    frames = list(footage)
    ms = (time.perf_counter() - started) / len(frames) * 1000
    print(f"PNG {W}x{H}: {ms:.2f} ms/frame")
    for frame, number in zip(frames, (1, 2, 3)):
        assert isinstance(frame, Frame) and frame.number == number
        assert frame.image.dtype == np.float32 and frame.image.shape == (H, W, 3)
        assert np.abs(frame.image - as_bytes(pattern(number / 10))).max() <= BYTE
        image = frame.image
        np.testing.assert_allclose(image[0, 0], [1, 1, 1], atol=BYTE)  # the marked corner
        np.testing.assert_allclose(image[-1, 0], [0, 1, as_bytes(number / 10)], atol=BYTE)
        np.testing.assert_allclose(image[0, -1], [1, 0, as_bytes(number / 10)], atol=BYTE)
    assert [f.number for f in footage] == [1, 2, 3]  # iterable again


@pytest.mark.parametrize("ext, tolerance", [("jpg", None), ("tif", BYTE), ("bmp", BYTE)])
def test_8bit_formats(tmp_path, empty_file, ext, tolerance):
    folder = write_sequence(tmp_path / ext, [(f"f_{i}.{ext}", i / 4) for i in (1, 2)])
    frames = list(fo.open_footage(folder))
    assert [f.number for f in frames] == [1, 2]
    for frame, number in zip(frames, (1, 2)):
        error = np.abs(frame.image - as_bytes(pattern(number / 4)))
        if tolerance is None:  # JPEG: lossy, judged on the whole and on the orientation marks
            assert error.mean() < 0.02 and error.max() < 0.25, (error.mean(), error.max())
            assert frame.image[:3, :3].min() > 0.85  # the white corner is top-left
            assert frame.image[-1, :, 1].mean() > 0.9 and frame.image[0, 4:, 1].mean() < 0.1
        else:
            assert error.max() <= tolerance


def test_exr_is_encoded_from_linear_to_srgb(tmp_path, empty_file):
    linear = pattern(0.25) * 0.5
    linear[-1, -1] = 3.0  # HDR stays above 1
    folder = tmp_path / "exr"
    folder.mkdir()
    for i in (1, 2):
        write_image(folder / f"beauty.{i:03d}.exr", linear * i)
    frames = list(fo.open_footage(folder))
    assert [f.number for f in frames] == [1, 2]
    for frame, i in zip(frames, (1, 2)):
        np.testing.assert_allclose(frame.image, fo.linear_to_srgb(linear * i), atol=1e-5)
        assert frame.image[-1, -1, 0] > 1.0
    np.testing.assert_allclose(frames[0].image[0, 0], fo.linear_to_srgb(np.float32(0.5)), atol=1e-5)


def test_16bit_png_is_read_as_stored_not_linearised(tmp_path, empty_file):
    linear = pattern(0.6)
    folder = tmp_path / "deep"
    folder.mkdir()
    write_image(folder / "deep_1.png", linear, depth="16")  # stores sRGB-encoded 16-bit values
    (frame,) = fo.open_footage(folder)
    np.testing.assert_allclose(frame.image, fo.linear_to_srgb(linear), atol=2e-3)


def test_linear_to_srgb_known_values():
    x = np.array([0.0, 0.0031308, 0.18, 1.0, 2.0, -1.0, np.nan], np.float32)
    y = fo.linear_to_srgb(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [0, 0.0404499, 0.4613561, 1.0, 1.353256, 0, 0], atol=1e-6)


def test_natural_sort_keeps_gaps(tmp_path, empty_file):
    numbers = [10, 2, 5, 1, 3]
    folder = write_sequence(tmp_path / "gaps", [(f"frame{n}.png", n / 20) for n in numbers])
    footage = fo.open_footage(folder)
    assert footage.frame_numbers == [1, 2, 3, 5, 10]
    blues = [round(float(f.image[5, 5, 2]) * 20) for f in footage]  # tag = number / 20
    assert blues == [1, 2, 3, 5, 10]
    assert sorted(["frame10.png", "frame2.png"], key=fo.natural_key) == ["frame2.png",
                                                                         "frame10.png"]


def test_frame_range(tmp_path, empty_file):
    folder = write_sequence(tmp_path / "r", [(f"r_{n:02d}.png", n / 20) for n in (1, 2, 3, 5, 10)])
    footage = fo.open_footage(folder, frame_range=(2, 5))
    assert footage.frame_numbers == [2, 3, 5]
    assert [f.number for f in footage] == [2, 3, 5]
    with pytest.raises(FootageError, match="no frames"):
        fo.open_footage(folder, frame_range=(11, 20))
    with pytest.raises(FootageError, match="empty"):
        fo.open_footage(folder, frame_range=(5, 2))


def test_one_file_opens_its_own_sequence(tmp_path, empty_file):
    folder = write_sequence(tmp_path / "mixed", [("shot_01.png", 0.1), ("shot_02.png", 0.2),
                                                  ("matte_01.png", 0.9), ("still.png", 0.5)])
    assert fo.open_footage(folder / "shot_02.png").frame_numbers == [1, 2]
    (still,) = fo.open_footage(folder / "still.png")
    assert still.number == 1 and abs(still.image[5, 5, 2] - as_bytes(0.5)) <= BYTE


# ----------------------------------------------------------------------------------------- errors

def test_missing_path(tmp_path):
    with pytest.raises(FootageError, match="not found.*nowhere"):
        fo.open_footage(tmp_path / "nowhere")


def test_empty_folder_names_folder_and_extensions(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(FootageError) as err:
        fo.open_footage(tmp_path)
    assert str(tmp_path) in str(err.value) and ".png" in str(err.value) and ".exr" in str(err.value)


@pytest.mark.parametrize("names, expect", [
    (["a.png", "b_1.png"], r"no frame number.*a\.png"),
    (["a_1.png", "a_01.png"], r"a_0?1\.png and a_0?1\.png \(frame 1\)"),
    (["f_1.png", "f_2.jpg"], r"mixes image types.*f_1\.png.*f_2\.jpg"),
])
def test_ambiguous_folders_are_refused(tmp_path, empty_file, names, expect):
    write_sequence(tmp_path / "bad", [(name, 0.5) for name in names])
    with pytest.raises(FootageError, match=expect):
        fo.open_footage(tmp_path / "bad")


def test_mixed_sizes_name_the_file_and_both_sizes(tmp_path, empty_file):
    folder = write_sequence(tmp_path / "sizes", [("s_1.png", 0.1), ("s_2.png", 0.2)])
    write_image(folder / "s_3.png", as_bytes(pattern(0.3, 16, 12)))
    got = []
    with pytest.raises(FootageError, match=r"s_3\.png is 16x12 but the first frame \(s_1\.png\) "
                                           r"is 32x24"):
        for frame in fo.open_footage(folder):
            got.append(frame.number)
    assert got == [1, 2]


def test_corrupt_file_is_named(tmp_path, empty_file):
    folder = write_sequence(tmp_path / "c", [("c_1.png", 0.1), ("c_3.png", 0.3)])
    (folder / "c_2.png").write_bytes(b"definitely not a PNG" * 20)
    footage = fo.open_footage(folder)
    with pytest.raises(FootageError, match=r"cannot read .*c_2\.png"):
        list(footage)
    with pytest.raises(FootageError, match=r"cannot read .*c_2\.png"):
        fo.open_footage(folder, frame_range=(2, 3))  # corrupt first frame: refused at opening


def test_blend_file_left_unchanged(tmp_path, empty_file):
    folder = write_sequence(tmp_path / "u", [(f"u_{i}.png", i / 10) for i in (1, 2, 3)])
    (folder / "u_4.png").write_bytes(b"broken")
    before = datablocks()
    footage = fo.open_footage(folder, frame_range=(1, 3))
    assert datablocks() == before  # opening (probing the first frame)
    assert len(list(footage)) == 3 and datablocks() == before  # full iteration
    for frame in footage:  # early break
        assert bpy.data.images.get(".face_anything_footage") is not None  # read through one image
        break
    assert datablocks() == before
    frames = iter(footage)
    next(frames)
    frames.close()  # closed early
    assert datablocks() == before
    with pytest.raises(FootageError):
        list(fo.open_footage(folder))  # error on frame 4
    assert datablocks() == before


# ----------------------------------------------------------------------------------------- movies

@pytest.fixture(scope="module")
def movie(tmp_path_factory) -> Path:
    """A 5-frame 64 x 48 H.264 movie rendered with Cycles, background colour MOVIE_COLOURS[i]."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.resolution_x, scene.render.resolution_y = MOVIE_SIZE
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.world = world = bpy.data.worlds.new("world")
    if world.node_tree is None:  # 4.2: worlds start without nodes; 5.0: always with
        world.use_nodes = True
    colour = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND").inputs["Color"]
    for frame, rgb in enumerate(MOVIE_COLOURS, start=1):
        colour.default_value = (*rgb, 1.0)
        colour.keyframe_insert("default_value", frame=frame)
    scene.frame_start, scene.frame_end = 1, len(MOVIE_COLOURS)
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # 5.0: choose video before the FFMPEG format exists
        settings.media_type = "VIDEO"
    settings.file_format = "FFMPEG"
    scene.render.ffmpeg.format = "MPEG4"
    scene.render.ffmpeg.codec = "H264"
    scene.render.ffmpeg.constant_rate_factor = "HIGH"
    folder = tmp_path_factory.mktemp("movie")
    scene.render.filepath = str(folder / "colours_")
    bpy.ops.render.render(animation=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    (path,) = folder.glob("colours_*.mp4")
    return path


def expected_movie_colour(number: int) -> np.ndarray:
    return fo.linear_to_srgb(np.array(MOVIE_COLOURS[number - 1], np.float32))


def test_movie_frames_count_size_and_order(movie, empty_file):
    prefs = bpy.context.preferences
    limit, dirty = prefs.system.memory_cache_limit, prefs.is_dirty
    before = datablocks()
    footage = fo.open_footage(movie)
    assert (footage.kind, footage.name, footage.size) == ("MOVIE", movie.name, MOVIE_SIZE)
    assert footage.frame_numbers == [1, 2, 3, 4, 5]
    started = time.perf_counter()
    frames = list(footage)
    ms = (time.perf_counter() - started) / len(frames) * 1000
    print(f"movie {MOVIE_SIZE[0]}x{MOVIE_SIZE[1]}: {ms:.2f} ms/frame")
    assert [f.number for f in frames] == [1, 2, 3, 4, 5]
    for frame in frames:
        assert frame.size == MOVIE_SIZE and frame.image.dtype == np.float32
        np.testing.assert_allclose(mean_colour(frame), expected_movie_colour(frame.number),
                                   atol=0.03, err_msg=f"frame {frame.number}")
    assert [f.number for f in fo.open_footage(movie, frame_range=(2, 4))] == [2, 3, 4]
    for frame in footage:  # while reading: Blender's cache bounded, our image and texture exist
        assert prefs.system.memory_cache_limit == min(limit, fo.MOVIE_CACHE_MB) or limit == 0
        assert len(bpy.data.textures) == len(before["textures"]) + 1
        break
    assert datablocks() == before
    assert (prefs.system.memory_cache_limit, prefs.is_dirty) == (limit, dirty)


def test_unreadable_movie_is_refused(tmp_path, empty_file):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    before = datablocks()
    with pytest.raises(FootageError, match=r"cannot read .*broken\.mp4"):
        fo.open_footage(broken)
    assert datablocks() == before


# ------------------------------------------------------------------------------------ movie clips

def test_clip_of_a_sequence_uses_the_clips_frames(tmp_path, empty_file):
    folder = write_sequence(tmp_path / "clip",
                            [(f"shot_{n:04d}.png", n / 20) for n in (6, 7, 8, 9, 10)])
    clip = bpy.data.movieclips.load(str(folder / "shot_0007.png"))
    try:
        assert clip.source == "SEQUENCE"

        def blues(footage):
            return [(f.number, round(float(f.image[5, 5, 2]) * 20)) for f in footage]

        footage = fo.footage_from_clip(clip)
        assert (footage.kind, footage.name, footage.size) == ("SEQUENCE", clip.name, (W, H))
        assert blues(footage) == [(1, 7), (2, 8), (3, 9), (4, 10)]  # clip frame 1 = its file
        clip.frame_offset = 1
        clip.frame_start = 10
        footage = fo.footage_from_clip(clip, frame_range=(1, 2))
        assert footage.frame_start == 10
        assert blues(footage) == [(1, 8), (2, 9)]
    finally:
        bpy.data.movieclips.remove(clip)


def test_clip_of_a_movie(movie, empty_file):
    clip = bpy.data.movieclips.load(str(movie))
    before = datablocks()
    try:
        assert clip.source == "MOVIE"
        footage = fo.footage_from_clip(clip)
        assert (footage.kind, footage.size, footage.frame_numbers) == ("MOVIE", MOVIE_SIZE,
                                                                       [1, 2, 3, 4, 5])
        clip.frame_offset = 2
        frames = list(fo.footage_from_clip(clip))
        assert [f.number for f in frames] == [1, 2, 3]
        for frame in frames:  # clip frame n shows movie frame n + 2
            np.testing.assert_allclose(mean_colour(frame), expected_movie_colour(frame.number + 2),
                                       atol=0.03)
    finally:
        bpy.data.movieclips.remove(clip)
    assert datablocks() == before


# --------------------------------------------------------------------------------- reduced frames

def test_large_frames_are_reduced_by_blender_and_keep_the_footage_size(tmp_path, empty_file):
    folder = write_sequence(tmp_path / "big", [(f"big_{i}.png", i / 10) for i in (1, 2)])
    before = datablocks()
    footage = fo.open_footage(folder, max_side=16)
    assert (footage.size, footage.read_size) == ((W, H), (16, 12))
    assert "read at 16x12" in repr(footage)
    frames = list(footage)
    for frame, number in zip(frames, (1, 2)):
        assert frame.image.shape == (12, 16, 3) and frame.size == (W, H)
        assert frame.image_size == (16, 12) and frame.scale == (0.5, 0.5)
        # Blender's area average of the stored bytes: 2 x 2 block means, rounded to bytes
        expected = as_bytes(pattern(number / 10)).reshape(12, 2, 16, 2, 3).mean(axis=(1, 3))
        assert np.abs(frame.image - expected).max() <= 1.5 / 255
        np.testing.assert_allclose(frame.image[0, 0], [1, 1, 1], atol=BYTE)  # still top-left
    assert datablocks() == before
    assert fo.open_footage(folder).read_size == (W, H)  # small footage: read as it is
    assert fo.open_footage(folder, max_side=0).read_size == (W, H)
    (one,) = fo.open_footage(folder, frame_range=(1, 1), max_side=W)  # at the limit: untouched
    assert one.footage_size is None and one.image.shape == (H, W, 3)


def test_reduced_movie_and_movie_clip(movie, tmp_path, empty_file):
    half = (MOVIE_SIZE[0] // 2, MOVIE_SIZE[1] // 2)
    frames = list(fo.open_footage(movie, max_side=half[0]))
    assert [f.number for f in frames] == [1, 2, 3, 4, 5]
    for frame in frames:
        assert (frame.size, frame.image_size) == (MOVIE_SIZE, half)
        np.testing.assert_allclose(mean_colour(frame), expected_movie_colour(frame.number),
                                   atol=0.03, err_msg=f"frame {frame.number}")
    clip = bpy.data.movieclips.load(str(movie))
    try:
        clip.frame_offset = 1
        frames = list(fo.footage_from_clip(clip, max_side=half[0]))
        assert [f.number for f in frames] == [1, 2, 3, 4]
        for frame in frames:
            assert (frame.size, frame.image_size) == (MOVIE_SIZE, half)
            np.testing.assert_allclose(mean_colour(frame), expected_movie_colour(frame.number + 1),
                                       atol=0.03)
    finally:
        bpy.data.movieclips.remove(clip)
    folder = write_sequence(tmp_path / "clip", [(f"c_{n}.png", n / 20) for n in (1, 2)])
    clip = bpy.data.movieclips.load(str(folder / "c_1.png"))
    try:
        (first, second) = fo.footage_from_clip(clip, max_side=8)
        assert (first.size, first.image_size) == ((W, H), (8, 6))
        assert round(float(second.image[2, 2, 2]) * 20) == 2
    finally:
        bpy.data.movieclips.remove(clip)


def gaussian_dots(width, height, points, sigma):
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    g = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)) for x, y in points)
    return np.repeat(g.astype(np.float32)[..., None], 3, axis=2)


def test_a_known_point_round_trips_exactly_through_a_reduced_frame(tmp_path, empty_file):
    """Linear EXR footage 1200 x 800 with light spots at known sub-pixel places, read reduced to
    500 x 333 by Blender: a crop in footage pixels (as the pipeline makes) resampled from the
    reduced frame puts each spot where the crop says, in footage pixels, within 0.05 px."""
    from face_anything_addon.core.preprocess import crop_for_box, resample

    size = (1200, 800)
    points = [(403.3, 297.6), (811.9, 530.2)]
    folder = tmp_path / "spots"
    folder.mkdir()
    write_image(folder / "spots_1.exr", gaussian_dots(*size, points, sigma=10.0))
    (frame,) = fo.open_footage(folder, max_side=500)
    assert (frame.size, frame.image_size) == (size, (500, 333))
    linear = np.clip(frame.image, 0, None) ** 2.4  # near enough to undo the sRGB encoding
    for x, y in points:
        crop = crop_for_box((x - 55.5, y - 47.0, x + 61.0, y + 52.5), 112, 112)
        seen = resample(linear, crop.scaled(*frame.scale))[..., 0]
        yy, xx = np.mgrid[0:112, 0:112] + 0.5
        centre = np.array([(seen * xx).sum(), (seen * yy).sum()]) / seen.sum()
        np.testing.assert_allclose(crop.to_footage(centre), (x, y), atol=0.05)


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def _write_8k(path: Path, file_format: str) -> Path:
    """A smooth 7680 x 4320 picture: drawn small, enlarged by Blender, saved (no 8K array in
    Python)."""
    small = bpy.data.images.new("small", 192, 108, float_buffer=file_format == "OPEN_EXR")
    try:
        yy, xx = np.mgrid[0:108, 0:192] / 100.0
        rgba = np.stack([np.sin(xx) ** 2, np.cos(yy) ** 2, 0.5 + 0 * xx, 1 + 0 * xx], 2)
        small.pixels.foreach_set(rgba[::-1].astype(np.float32).ravel())
        small.scale(7680, 4320)
        if file_format == "OPEN_EXR":
            scene = bpy.context.scene
            settings = scene.render.image_settings
            settings.file_format, settings.color_mode = "OPEN_EXR", "RGB"
            settings.color_depth, settings.exr_codec = "16", "ZIP"
            small.save_render(str(path), scene=scene)
        else:
            small.filepath_raw, small.file_format = str(path), file_format
            small.save()
    finally:
        bpy.data.images.remove(small)
    return path


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("ext, file_format, python_mb, process_mb", [
    (".png", "PNG", 100, 400), (".exr", "OPEN_EXR", 120, 1000)])
def test_reading_an_8k_frame_stays_within_its_memory_bound(tmp_path, empty_file, ext, file_format,
                                                           python_mb, process_mb):
    """An 8K frame read with the default limit reaches Python at 2048 x 1152. Bounds: Python
    allocations (tracemalloc) below `python_mb` (the frame and its float buffer are ~66 MB;
    measured 63 and 97 MB; read whole, before the limit existed: 886 MB for the PNG, 2.5 GB for
    the EXR); the process's peak resident memory above what it held before below `process_mb`
    (Blender decodes the whole frame first: 133 MB as 8-bit RGBA, 531 MB as float RGBA;
    measured +160 and +641 MB; read whole: +1.0 and +3.0 GB)."""
    import gc
    import tracemalloc

    folder = tmp_path / "eightk"
    folder.mkdir()
    _write_8k(folder / f"uhd_0001{ext}", file_format)
    footage = fo.open_footage(folder)
    assert (footage.size, footage.read_size) == ((7680, 4320), (2048, 1152))
    gc.collect()
    baseline = _rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    tracemalloc.start()
    (frame,) = footage
    python_peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    process_peak = _rss_mb("VmHWM") - baseline
    print(f"8K {file_format}: Python peak {python_peak:.0f} MB, process peak "
          f"+{process_peak:.0f} MB")
    assert frame.image.shape == (1152, 2048, 3) and frame.size == (7680, 4320)
    assert 0.2 < float(frame.image[..., 2].mean()) < 0.8  # the picture, not an empty buffer
    assert python_peak < python_mb and process_peak < process_mb


def block_means(image: np.ndarray, k: int) -> np.ndarray:
    """Means of k x k blocks (W and H multiples of k here)."""
    h, w = image.shape[:2]
    return image.reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3))


def test_footage_reduced_for_the_model_reads_block_means(tmp_path, movie, empty_file):
    """`reduced(n)` (what the pipeline asks for a small model): frames are means of n x n blocks,
    made as the pixels are copied out, with the footage size and their exact scale; on top of
    Blender's own reduction (max_side) only the rest is done; the original footage object is
    unchanged; EXR blocks are averaged in linear light and then encoded."""
    folder = write_sequence(tmp_path / "shot", [(f"s_{i}.png", i / 10) for i in (1, 2)])
    footage = fo.open_footage(folder)
    quarter = footage.reduced(4)
    assert footage.reduction == 1 and quarter.block == 4 and "read at 8x6" in repr(quarter)
    for plain, small in zip(footage, quarter):
        assert (small.size, small.image_size, small.scale) == ((W, H), (8, 6), (0.25, 0.25))
        np.testing.assert_allclose(small.image, block_means(plain.image, 4), atol=1e-6)
    both = fo.open_footage(folder, max_side=16).reduced(4)  # Blender halves, the read halves
    assert both.block == 2
    (first, _) = both
    assert (first.image_size, first.scale) == ((8, 6), (0.25, 0.25))
    np.testing.assert_allclose(first.image, block_means(as_bytes(pattern(0.1)), 4), atol=1.5 / 255)
    frames = list(fo.open_footage(movie).reduced(8))
    assert [f.image_size for f in frames] == [(8, 6)] * 5
    for frame in frames:
        np.testing.assert_allclose(mean_colour(frame), expected_movie_colour(frame.number),
                                   atol=0.03)
    linear = np.zeros((H, W, 3), np.float32)
    linear[::2] = 1.0  # alternate rows of light and dark: 0.5 in linear light
    exr = write_image(tmp_path / "lin_1.exr", linear)
    (frame,) = fo.open_footage(exr).reduced(2)
    np.testing.assert_allclose(frame.image, fo.linear_to_srgb(np.full((H // 2, W // 2, 3), 0.5,
                                                                        np.float32)), atol=1e-4)
