# SPDX-License-Identifier: GPL-3.0-or-later
"""Footage readers built only on Blender's own decoders (no Pillow, OpenCV or imageio).

Sources: a folder of numbered images, one image of a numbered sequence, a movie file (FFmpeg inside
Blender), or a Movie Clip datablock. Each is opened as a `Footage`: its frame numbers and frame size
are known up front, and iterating it decodes and yields one `core.frames.Frame` at a time.

- Image sequences: one image datablock whose `filepath` moves from file to file, pixels copied with
  `foreach_get` into a reused buffer. The frame number is the trailing number of the file name;
  gaps in the numbering stay gaps.
- Movies: the image sits in an image texture; `image_user.frame_current` + `evaluate` selects the
  frame (1-based). Blender's memory cache limit is lowered while reading, then restored.
- Size: frames whose longest side exceeds `max_side` (default `MAX_SIDE`, 2048 pixels) are reduced
  by Blender (`Image.scale`, an area average) right after decoding, before their pixels reach
  Python: an 8K frame costs Python a 2048-pixel copy, not ~0.9 GB of float RGBA. The `Frame` then
  carries the footage size, so crops, face boxes, intrinsics and markers stay in footage pixels.
  Blender itself still holds one decoded frame at full size for a moment (4 bytes a pixel for
  8-bit files and movies, 16 for EXR and 16-bit files).
- Reduction for the model: `Footage.reduced(n)` reads the same frames as means of blocks of
  pixels, up to n footage pixels a side (fewer when Blender already reduced the frame), made in
  the one pass that copies Blender's pixels out anyway (`core.frames.from_blender_pixels`; faster
  than the plain copy). The pipeline asks for it when the model needs the frame n times smaller
  or more (`core.pipeline`), so a 1080p frame for the bundled model is never held at full size.
  EXR blocks are averaged in scene-linear light, then encoded.
- Colour: frames are display values. 8/16-bit files and movies are read as stored (colour space
  'Non-Color', alpha 'CHANNEL_PACKED': no linearisation, no premultiplication); 8-bit PNG bytes come
  back as byte/255. EXR holds scene-linear light: `linear_to_srgb` encodes it for display.
- Datablocks the readers create are removed when iteration ends, fails or is closed early: the
  user's .blend is left as it was.
"""
from __future__ import annotations

import copy
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import bpy
import numpy as np

from ..core.errors import FootageError
from ..core.frames import Frame, block_size, from_blender_pixels, reduced_size

# Accepted image extensions and the family ("type") each belongs to; one family per sequence.
IMAGE_FAMILIES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
                  ".exr": "OpenEXR", ".bmp": "BMP"}
MOVIE_EXTENSIONS = frozenset(bpy.path.extensions_movie)  # Blender's: .mp4 .mov .avi .mkv .webm ...
MOVIE_CACHE_MB = 256  # Blender's memory cache limit while a movie is read (it keeps decoded frames)
# Longest side frames reach Python at (0: full size). 4 x the published model's 504-pixel input:
# a face box a quarter of the frame's long side still feeds such a model at full resolution (the
# bundled 196-pixel model: a face a tenth of it); 1080p and 2K footage is read as it is.
MAX_SIDE = 2048

_DATA_NAME = ".face_anything_footage"  # leading dot: hidden in Blender's lists while it exists
_TRAILING_NUMBER = re.compile(r"(\d+)$")
_DIGIT_RUNS = re.compile(r"(\d+)")
_ACCEPTED = ", ".join(IMAGE_FAMILIES)


