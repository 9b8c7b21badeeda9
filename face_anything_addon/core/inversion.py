# SPDX-License-Identifier: GPL-3.0-or-later
"""Canonical inversion: where in this frame does a canonical coordinate appear?

For each target canonical coordinate, find the image position p (model-input pixels, pixel centres
at integer + 0.5) where the predicted canonical map equals it:
1. a start: the previous frame's answer (warm start), or a coarse match: a voxel hash of the
   confident pixels' canonical coordinates, looked up at several cell sizes (all vectorised);
2. Gauss-Newton on the bilinearly interpolated canonical map, to sub-pixel;
3. rejection when the residual is large or the 2 x 2 pixel neighbourhood is not all face.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID_LEVELS = (64, 32, 16, 8)  # voxel hash resolutions over [-1, 1]^3, finest first


@dataclass(frozen=True)
class InversionSettings:
    max_residual: float = 0.02  # canonical units; above: not visible
    iterations: int = 6
    max_step: float = 2.0  # pixels per Gauss-Newton step
    min_weight: float = 0.5  # face weight every bilinear neighbour must reach
    reseek_fraction: float = 0.2  # more warm starts failing than this: search those afresh


class CanonicalMap:
    """One frame's canonical prediction, ready for sampling."""

    def __init__(self, canonical: np.ndarray, weight: np.ndarray, min_weight: float = 0.5):
        canonical = np.asarray(canonical, np.float32)
        self.h, self.w = canonical.shape[:2]
        self.valid = np.asarray(weight) >= min_weight  # (H, W)
        self._flat = canonical.reshape(-1, 3)  # a view: nothing per frame scales with H x W

    def _index(self, p: np.ndarray):
        x = p[:, 0] - 0.5
        y = p[:, 1] - 0.5
        x0 = np.minimum(np.maximum(np.floor(x), 0), self.w - 2)
        y0 = np.minimum(np.maximum(np.floor(y), 0), self.h - 2)
        fx = (x - x0)[:, None]
        fy = (y - y0)[:, None]
        i00 = y0.astype(np.int64) * self.w + x0.astype(np.int64)
        return i00, fx, fy

    def sample(self, p: np.ndarray):
        """Bilinear canonical value (T, 3) and its derivatives d/du, d/dv (T, 3) at p (T, 2)."""
        i00, fx, fy = self._index(p)
        c = self._flat
        c00, c01, c10, c11 = c[i00], c[i00 + 1], c[i00 + self.w], c[i00 + self.w + 1]
        dtop = c01 - c00
        dbottom = c11 - c10
        top = c00 + fx * dtop
        bottom = c10 + fx * dbottom
        return top + fy * (bottom - top), dtop + fy * (dbottom - dtop), bottom - top

    def value(self, p: np.ndarray) -> np.ndarray:
        return self.sample(p)[0]

    def supported(self, p: np.ndarray) -> np.ndarray:
        """(T,) True where p lies inside the image and all four bilinear neighbours are face."""
        inside = (p[:, 0] >= 0.5) & (p[:, 1] >= 0.5) & (p[:, 0] <= self.w - 0.5) & \
            (p[:, 1] <= self.h - 0.5)
        i00 = self._index(p)[0]
        v = self.valid.ravel()
        return inside & v[i00] & v[i00 + 1] & v[i00 + self.w] & v[i00 + self.w + 1]

    def coarse(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A start for each target: the centre of a valid pixel whose canonical coordinate falls
        in the target's voxel, at the finest grid level where one exists. (T, 2), found (T,)."""
        pix = np.flatnonzero(self.valid.ravel())
        start = np.zeros((len(targets), 2), np.float32)
        found = np.zeros(len(targets), bool)
        if pix.size == 0:
            return start, found
        finest = GRID_LEVELS[0]
        pix_cells = _cells(self._flat[pix], finest)
        target_cells = _cells(targets, finest)
        for g in GRID_LEVELS:
            todo = np.flatnonzero(~found)
            if todo.size == 0:
                break
            shrink = finest // g
            grid = np.full(g ** 3, -1, np.int64)
            grid[_keys(pix_cells // shrink, g)] = pix
            hit = grid[_keys(target_cells[todo] // shrink, g)]
            idx, hit = todo[hit >= 0], hit[hit >= 0]
            start[idx, 0] = hit % self.w + 0.5
            start[idx, 1] = hit // self.w + 0.5
            found[idx] = True
        return start, found


def _cells(coords: np.ndarray, g: int) -> np.ndarray:
    return np.clip(((coords + 1.0) * (g / 2.0)).astype(np.int64), 0, g - 1)


def _keys(cell: np.ndarray, g: int) -> np.ndarray:
    return (cell[:, 0] * g + cell[:, 1]) * g + cell[:, 2]


def refine(cmap: CanonicalMap, targets: np.ndarray, start: np.ndarray,
           settings: InversionSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Newton from `start`: positions (T, 2), residual (T,), ok (T,). Iterates only on the
    targets still moving."""
    p = np.array(start, np.float32)
    lo = np.float32(0.5)
    hi = np.array([cmap.w - 0.5, cmap.h - 0.5], np.float32)
    active = np.arange(len(p))
    for _ in range(settings.iterations):
        q = p[active]
        value, du, dv = cmap.sample(q)
        r = value - targets[active]
        a = np.einsum("ij,ij->i", du, du)
        b = np.einsum("ij,ij->i", du, dv)
        c = np.einsum("ij,ij->i", dv, dv)
        gu = np.einsum("ij,ij->i", du, r)
        gv = np.einsum("ij,ij->i", dv, r)
        damp = 1e-9 + 1e-6 * (a + c)
        a += damp
        c += damp
        det = a * c - b * b
        det[np.abs(det) < 1e-20] = 1e-20
        step = np.stack([(b * gv - c * gu) / det, (b * gu - a * gv) / det], 1)
        norm = np.sqrt(np.einsum("ij,ij->i", step, step))[:, None]
        step *= np.minimum(1.0, settings.max_step / np.maximum(norm, 1e-12))
        p[active] = np.clip(q + step, lo, hi)
        active = active[norm[:, 0] > 1e-2]  # a hundredth of a pixel: converged
        if active.size == 0:
            break
    residual = np.linalg.norm(cmap.value(p) - targets, axis=1)
    return p, residual, cmap.supported(p) & (residual <= settings.max_residual)


def invert(cmap: CanonicalMap, targets: np.ndarray, warm: np.ndarray | None = None,
           settings: InversionSettings = InversionSettings()):
    """Image positions of `targets` (T, 3) in this frame: positions (T, 2), residual (T,),
    visible (T,).

    warm: (T, 2) predicted positions in this frame's pixels (e.g. last frame's complete mesh
    projected), nan where there is none. Targets with a prediction are refined from it; the
    coarse voxel-hash search runs only for those without one (the first frame, a lost track).
    """
    targets = np.asarray(targets, np.float32)
    n = len(targets)
    p = np.full((n, 2), np.nan, np.float32)
    residual = np.full(n, np.inf, np.float32)
    ok = np.zeros(n, bool)
    have = np.zeros(n, bool) if warm is None else np.isfinite(warm).all(1)
    if have.any():
        p[have], residual[have], ok[have] = refine(cmap, targets[have], warm[have], settings)
    failed = have & ~ok
    if failed.sum() > settings.reseek_fraction * max(have.sum(), 1):
        seek = np.flatnonzero(~ok)
    else:
        seek = np.flatnonzero(~have)
    if seek.size:
        start, found = cmap.coarse(targets[seek])
        idx = seek[found]
        if idx.size:
            q, res, good = refine(cmap, targets[idx], start[found], settings)
            better = good | ~ok[idx] & (res < residual[idx])
            idx, q, res, good = idx[better], q[better], res[better], good[better]
            p[idx], residual[idx], ok[idx] = q, res, good
    return p, residual, ok
