# SPDX-License-Identifier: GPL-3.0-or-later
"""Canonical inversion: where in this frame does a canonical coordinate appear?

For each target canonical coordinate, find the image position p (model-input pixels, pixel centres
at integer + 0.5) where the predicted canonical map equals it:
1. a start: a prediction from earlier frames (warm start), or a coarse match: a voxel hash of the
   confident pixels' canonical coordinates, looked up at several cell sizes (all vectorised);
2. Gauss-Newton on the bilinearly interpolated canonical map, to sub-pixel; each iteration
   gathers the four neighbouring pixels of every still-moving target in one fancy-index (the map
   seen as overlapping two-pixel records) and takes the value and the Jacobian from them;
3. rejection when the residual is large or the 2 x 2 pixel neighbourhood is not all face.

Nothing per frame scales with the map's size on the warm path: the maps are read only at the
targets' neighbours. Internally coordinates are channel-first ((2, T), (3, T)) float32 arrays, so
every step is a few contiguous vector operations (the per-call overhead of numpy, not the
arithmetic, is what costs at a few thousand targets).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

GRID_LEVELS = (64, 32, 16, 8)  # voxel hash resolutions over [-1, 1]^3, finest first


@dataclass(frozen=True)
class InversionSettings:
    max_residual: float = 0.02  # canonical units; above: not visible
    iterations: int = 4  # from a warm start, or up to max_iterations while more than `extend`
    max_iterations: int = 8  # of the targets still move (a large motion, a steep or noisy map)
    extend: float = 0.05
    cold_iterations: int = 8  # from a coarse start (up to a voxel away), with no early stop
    max_step: float = 2.0  # pixels per Gauss-Newton step (longer ones go astray on noisy maps)
    min_weight: float = 0.5  # face weight every bilinear neighbour must reach
    reseek_fraction: float = 0.2  # more tracked warm starts failing than this: search afresh
    tolerance: float = 0.05  # pixels: a shorter step is the last
    patience: int = 2  # iterations before a target that gets nowhere is stopped (see refine)
    stall: float = 3.0  # x max_residual: above it, a residual that stops shrinking ...
    stall_strikes: int = 2  # ... for this many iterations in a row stops


@lru_cache(maxsize=8)
def _grid_constants(h: int, w: int):
    """The flat offsets of the top and bottom row of the neighbours (2, 1), and the largest
    corner coordinates (2, 1): just below the last pixel centre, so the top-left neighbour is at
    most (w - 2, h - 2). Read-only, shared by the maps of that size."""
    rows = np.array([[0], [w]], np.intp)
    zero = np.float32(0)
    hi = np.array([[np.nextafter(np.float32(w - 1), zero)],
                   [np.nextafter(np.float32(h - 1), zero)]], np.float32)
    rows.flags.writeable = hi.flags.writeable = False
    return rows, hi


def pair_records(image: np.ndarray) -> np.ndarray:
    """A view of a C-contiguous (H, W[, C]) map as one record per pixel holding that pixel and
    its right-hand neighbour (records overlap; nothing is copied). Indexing it with the flat
    indices i and i + W gathers all four bilinear neighbours of a position in one fancy-index."""
    flat = np.ascontiguousarray(image).reshape(-1)
    channels = flat.size // (image.shape[0] * image.shape[1])
    item = flat.itemsize * channels
    return np.ndarray(shape=(flat.size // channels - 1,), dtype=np.dtype((np.void, 2 * item)),
                      buffer=flat, strides=(item,))


def gather(records: np.ndarray, index: np.ndarray, dtype) -> np.ndarray:
    """records[index] (index (2, n): the top and bottom row's left neighbours) as
    (2, n, 2 * C) values [left channels..., right channels...]."""
    return records[index].reshape(-1).view(dtype).reshape(index.shape[0], index.shape[1], -1)


class CanonicalMap:
    """One frame's canonical prediction, ready for sampling. Holds views of the maps: building
    one costs nothing that scales with the map's size.

    The channel-first methods work in corner coordinates c = p - 0.5 (pixel centres at
    integers), clipped to the image by `clip_corner`."""

    def __init__(self, canonical: np.ndarray, weight: np.ndarray, min_weight: float = 0.5):
        canonical = np.ascontiguousarray(canonical, np.float32)
        self.h, self.w = canonical.shape[:2]
        self.min_weight = min_weight
        self._canonical = canonical
        self._records = pair_records(canonical)
        self._weight_map = np.ascontiguousarray(weight)
        self._weight_records = pair_records(self._weight_map)
        self._valid = None
        self._rows, self._hi = _grid_constants(self.h, self.w)
        self._exact32 = self.h * self.w < 2 ** 24  # flat indices exact in float32
        self._located = None  # (positions, their locate()) of the last inversion's answer

    def located(self, p: np.ndarray):
        """locate() of pixel positions p (2, n) if they are the last refine's answer (the
        very array, unchanged since), else None."""
        if self._located is not None and self._located[0] is p:
            return self._located[1]
        return None

    @property
    def valid(self) -> np.ndarray:
        """(H, W) bool: face pixels (made on first use: the warm path never needs it)."""
        if self._valid is None:
            self._valid = np.asarray(self._weight_map >= self.min_weight).reshape(self.h, self.w)
        return self._valid

    # ------------------------------------------------------------------ channel-first core

    def clip_corner(self, c: np.ndarray) -> np.ndarray:
        """Clip corner coordinates (2, n) float32 in place to the image."""
        np.maximum(c, 0, out=c)
        return np.minimum(c, self._hi, out=c)

    def locate(self, c: np.ndarray):
        """Clipped corner coordinates c (2, n) -> the flat indices (2, n) of the top and bottom
        row's left neighbours, and the fractions (2, n) (x, y) within the pixel square."""
        c0 = np.floor(c)
        f = c - c0
        if self._exact32:
            c0[1] *= self.w
            c0[1] += c0[0]
            i00 = c0[1].astype(np.intp)
        else:
            i00 = c0[1].astype(np.intp) * self.w + c0[0].astype(np.intp)
        i00 = i00 + self._rows
        return i00, f

    def evaluate(self, c: np.ndarray, targets: np.ndarray):
        """At clipped corner coordinates c (2, n): residual r = value - target (3, n), the
        Jacobian (2, 3, n) (d/du, d/dv), and the neighbours' flat indices (2, n)."""
        index, f = self.locate(c)
        g = gather(self._records, index, np.float32).transpose(0, 2, 1).copy()  # (2, 6, n)
        d = g[:, 3:] - g[:, :3]  # (2, 3, n): right - left, top and bottom rows
        side = f[0] * d
        side += g[:, :3]  # top and bottom rows interpolated along x
        jac = np.empty_like(d)
        np.subtract(side[1], side[0], out=jac[1])
        np.subtract(d[1], d[0], out=jac[0])
        jac[0] *= f[1]
        jac[0] += d[0]
        r = f[1] * jac[1]
        r += side[0]
        r -= targets
        return r, jac, index

    def _weights(self, index: np.ndarray) -> np.ndarray:
        """(2, n, 2) face weights of the four neighbours."""
        return gather(self._weight_records, index, self._weight_map.dtype)

    def face(self, index: np.ndarray) -> np.ndarray:
        """(n,) True where all four neighbours are face."""
        w = self._weights(index)  # (a reduction over the short last axis would be slow)
        w = np.minimum(w[..., 0], w[..., 1])
        return np.minimum(w[0], w[1]) >= self.min_weight

    def near_face(self, index: np.ndarray) -> np.ndarray:
        """(n,) True where at least one of the four neighbours is face."""
        w = self._weights(index)
        w = np.maximum(w[..., 0], w[..., 1])
        return np.maximum(w[0], w[1]) >= self.min_weight

    # ------------------------------------------------------------------ row-major conveniences

    def _corner(self, p: np.ndarray) -> np.ndarray:
        """Pixel positions (T, 2) -> clipped corner coordinates (2, T) (nan: the first pixel)."""
        c = np.nan_to_num(np.asarray(p, np.float32).T, nan=0.5)
        c -= 0.5
        return self.clip_corner(c)

    def sample(self, p: np.ndarray):
        """Bilinear canonical value (T, 3) and its derivatives d/du, d/dv (T, 3) at p (T, 2)."""
        r, jac, _ = self.evaluate(self._corner(p), np.zeros((3, 1), np.float32))
        return r.T, jac[0].T, jac[1].T

    def value(self, p: np.ndarray) -> np.ndarray:
        return self.sample(p)[0]

    def inside(self, p: np.ndarray) -> np.ndarray:
        """(T,) True where p (T, 2) lies inside the image (pixel centres at the border count)."""
        p = np.asarray(p)
        return ((p[:, 0] >= 0.5) & (p[:, 1] >= 0.5) & (p[:, 0] <= self.w - 0.5) &
                (p[:, 1] <= self.h - 0.5))

    def supported(self, p: np.ndarray) -> np.ndarray:
        """(T,) True where p lies inside the image and all four bilinear neighbours are face."""
        return self.inside(p) & self.face(self.locate(self._corner(p))[0])

    def coarse(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A start for each target: the centre of a valid pixel whose canonical coordinate falls
        in the target's voxel, at the finest grid level where one exists. (T, 2), found (T,)."""
        pix = np.flatnonzero(self.valid.ravel())
        start = np.zeros((len(targets), 2), np.float32)
        found = np.zeros(len(targets), bool)
        if pix.size == 0:
            return start, found
        finest = GRID_LEVELS[0]
        pix_cells = _cells(self._canonical.reshape(-1, 3)[pix], finest)
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


def refine_soa(cmap: CanonicalMap, targets: np.ndarray, start: np.ndarray,
               settings: InversionSettings):
    """Gauss-Newton from `start` (2, T) pixel positions for `targets` (3, T), channel-first.
    Returns positions (2, T) float32, residual (T,), ok (T,).

    Each iteration works only on the targets still moving. A target stops when its step is
    shorter than settings.tolerance; its residual is then the linearised one after that step
    (exact to far below the rejection threshold: the step is a few hundredths of a pixel, and
    the bilinear map is linear to second order over it).

    From iteration `patience` on, targets that are not converging to a match stop where they
    stand, with their true residual (so rejected unless it passes): no face pixel among the
    four neighbours; a match further away than the remaining iterations can go (max_step
    each); or a residual above stall x max_residual that has not shrunk (by a tenth) since the
    last iteration, at the face's edge (a hidden vertex pushing at a silhouette) or for
    stall_strikes iterations in a row. A target near a match (noisy maps) keeps its
    iterations. After settings.iterations, iterating goes on (up to max_iterations) only while
    more than settings.extend of the targets still move; then the rest stop where they stand,
    with their true residual."""
    n = start.shape[1]
    c = np.array(start, np.float32)
    c -= 0.5
    cmap.clip_corner(c)
    residual = np.full(n, np.inf, np.float32)
    active = None  # None: all; else the indices still moving
    tol2 = np.float32(settings.tolerance ** 2)
    max2 = np.float32(settings.max_step ** 2)
    stalled = np.float32((settings.stall * settings.max_residual) ** 2)
    last_rr = None
    strikes = np.zeros(n, np.int8)  # iterations in a row a target has stalled
    for it in range(max(settings.iterations, settings.max_iterations)):
        q = c if active is None else c.take(active, axis=1)
        r, jac, index = cmap.evaluate(q, targets if active is None else
                                      targets.take(active, axis=1))
        hess = np.einsum("kcn,lcn->kln", jac, jac)  # (2, 2, n): J^T J
        grad = np.einsum("kcn,cn->kn", jac, r)  # (2, n): J^T r
        a, b, d = hess[0, 0], hess[0, 1], hess[1, 1]
        damp = a + d
        damp *= np.float32(1e-6)
        damp += np.float32(1e-9)
        a += damp
        d += damp
        det = a * d
        det -= b * b  # > 0: J^T J is positive semi-definite, and damped
        step = np.empty_like(grad)  # -(J^T J)^-1 J^T r
        np.multiply(b, grad[1], out=step[0])
        step[0] -= d * grad[0]
        np.multiply(b, grad[0], out=step[1])
        step[1] -= a * grad[1]
        step[0] /= det
        step[1] /= det
        norm2 = np.einsum("kn,kn->n", step, step)
        if norm2.max() > max2:
            step *= np.sqrt(np.minimum(max2 / np.maximum(norm2, 1e-30), 1))
        new = q + step
        cmap.clip_corner(new)
        converged = norm2 <= tol2
        rr = np.einsum("cn,cn->n", r, r)
        halt = None
        last = it + 1 >= max(settings.iterations, settings.max_iterations) or (
            it + 1 >= settings.iterations and
            np.count_nonzero(~converged) <= settings.extend * n)
        if last:  # out of iterations: the rest stop where they stand, with the true residual
            halt = ~converged
        elif it + 1 >= settings.patience:  # not converging to a match: stop where it stands
            remaining = settings.max_iterations - it - 1  # too far for the iterations left
            halt = norm2 > np.float32((settings.max_step * max(remaining, 1)) ** 2)
            if last_rr is not None:  # stalled well away from a match: at the face's edge (a
                # hidden vertex pushing at a silhouette), or for stall_strikes iterations
                stuck = (rr > np.float32(0.81) * last_rr) & (rr > stalled)
                strikes = np.where(stuck, strikes + 1, 0).astype(np.int8)
                halt |= strikes >= settings.stall_strikes
                edge = np.flatnonzero(stuck & ~halt)
                if edge.size:
                    halt[edge] = ~cmap.face(index.take(edge, axis=1))
            rest = np.flatnonzero(~(converged | halt))
            if rest.size:  # the rest: stop too if no neighbour is face
                halt[rest] = ~cmap.near_face(index.take(rest, axis=1))
            halt &= ~converged
        if halt is not None:
                h = np.flatnonzero(halt)
                new[0, h] = q[0, h]
                new[1, h] = q[1, h]
                residual[h if active is None else active[h]] = np.sqrt(rr[h])
        stopped = converged if halt is None else converged | halt
        if converged.any():
            # the residual after the step: |r + J s|^2 = |r|^2 + s.J^T r for the Gauss-Newton
            # step s (exact but for the damping, a millionth; the step is tiny, not clipped)
            res = np.einsum("kn,kn->n", step, grad)
            res += rr
            np.sqrt(np.maximum(res, 0, out=res), out=res)
            if active is None and converged.all():
                residual[:] = res
            else:
                k = np.flatnonzero(converged)
                residual[k if active is None else active[k]] = res[k]
        moving = ~stopped
        if active is None:
            c = new
            active = np.flatnonzero(moving)
        else:
            c[0, active] = new[0]
            c[1, active] = new[1]
            active = active[moving]
        if active.size == 0:
            break
        last_rr = rr[moving]
        strikes = strikes[moving]
    located = cmap.locate(c)
    ok = cmap.face(located[0])
    ok &= residual <= settings.max_residual
    c += 0.5
    cmap._located = (c, located)
    return c, residual, ok


def refine(cmap: CanonicalMap, targets: np.ndarray, start: np.ndarray,
           settings: InversionSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Newton from `start` (T, 2) for targets (T, 3): positions (T, 2), residual (T,),
    ok (T,)."""
    p, residual, ok = refine_soa(cmap, np.ascontiguousarray(np.asarray(targets, np.float32).T),
                                 np.ascontiguousarray(np.asarray(start, np.float32).T), settings)
    return p.T, residual, ok


def invert_soa(cmap: CanonicalMap, targets: np.ndarray, warm: np.ndarray | None,
               settings: InversionSettings, tracked: np.ndarray | None = None):
    """`invert` on channel-first arrays: targets (3, T) float32, warm (2, T) float32 or None.
    Returns positions (2, T) (nan where never found), residual (T,), ok (T,)."""
    n = targets.shape[1]
    if warm is None:
        have = np.zeros(n, bool)
    else:
        have = np.isfinite(warm[0])
        have &= np.isfinite(warm[1])
    if have.all():
        p, residual, ok = refine_soa(cmap, targets, warm, settings)
    else:
        p = np.full((2, n), np.nan, np.float32)
        residual = np.full(n, np.inf, np.float32)
        ok = np.zeros(n, bool)
        if have.any():
            p[:, have], residual[have], ok[have] = refine_soa(
                cmap, targets[:, have], warm[:, have], settings)
    judged = have
    if tracked is not None and (have & tracked).any():
        judged = have & tracked
    failed = np.count_nonzero(judged & ~ok)
    if failed > settings.reseek_fraction * max(np.count_nonzero(judged), 1):
        seek = np.flatnonzero(~ok)
    else:
        seek = np.flatnonzero(~have)
    if seek.size:
        start, found = cmap.coarse(targets[:, seek].T)
        idx = seek[found]
        if idx.size:
            q, res, good = refine_soa(cmap, targets[:, idx], np.ascontiguousarray(start[found].T),
                                      replace(settings, iterations=settings.cold_iterations,
                                              max_iterations=settings.cold_iterations,
                                              patience=settings.cold_iterations))
            better = good | ~ok[idx] & (res < residual[idx])
            idx, q, res, good = idx[better], q[:, better], res[better], good[better]
            p[:, idx], residual[idx], ok[idx] = q, res, good
            cmap._located = None
    return p, residual, ok


def invert(cmap: CanonicalMap, targets: np.ndarray, warm: np.ndarray | None = None,
           settings: InversionSettings = InversionSettings(),
           tracked: np.ndarray | None = None):
    """Image positions of `targets` (T, 3) in this frame: positions (T, 2), residual (T,),
    visible (T,).

    warm: (T, 2) predicted positions in this frame's pixels (e.g. last frame's complete mesh
    projected), nan where there is none. Targets with a prediction are refined from it; the
    coarse voxel-hash search runs only for those without one (the first frame, a lost track), or
    for every target not found when more than settings.reseek_fraction of the warm starts fail.
    tracked: (T,) which predictions come from a target seen in the last frame; only their
    failures count towards that fraction when there are any (a target hidden for a while is
    expected to fail).
    """
    t = np.ascontiguousarray(np.asarray(targets, np.float32).T)
    w = None if warm is None else np.ascontiguousarray(np.asarray(warm, np.float32).T)
    p, residual, ok = invert_soa(cmap, t, w, settings, tracked)
    return p.T, residual, ok