class Footage:
    """Frames of one source, decoded lazily: `for frame in footage` yields `Frame`s in order.

    name: for messages; path: the folder, first image or movie file; kind: 'SEQUENCE' or 'MOVIE';
    frame_numbers: the numbers iteration yields, in order; size: (width, height) of the first frame,
    in footage pixels; max_side: longest side frames are decoded at (0: full size), so read_size
    is `size` reduced to it; frame_start: for a Movie Clip, the scene frame at which number 1 plays
    (else None); reduction: frames may come up to this many times smaller than the footage
    (`reduced`).
    """

    def __init__(self, name: str, path: Path, kind: str, frame_numbers: list[int],
                 size: tuple[int, int],
                 read: Callable[[tuple[int, int], int], Iterator[Frame]],
                 frame_start: int | None = None, max_side: int = MAX_SIDE):
        self.name, self.path, self.kind = name, path, kind
        self.frame_numbers, self.size, self.frame_start = frame_numbers, size, frame_start
        self.max_side = max_side
        self.reduction = 1
        self._read = read

    @property
    def read_size(self) -> tuple[int, int]:
        return reduced_size(*self.size, self.max_side)

    @property
    def block(self) -> int:
        """Frames come as means of block x block pixels of the read size: the reduction left
        after Blender's own to the read size."""
        ratio = min(r / s for r, s in zip(self.read_size, self.size))
        return max(1, int(self.reduction * ratio + 1e-9))

    def reduced(self, factor: int) -> "Footage":
        """The same footage, its frames up to `factor` times smaller (1: as read)."""
        if factor < 1:
            raise ValueError(f"reduction factor must be at least 1 (got {factor})")
        other = copy.copy(self)
        other.reduction = int(factor)
        return other

    def __iter__(self) -> Iterator[Frame]:
        return self._read(self.read_size, self.block)

    def __len__(self) -> int:
        return len(self.frame_numbers)

    def __repr__(self) -> str:
        first, last = self.frame_numbers[0], self.frame_numbers[-1]
        read = "" if self.read_size == self.size and self.block == 1 else \
            " read at {}x{}".format(*block_size(*self.read_size, self.block))
        return (f"<Footage {self.name!r} {self.kind} {self.size[0]}x{self.size[1]}{read}, "
                f"{len(self)} frames {first}..{last}>")


# ----------------------------------------------------------------------------------- entry points

def open_footage(path: str | os.PathLike, frame_range: tuple[int, int] | None = None,
                 max_side: int = MAX_SIDE) -> Footage:
    """Footage at `path`: a folder of numbered images, one image file (its whole numbered sequence,
    or a single frame numbered 1 when its name has no number) or a movie file (frames 1..n).
    frame_range: inclusive (first, last) frame numbers to keep. max_side: longest side frames are
    decoded at (larger ones are reduced; 0: full size). Raises FootageError."""
    target = Path(bpy.path.abspath(os.fspath(path)))
    if not target.exists():
        raise FootageError(f"footage not found: {target}")
    if target.is_dir():
        return _sequence_footage(target.name, target, folder_sequence(target), frame_range,
                                 max_side=max_side)
    suffix = target.suffix.lower()
    if suffix in IMAGE_FAMILIES:
        return _sequence_footage(target.name, target, file_sequence(target), frame_range,
                                 max_side=max_side)
    if suffix in MOVIE_EXTENSIONS:
        return _movie_footage(target.name, target, frame_range, max_side=max_side)
    raise FootageError(f"{target} is neither an image ({_ACCEPTED}) nor a movie file "
                       f"({', '.join(sorted(MOVIE_EXTENSIONS))})")


def footage_from_clip(clip: bpy.types.MovieClip, frame_range: tuple[int, int] | None = None,
                      max_side: int = MAX_SIDE) -> Footage:
    """Footage of a Movie Clip datablock, numbered in the clip's own frames as its tracking markers
    count them: 1 is the clip's first frame (its file, or movie frame 1, moved on by the clip's
    `frame_offset`, as Blender loads it); scene frame = number + clip.frame_start - 1. Frames before
    clip frame 1 are left out; frame_range is in clip frames. max_side: as for `open_footage`."""
    path = Path(bpy.path.abspath(clip.filepath, library=clip.library))
    if not path.is_file():
        raise FootageError(f"movie clip {clip.name!r}: file not found: {path}")
    if clip.source == "MOVIE":
        return _movie_footage(clip.name, path, frame_range, shift=-clip.frame_offset, lowest=1,
                              frame_start=clip.frame_start, max_side=max_side)
    if path.suffix.lower() not in IMAGE_FAMILIES:
        raise FootageError(f"movie clip {clip.name!r}: {path.name} is not an accepted image type "
                           f"({_ACCEPTED})")
    files = file_sequence(path)
    first = frame_number(path)
    shift = 0 if first is None else 1 - first - clip.frame_offset  # a still image: one frame, 1
    return _sequence_footage(clip.name, path, files, frame_range, shift=shift, lowest=1,
                             frame_start=clip.frame_start, max_side=max_side)


