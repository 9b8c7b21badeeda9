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
solve takes no correspondence from a sleeve in the crop's corner).
Everything is vectorised; labelling a 224-pixel mask takes a few milliseconds."""
from __future__ import annotations

import numpy as np

CELLS = 8  # canonical cells per axis over [-1, 1]
KEEP = 0.5  # parts with at least this share of the best part's coverage are kept
GROW = 0.25  # ... and the parts reaching into their box grown by this share of its size
MIN_COVERAGE = 12  # below this best coverage, no part is left out


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


def coverage(canonical: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """(n,) the number of distinct canonical cells each part's pixels fall in. canonical:
    (H, W, 3) in [-1, 1] (outside: clipped to the border cells; nan: the centre's)."""
    inside = labels > 0
    values = np.nan_to_num(canonical[inside])  # a model's nan must not make a bad cell index
    cells = np.clip(np.floor((values + 1.0) * (CELLS / 2)), 0, CELLS - 1)
    cell = (cells.astype(np.int64) * np.array([1, CELLS, CELLS * CELLS])).sum(-1)
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


def face_pixels(valid: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """The pixels of `valid` (H, W) in the parts that show the face (the module's rule)."""
    labels, n = connected_parts(valid)
    if n <= 1:
        return valid
    score = coverage(canonical, labels, n)
    if score.max() < MIN_COVERAGE:
        return valid
    keep = score >= KEEP * score.max()
    boxes = part_boxes(labels, n)
    x0, y0 = boxes[keep, :2].min(0)
    x1, y1 = boxes[keep, 2:].max(0)
    gx, gy = GROW * (x1 - x0), GROW * (y1 - y0)
    keep |= ((boxes[:, 0] < x1 + gx) & (boxes[:, 2] > x0 - gx) &
             (boxes[:, 1] < y1 + gy) & (boxes[:, 3] > y0 - gy))
    return np.concatenate([[False], keep])[labels]


def face_mask(mask: np.ndarray, canonical: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """A predicted mask (H, W) with the parts above `threshold` that do not show the face
    (`face_pixels`) set to 0 (the same array when nothing is left out)."""
    valid = mask > threshold
    drop = valid & ~face_pixels(valid, canonical)
    if not drop.any():
        return mask
    out = mask.copy()
    out[drop] = 0.0
    return out
