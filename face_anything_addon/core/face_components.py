# SPDX-License-Identifier: GPL-3.0-or-later
"""Which of a frame's face pixels are the face: the connected parts of a face mask, scored
by how much of the canonical face they show.

A model that has seen no real footage also marks things that are not faces (an orange suit,
grass): parts that each carry a sliver of the canonical face, one cheek's coordinates spread over
a sleeve. A face shows many different places of the template. So each connected part of the mask
is scored by its coverage, the number of canonical cells (the canonical cube cut into CELLS^3)
that its pixels fall in. The face is the parts with at least KEEP of the best part's coverage (a
face cut in two by a hand keeps both halves), and any part that reaches into their box grown by
GROW of its size (a forehead cut off by a strand of hair shows little of the face by itself).
When no part covers MIN_COVERAGE cells (a face a few pixels across) there is too little to tell
the face by, and every part counts. The pipeline uses it twice: the detection pass's face box is
the box of the face's parts, and every predicted frame's mask loses its other parts (so the
solve takes no correspondence from a sleeve in the crop's corner); the best part's coverage in each
predicted frame also tells a shot whose face region shows little of a face (`off_face_warning`).
Everything is vectorised; labelling a 224-pixel mask takes a few milliseconds."""
from __future__ import annotations

import numpy as np

CELLS = 8  # canonical cells per axis over [-1, 1]
KEEP = 0.5  # parts with at least this share of the best part's coverage are kept
GROW = 0.25  # ... and the parts reaching into their box grown by this share of its size
MIN_COVERAGE = 12  # below this best coverage, no part is left out
# A face in a face crop covers many cells (its best part: `face_parts`): on the 48 synthetic
# validation clips as captured by the bundled model, a median of 71 and 45 or more on 95 % of
# the frames (3 of 192 frames under 25, all of faces under 2 % of the frame); 48-68 on the real
# faces of the astronaut and the camera man photographs. The camera man's automatic crop, on
# the grass: 16-17. On most frames under this, the face region may be off the face
# (`off_face_warning`; of the 48 clips, one with a face 1.1 % of the frame is told).
LOW_CELLS = 25


def connected_parts(valid: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected parts of a boolean (H, W) mask: labels (H, W) int (0 outside, 1..n inside)
    and n. Each pixel takes the smallest flat index among its neighbours' labels, with pointer
    jumping (a label is the index of a pixel, so labels of labels shorten chains), until none
    changes."""
    h, w = valid.shape
    size = h * w
    flat_valid = valid.ravel()
    lab = np.where(flat_valid, np.arange(size), size)
    # neighbour pairs inside the mask, as flat indices (right and down of each pixel)
    idx = np.arange(size).reshape(h, w)
    right = (valid[:, :-1] & valid[:, 1:])
    down = (valid[:-1] & valid[1:])
    a = np.concatenate([idx[:, :-1][right], idx[:-1][down]])
    b = np.concatenate([idx[:, 1:][right], idx[1:][down]])
    while True:
        low = np.minimum(lab[a], lab[b])
        new = lab.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        inside = new < size
        new[inside] = new[new[inside]]  # pointer jumping
        if np.array_equal(new, lab):
            break
        lab = new
    roots, labels = np.unique(lab[flat_valid], return_inverse=True)
    out = np.zeros(size, np.int32)
    out[flat_valid] = labels + 1
    return out.reshape(h, w), len(roots)


def _cells(values: np.ndarray) -> np.ndarray:
    """The canonical cell (0 .. CELLS^3 - 1) of each canonical coordinate (..., 3) in [-1, 1]
    (outside: clipped to the border cells; nan: the centre's)."""
    values = np.nan_to_num(values)  # a model's nan must not make a bad cell index
    cells = np.clip(np.floor((values + 1.0) * (CELLS / 2)), 0, CELLS - 1)
    return (cells.astype(np.int64) * np.array([1, CELLS, CELLS * CELLS])).sum(-1)


def coverage(canonical: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """(n,) the number of distinct canonical cells each part's pixels fall in. canonical:
    (H, W, 3) in [-1, 1] (outside: clipped to the border cells; nan: the centre's)."""
    inside = labels > 0
    cell = _cells(canonical[inside])
    pairs = np.unique((labels[inside].astype(np.int64) - 1) * CELLS ** 3 + cell)
    return np.bincount(pairs // CELLS ** 3, minlength=n)


def part_boxes(labels: np.ndarray, n: int) -> np.ndarray:
    """(n, 4) each part's pixel box x0, y0, x1, y1 (exclusive ends)."""
    ys, xs = np.nonzero(labels)
    part = labels[ys, xs] - 1
    boxes = np.empty((n, 4), np.int64)
    boxes[:, :2] = np.iinfo(np.int64).max
    boxes[:, 2:] = np.iinfo(np.int64).min
    np.minimum.at(boxes[:, 0], part, xs)
    np.minimum.at(boxes[:, 1], part, ys)
    np.maximum.at(boxes[:, 2], part, xs + 1)
    np.maximum.at(boxes[:, 3], part, ys + 1)
    return boxes


def face_parts(valid: np.ndarray, canonical: np.ndarray) -> tuple[np.ndarray, int]:
    """(the pixels of `valid` (H, W) in the parts that show the face (the module's rule), how
    many canonical cells the part that shows most of it covers; 0 without a part)."""
    labels, n = connected_parts(valid)
    if n == 0:
        return valid, 0
    score = coverage(canonical, labels, n)
    best = int(score.max())
    if n == 1 or best < MIN_COVERAGE:
        return valid, best
    keep = score >= KEEP * best
    boxes = part_boxes(labels, n)
    x0, y0 = boxes[keep, :2].min(0)
    x1, y1 = boxes[keep, 2:].max(0)
    gx, gy = GROW * (x1 - x0), GROW * (y1 - y0)
    keep |= ((boxes[:, 0] < x1 + gx) & (boxes[:, 2] > x0 - gx) &
             (boxes[:, 1] < y1 + gy) & (boxes[:, 3] > y0 - gy))
    return np.concatenate([[False], keep])[labels], best


def face_pixels(valid: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """The pixels of `valid` (H, W) in the parts that show the face (the module's rule)."""
    return face_parts(valid, canonical)[0]


def clean_face(weight: np.ndarray, canonical: np.ndarray,
               threshold: float = 0.5) -> tuple[np.ndarray, int]:
    """A predicted mask or face weight (H, W) with the parts above `threshold` that do not show
    the face (`face_parts`) set to 0 (the same array when nothing is left out), and how many
    canonical cells the part that shows most of the face covers (0 without a face)."""
    valid = weight > threshold
    face, cells = face_parts(valid, canonical)
    drop = valid & ~face
    if not drop.any():
        return weight, cells
    out = weight.copy()
    out[drop] = 0.0
    return out, cells


def off_face_warning(cells) -> str | None:
    """A sentence for the user when, on more than half of a shot's frames, the face the network
    found in the face region shows under LOW_CELLS canonical cells (`clean_face`): the region
    may be off the face (a crop on grass or a sleeve). None otherwise."""
    cells = np.asarray(cells, np.float64)
    low = cells < LOW_CELLS
    if not cells.size or low.sum() * 2 <= cells.size:
        return None
    return (f"On {int(low.sum())} of {cells.size} frames the network sees little of a face in "
            f"the face region (a median of {np.median(cells):g} of the {CELLS ** 3} canonical "
            f"cells; a face shows {LOW_CELLS} or more): the region may be off the face, or the "
            "face too small or unclear there. Check the result, and if it is off the face, give "
            "the Face Region as a box or a track")