# ------------------------------------------------------------------------------ names and numbers

def natural_key(name: str) -> list:
    """Sort key in which digit runs compare as numbers: frame2 sorts before frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGIT_RUNS.split(name)]


def frame_number(path: Path) -> int | None:
    """The number that ends a file name's stem (shot_0007.png -> 7); None if there is none."""
    match = _TRAILING_NUMBER.search(path.stem)
    return int(match.group(1)) if match else None


def _listing(names: Iterable[str], most: int = 6) -> str:
    names = list(names)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def folder_sequence(folder: Path) -> dict[int, Path]:
    """All accepted images directly in `folder` (hidden files skipped), keyed by frame number."""
    try:
        files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_FAMILIES
                 and not p.name.startswith(".") and p.is_file()]
    except OSError as err:
        raise FootageError(f"cannot list {folder}: {err}") from None
    if not files:
        raise FootageError(f"no images in {folder} (accepted: {_ACCEPTED})")
    return _numbered(sorted(files, key=lambda p: natural_key(p.name)), folder)


def file_sequence(file: Path) -> dict[int, Path]:
    """The numbered sequence `file` belongs to: its folder's files with the same name before the
    number and the same image type. A file without a number is a one-frame sequence, number 1."""
    if frame_number(file) is None:
        return {1: file}
    head, family = _head(file), _family(file)
    siblings = [p for p in file.parent.iterdir() if p.suffix.lower() in IMAGE_FAMILIES
                and _family(p) == family and frame_number(p) is not None and _head(p) == head
                and p.is_file()]
    return _numbered(sorted(siblings, key=lambda p: natural_key(p.name)), file.parent)


def _head(path: Path) -> str:
    """The file name's stem without its trailing number (shot_0007.png -> 'shot_')."""
    return _TRAILING_NUMBER.sub("", path.stem)


def _family(path: Path) -> str:
    return IMAGE_FAMILIES[path.suffix.lower()]


def _numbered(files: list[Path], folder: Path) -> dict[int, Path]:
    """{frame number: file}; FootageError for mixed image types, unnumbered or duplicate numbers."""
    families: dict[str, list[str]] = {}
    for p in files:
        families.setdefault(_family(p), []).append(p.name)
    if len(families) > 1:
        kinds = "; ".join(f"{kind}: {_listing(names, 3)}" for kind, names in families.items())
        raise FootageError(f"{folder} mixes image types ({kinds}); keep one type per sequence")
    unnumbered = [p.name for p in files if frame_number(p) is None]
    if unnumbered:
        raise FootageError(f"{folder}: no frame number at the end of the name of "
                           f"{_listing(unnumbered)}")
    by_number: dict[int, Path] = {}
    clashes = []
    for p in files:
        n = frame_number(p)
        if n in by_number:
            clashes.append(f"{by_number[n].name} and {p.name} (frame {n})")
        by_number.setdefault(n, p)
    if clashes:
        raise FootageError(f"{folder}: two files for one frame number: {_listing(clashes, 4)}")
    return dict(sorted(by_number.items()))


def _select(numbers: Iterable[int], shift: int, frame_range: tuple[int, int] | None,
            lowest: int | None) -> list[int]:
    """Source numbers whose yielded number (source + shift) is >= lowest and within frame_range."""
    low, high = (-np.inf, np.inf) if frame_range is None else frame_range
    if low > high:
        raise FootageError(f"frame range {low}-{high} is empty")
    if lowest is not None:
        low = max(low, lowest)
    return [n for n in numbers if low <= n + shift <= high]


# ----------------------------------------------------------------------------------------- colour

