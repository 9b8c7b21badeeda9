# SPDX-License-Identifier: GPL-3.0-or-later
"""Face boxes per frame as a CSV file: what `--face-region BOXES.csv` reads and what a capture
writes (`NAME_face_boxes.csv`: the box the network saw on each frame), so a shot's face region
can be taken from another tracker, or from one capture, corrected by hand, and run again.

The file: optional lines starting with '#', an optional header `frame,x0,y0,x1,y1`, then one line
per frame: the footage's frame number and the box in footage pixels (top left 0, 0; on the
footage as shot, before any lens distortion is undone)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

HEADER = ("frame", "x0", "y0", "x1", "y1")


class FaceBoxesError(ValueError):
    """A face box file that cannot be read; the message names the line."""


def read_face_boxes(path: Path | str) -> dict[int, tuple[float, float, float, float]]:
    """{frame number: (x0, y0, x1, y1)} from a face box file; FaceBoxesError saying what is
    wrong and where."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FaceBoxesError(f"{path}: cannot read it ({exc})") from None
    boxes, header_seen = {}, False
    for i, line in enumerate(lines, 1):
        cells = [c.strip() for c in line.split(",")]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not boxes and not header_seen and cells[0].lower() == "frame":
            header_seen = True
            continue
        try:
            frame, *box = (float(c) for c in cells)
            assert len(box) == 4 and frame == int(frame) and all(map(math.isfinite, box))
            assert box[2] > box[0] and box[3] > box[1] and int(frame) not in boxes
        except (ValueError, AssertionError):
            raise FaceBoxesError(f"{path}, line {i} ({line.strip()!r}): each line is "
                                 "frame,x0,y0,x1,y1 with x1 > x0 and y1 > y0, each frame "
                                 "once") from None
        boxes[int(frame)] = tuple(box)
    if not boxes:
        raise FaceBoxesError(f"{path}: no boxes in it (lines frame,x0,y0,x1,y1)")
    return boxes


def write_face_boxes(capture, path: Path | str) -> Path:
    """The capture's face box of every frame (`settings["face_boxes"]`) as a face box file."""
    boxes = (capture.settings or {}).get("face_boxes")
    if boxes is None:
        raise FaceBoxesError("this capture has no face boxes (made before they were recorded)")
    path = Path(path)
    w, h = capture.footage_size
    rows = [f"{int(n)},{','.join(f'{v:.3f}' for v in box)}"
            for n, box in zip(capture.frame_numbers, np.asarray(boxes, np.float64))]
    path.write_text(f"# Face Anything face boxes: footage {capture.footage_name}, {w}x{h} px; "
                    "the box the network saw on each frame, footage pixels, top left 0, 0\n"
                    + ",".join(HEADER) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path
