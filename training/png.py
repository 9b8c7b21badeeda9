# SPDX-License-Identifier: GPL-3.0-or-later
"""Write 8-bit PNG files with the standard library (no imaging package needed)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def _chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def write_png(path: Path | str, image: np.ndarray, level: int = 6) -> Path:
    """image: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, uint8."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8:
        raise ValueError("write_png wants uint8 pixels")
    h, w = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    colour = {1: 0, 3: 2, 4: 6}[channels]
    rows = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * channels)], axis=1)
    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _chunk(b"IEND", b""))
    path = Path(path)
    path.write_bytes(data)
    return path


def read_png(path: Path | str) -> np.ndarray:
    """A PNG that `write_png` wrote (8-bit, unfiltered rows, one IDAT) back as uint8 pixels."""
    data = Path(path).read_bytes()
    w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
    if data[:8] != b"\x89PNG\r\n\x1a\n" or depth != 8 or colour not in (0, 2, 6):
        raise ValueError(f"{path}: not a PNG that write_png wrote")
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8:start - 4])[0]
    channels = {0: 1, 2: 3, 6: 4}[colour]
    rows = np.frombuffer(zlib.decompress(data[start:start + length]), np.uint8)
    rows = rows.reshape(h, 1 + w * channels)
    if rows[:, 0].any():
        raise ValueError(f"{path}: filtered rows (not written by write_png)")
    image = rows[:, 1:].reshape(h, w, channels)
    return image[..., 0] if channels == 1 else image