def linear_to_srgb(linear: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Scene-linear light (Rec.709 primaries) -> sRGB display values, float32.

    The sRGB transfer function (IEC 61966-2-1): 12.92 x up to 0.0031308, 1.055 x^(1/2.4) - 0.055
    above. No tone mapping: values above 1 stay above 1 (consumers clip); negatives and NaN -> 0.
    out: a float32 array to write to (`linear` itself converts in place: no full-size temporary)."""
    x = np.asarray(linear, dtype=np.float32)
    if out is None:
        out = x.copy()
    elif out is not x:
        np.copyto(out, x)
    np.nan_to_num(out, copy=False, nan=0.0)
    np.maximum(out, 0.0, out=out)
    low = out <= 0.0031308
    dark = out[low] * np.float32(12.92)
    np.power(out, np.float32(1 / 2.4), out=out)
    out *= np.float32(1.055)
    out -= np.float32(0.055)
    out[low] = dark
    return out


def _show_as_stored(img: bpy.types.Image) -> bool:
    """Pixels as the file stores them: not linearised, not premultiplied. False if this colour
    configuration has no 'Non-Color' space (8-bit pixels are unaffected; float ones are linear)."""
    img.alpha_mode = "CHANNEL_PACKED"
    try:
        img.colorspace_settings.name = "Non-Color"
    except TypeError:
        return False
    return True


# ------------------------------------------------------------------------------------- datablocks

@contextmanager
def _scratch() -> Iterator[list]:
    """A list for datablocks created inside; all are removed on exit (end, error, generator
    close)."""
    made: list = []
    try:
        yield made
    finally:
        for block in reversed(made):
            _remove(block)


def _remove(block) -> None:
    data = bpy.data.textures if isinstance(block, bpy.types.Texture) else bpy.data.images
    try:
        data.remove(block)
    except ReferenceError:  # already gone (e.g. the whole file was reloaded meanwhile)
        pass


def _load(path: Path, made: list) -> bpy.types.Image:
    """A new image datablock for `path` (never the user's own), registered in `made`."""
    try:
        img = bpy.data.images.load(str(path), check_existing=False)
    except RuntimeError as err:
        raise FootageError(f"cannot open {path}: {err}") from None
    made.append(img)
    img.name = _DATA_NAME
    return img


@contextmanager
def _bounded_cache(limit_mb: int = MOVIE_CACHE_MB) -> Iterator[None]:
    """Lower Blender's memory cache limit (decoded movie frames pile up in it) while inside;
    restore the user's value, and the preferences' unsaved-changes flag, on exit."""
    prefs = bpy.context.preferences
    previous, dirty = prefs.system.memory_cache_limit, prefs.is_dirty
    if previous == 0 or previous > limit_mb:  # 0: no limit
        prefs.system.memory_cache_limit = limit_mb
    try:
        yield
    finally:
        prefs.system.memory_cache_limit = previous
        prefs.is_dirty = dirty


def _decoded_size(img: bpy.types.Image, what: str) -> tuple[int, int]:
    """(width, height) of the frame Blender decoded into `img`; FootageError if it could not
    decode `what`."""
    width, height = img.size
    count = len(img.pixels) if width and height else 0
    if count == 0 or count != width * height * img.channels:
        raise FootageError(f"cannot read {what}: Blender could not decode it (corrupt, truncated "
                           f"or unsupported)")
    return width, height


def _pixels(img: bpy.types.Image, buffer: np.ndarray | None, size: tuple[int, int],
            what: str, frame: int = 0, block: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 float32 top row first at `size`, or its means of block x block pixels; the
    flat buffer used). A `size` smaller than the decoded frame is reached inside Blender first
    (`Image.scale`, an area average; `frame`: the movie frame), so only that many pixels are
    copied out. `buffer` is reused when it has the right length."""
    if tuple(img.size) != tuple(size):
        img.scale(*size, frame=frame)
        if tuple(img.size) != tuple(size):
            raise FootageError(f"cannot read {what}: Blender could not reduce it to "
                               f"{size[0]}x{size[1]}")
    count = size[0] * size[1] * img.channels
    if buffer is None or buffer.size != count:
        buffer = np.empty(count, dtype=np.float32)
    img.pixels.foreach_get(buffer)
    return from_blender_pixels(buffer, *size, img.channels, block=block), buffer


def _frame_maker(size: tuple[int, int], read_size: tuple[int, int],
                 block: int) -> Callable[[int, np.ndarray], Frame]:
    """Frame(number, image) for images read at read_size in blocks of `block`: they carry the
    footage size when reduced, and their exact scale when in blocks."""
    if read_size == size and block == 1:
        return Frame
    scale = None if block == 1 else (read_size[0] / size[0] / block, read_size[1] / size[1] / block)
    return lambda number, image: Frame(number, image, size, scale)


def _probe(path: Path) -> tuple[tuple[int, int], int]:
    """((width, height), frame count) of an image or movie file, read through a temporary image."""
    with _scratch() as made:
        img = _load(path, made)
        width, height = img.size
        if not (width and height):
            raise FootageError(f"cannot read {path}: Blender could not decode it (corrupt, "
                               f"truncated or unsupported)")
        return (width, height), img.frame_duration


def _check_size(decoded: tuple[int, int], size: tuple[int, int], what: str, first: str) -> None:
    """FootageError naming `what` and both sizes unless the decoded (width, height) is `size`."""
    width, height = decoded
    if (width, height) != size:
        raise FootageError(f"{what} is {width}x{height} but the first frame ({first}) is "
                           f"{size[0]}x{size[1]}: all frames must have one size")


# ---------------------------------------------------------------------------------- image folders

def _sequence_footage(name: str, path: Path, files: dict[int, Path],
                      frame_range: tuple[int, int] | None, shift: int = 0,
                      lowest: int | None = None, frame_start: int | None = None,
                      max_side: int = MAX_SIDE) -> Footage:
    numbers = _select(files, shift, frame_range, lowest)
    if not numbers:
        raise FootageError(f"{name}: no frames in frame range {frame_range} (files "
                           f"{_listing(p.name for p in files.values())})")
    chosen = [(n, files[n]) for n in numbers]
    size, _ = _probe(chosen[0][1])
    return Footage(name, path, "SEQUENCE", [n + shift for n in numbers], size,
                   lambda read_size, block: _read_sequence(chosen, shift, size, read_size, block),
                   frame_start, max_side)


def _read_sequence(files: list[tuple[int, Path]], shift: int, size: tuple[int, int],
                   read_size: tuple[int, int], block: int = 1) -> Iterator[Frame]:
    """Frames of image files, through one image datablock whose filepath moves file to file."""
    exr = files[0][1].suffix.lower() == ".exr"
    make_frame = _frame_maker(size, read_size, block)
    with _scratch() as made:
        img, buffer, stored = None, None, True
        for number, path in files:
            if img is None:
                img = _load(path, made)
                stored = exr or _show_as_stored(img)
            else:
                img.filepath = str(path)
            _check_size(_decoded_size(img, str(path)), size, str(path), files[0][1].name)
            image, buffer = _pixels(img, buffer, read_size, str(path), block=block)
            if exr or (not stored and img.is_float):
                linear_to_srgb(image, out=image)  # a fresh array: converted in place
            yield make_frame(number + shift, image)


# ----------------------------------------------------------------------------------------- movies

def _movie_footage(name: str, path: Path, frame_range: tuple[int, int] | None, shift: int = 0,
                   lowest: int | None = None, frame_start: int | None = None,
                   max_side: int = MAX_SIDE) -> Footage:
    size, duration = _probe(path)
    numbers = _select(range(1, duration + 1), shift, frame_range, lowest)
    if not numbers:
        raise FootageError(f"{name}: no frames in frame range {frame_range} (the movie has "
                           f"{duration} frames)")
    return Footage(name, path, "MOVIE", [n + shift for n in numbers], size,
                   lambda read_size, block: _read_movie(path, numbers, shift, size, read_size,
                                                        block),
                   frame_start, max_side)


def _read_movie(path: Path, numbers: list[int], shift: int, size: tuple[int, int],
                read_size: tuple[int, int], block: int = 1) -> Iterator[Frame]:
    """Frames `numbers` (1-based) of a movie, through an image texture that selects the frame."""
    with _bounded_cache(), _scratch() as made:
        img = _load(path, made)
        stored = _show_as_stored(img)
        texture = bpy.data.textures.new(_DATA_NAME, "IMAGE")
        made.append(texture)
        texture.image = img
        if numbers[-1] > img.frame_duration:  # the file changed since it was opened
            raise FootageError(f"{path} now has {img.frame_duration} frames, not {numbers[-1]}")
        texture.image_user.frame_duration = img.frame_duration
        make_frame = _frame_maker(size, read_size, block)
        buffer = None
        for number in numbers:
            texture.image_user.frame_current = number
            texture.evaluate((0.0, 0.0, 0.0))
            what = f"frame {number} of {path}"
            _check_size(_decoded_size(img, what), size, what, "frame 1")
            image, buffer = _pixels(img, buffer, read_size, what, frame=number, block=block)
            if not stored and img.is_float:
                linear_to_srgb(image, out=image)
            yield make_frame(number + shift, image)
