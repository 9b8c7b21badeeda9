# SPDX-License-Identifier: GPL-3.0-or-later
"""Completing a partially observed mesh smoothly, and the rigid fit that goes with it.

`MeshFiller` holds the template's graph Laplacian as a padded neighbour table (one row per
neighbour slot, one column per vertex, padded with a sentinel that reads 0), built once: a
neighbour sum is one gather and one sum. `fill` makes a displacement field harmonic over the
unseen vertices, held to the seen ones (a Dirichlet problem), by conjugate gradients
warm-started from the last frame: no spikes, no collapse, and no factorisation to rebuild when
the seen set changes.

The `*_soa` methods take channel-first (C, V) fields (what the capture solve keeps); the others
take (V, C).
"""
from __future__ import annotations

import numpy as np

# numpy's BLAS (OpenBLAS) runs dot products above 10,000 elements and matrix products above
# 2^18 multiply-adds on worker threads that then keep spinning for a while: on a 2-core machine
# each such call costs the caller most of a core for the next frames. Products that can be that
# large go through einsum (no BLAS), small ones through BLAS.
_SMALL_DOT = 1 << 13
_SMALL_PRODUCT = 1 << 17


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of a * b over all entries (same-shape contiguous arrays)."""
    if a.size <= _SMALL_DOT:
        return float(np.vdot(a, b))
    return float(np.einsum("ij,ij->", a, b))


class MeshFiller:
    def __init__(self, faces: np.ndarray, vertex_count: int):
        faces = np.asarray(faces, np.int64)
        e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        e = np.unique(np.sort(e, axis=1), axis=0)
        both = np.concatenate([e, e[:, ::-1]])
        order = np.lexsort((both[:, 1], both[:, 0]))
        src, dst = both[order, 0], both[order, 1]
        self.vertex_count = vertex_count
        degree = np.bincount(src, minlength=vertex_count)
        self.degree = degree.astype(np.float64)
        starts = np.searchsorted(src, np.arange(vertex_count))
        slots = max(int(degree.max(initial=0)), 1)
        # table[j, v]: v's j-th neighbour, or vertex_count (a padding column that reads 0)
        self.table = np.full((slots, vertex_count), vertex_count, np.intp)
        self.table[np.arange(len(src)) - starts[src], src] = dst
        self.edges = e

    def _padded(self, x: np.ndarray) -> np.ndarray:
        """(C, V) -> (C, V + 1) with a zero padding column."""
        out = np.empty((x.shape[0], self.vertex_count + 1), x.dtype)
        out[:, :-1] = x
        out[:, -1] = 0
        return out

    def neighbour_sum_soa(self, x: np.ndarray) -> np.ndarray:
        """(C, V) -> (C, V): the sum over each vertex's neighbours."""
        return np.take(self._padded(x), self.table, axis=1).sum(1)

    def neighbour_sum(self, x: np.ndarray) -> np.ndarray:
        """(V, C) -> (V, C): the sum over each vertex's neighbours."""
        x = np.asarray(x)
        if x.ndim == 1:
            return self.neighbour_sum_soa(x[None])[0]
        return self.neighbour_sum_soa(x.T).T

    def laplacian(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        return (self.degree if x.ndim == 1 else self.degree[:, None]) * x - self.neighbour_sum(x)

    def fill(self, known: np.ndarray, values: np.ndarray, guess: np.ndarray | None = None,
             tolerance: float = 1e-3, max_iterations: int = 150) -> np.ndarray:
        """A (V, C) field equal to `values` where `known`, harmonic elsewhere. See fill_soa."""
        out = self.fill_soa(known, np.asarray(values, np.float64).T,
                            None if guess is None else np.asarray(guess, np.float64).T,
                            tolerance, max_iterations)
        return out.T

    def fill_soa(self, known: np.ndarray, values: np.ndarray, guess: np.ndarray | None = None,
                 tolerance: float = 1e-3, max_iterations: int = 150) -> np.ndarray:
        """A (C, V) field (C <= 4) equal to `values` (C, V) where `known`, harmonic elsewhere.

        guess: (C, V) a warm start for the unknown entries (e.g. last frame's field). Vertices
        with no path to a known vertex get 0. The system is built over the unknown vertices
        only (their rows of the neighbour table), so a small hole costs a small solve.
        Conjugate gradients on all channels at once (they share the matrix), until the residual
        is below `tolerance` x the right-hand side. The unknowns are kept as rows of four
        (one record of 32 bytes each: numpy gathers those fastest).
        """
        values = np.asarray(values, np.float64)
        c, v = values.shape
        if known.all():
            return values.copy()
        if not known.any():
            return np.zeros_like(values)
        free = np.flatnonzero(~known)
        n = free.size
        rows = self.table.take(free, axis=1)  # (S, n) neighbours of the unknowns
        local = np.full(v + 1, n, np.intp)  # vertex -> unknown number; n: known or padding
        local[free] = np.arange(n)
        inner = local.take(rows)  # (S, n) neighbours as unknown numbers (n reads 0)
        deg = np.repeat(self.degree.take(free), 4).reshape(n, 4)
        pulled = np.zeros((v + 1, 4))  # the known values, as rows
        for j in range(c):  # (per channel: elementwise work on rows of 3 would be slow)
            pulled[:v, j] = values[j]
        pulled[free] = 0.0
        b = pulled.take(rows, axis=0).sum(0)  # (n, 4): the pull of the known neighbours
        zb = np.zeros((n + 1, 4))  # the unknowns, and a padding row that reads 0
        z = zb[:n]
        pb = np.zeros((n + 1, 4))
        p = pb[:n]
        if guess is not None:
            for j in range(c):
                z[:, j] = guess[j].take(free)
            r = b - deg * z
            r += zb.take(inner, axis=0).sum(0)
        else:
            r = b.copy()
        p[:] = r
        rr = _dot(r, r)
        stop = tolerance ** 2 * max(_dot(b, b), 1e-300)
        ap = np.empty_like(r)
        for _ in range(max_iterations):
            if rr <= stop:
                break
            np.multiply(deg, p, out=ap)
            ap -= pb.take(inner, axis=0).sum(0)
            alpha = rr / max(_dot(p, ap), 1e-300)
            z += alpha * p
            ap *= alpha
            r -= ap
            rr_new = _dot(r, r)
            p *= rr_new / rr
            p += r
            rr = rr_new
        out = values.copy()
        for j in range(c):
            out[j, free] = z[:, j]
        return out

    def outliers(self, known: np.ndarray, values: np.ndarray, floor: float,
                 factor: float = 4.0) -> np.ndarray:
        """(V, C) values; see outliers_soa."""
        return self.outliers_soa(known, np.asarray(values, np.float64).T, floor, factor)

    def outliers_soa(self, known: np.ndarray, values: np.ndarray, floor: float,
                     factor: float = 4.0) -> np.ndarray:
        """Known vertices whose value (C, V) (C <= 3) departs from the mean of their known
        neighbours by more than max(floor, factor x the median departure), and more than any
        neighbour does (a spike also drags its neighbours' means: only its own peak counts):
        spikes to drop. In float32, as rows of four (value, known) (16 bytes: gathered
        fastest)."""
        c, v = values.shape
        rows = np.zeros((v + 1, 4), np.float32)
        k = known.astype(np.float32)
        for j in range(c):  # (per channel: elementwise work on rows of 3 would be slow)
            np.multiply(values[j], k, out=rows[:v, j], casting="same_kind")
        rows[:v, 3] = k
        sums = rows.take(self.table, axis=0).sum(0).T.copy()  # (4, V): neighbours' sum, count
        count = sums[3]
        diff = sums[:c]
        diff /= np.maximum(count, 1)
        diff -= values  # mean of the known neighbours - value (- value where unknown)
        departure = np.sqrt(np.einsum("ij,ij->j", diff, diff))
        judged = known & (count >= 2)
        m = int(np.count_nonzero(judged))
        if m == 0:
            return np.zeros_like(known)
        seen = departure[judged]
        median = float(np.partition(seen, m // 2)[m // 2])
        limit = max(floor, factor * median)
        candidates = np.flatnonzero(judged & (departure > limit))
        out = np.zeros_like(known)
        if candidates.size:  # only those: is it their own peak?
            peak_of = np.zeros(v + 1, np.float32)
            peak_of[:v] = departure * judged
            peak = peak_of.take(self.table[:, candidates]).max(0)
            out[candidates[departure[candidates] >= peak]] = True
        return out


def similarity_fit(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None):
    """Weighted least-squares similarity (Umeyama): target ~ s R source + t.
    Returns a 4 x 4 matrix with s R in the 3 x 3 block."""
    w = np.ones(len(source)) if weights is None else np.asarray(weights, np.float64)
    return similarity_fit_soa(np.asarray(source, np.float64).T,
                              np.asarray(target, np.float64).T, w)


def similarity_fit_soa(source: np.ndarray, target: np.ndarray, weights: np.ndarray):
    """similarity_fit on channel-first points: source, target (3, n) -> (4, 4); or a batch:
    target (N, 3, n), weights (N, n), source (3, n) or (N, 3, n) -> (N, 4, 4)."""
    if target.ndim == 3:
        return _similarity_fit_batch(source, target, np.asarray(weights, np.float64))
    points = np.empty((7, source.shape[1]))
    points[:3] = source
    points[3:6] = target
    points[6] = 1.0
    return _fit_from_points(points, np.asarray(weights, np.float64))


def _fit_from_points(points: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """The similarity from source rows 0-2 to target rows 3-5 of `points` (7, n) (row 6: ones),
    weighted by w (n,) (None: all 1): every weighted moment from one product, then 3 x 3 algebra
    in plain Python (a handful of numpy calls: at a thousand points their overhead, not the
    arithmetic, is the cost)."""
    weighted = points if w is None else points * w
    if points.size * 7 <= _SMALL_PRODUCT:
        moments = (weighted @ points.T).tolist()
    else:
        moments = np.einsum("in,jn->ij", weighted, points).tolist()
    sw = moments[6][6]
    ms = [moments[i][6] / sw for i in range(3)]
    mt = [moments[3 + i][6] / sw for i in range(3)]
    cov = [[moments[3 + i][j] / sw - mt[i] * ms[j] for j in range(3)] for i in range(3)]
    u, d, vt = (x.tolist() for x in np.linalg.svd(cov))
    rot = _matmul3(u, vt)
    if _det3(rot) < 0:  # a reflection: flip the weakest axis
        d[2] = -d[2]
        for row in u:
            row[2] = -row[2]
        rot = _matmul3(u, vt)
    var = (moments[0][0] + moments[1][1] + moments[2][2]) / sw - sum(x * x for x in ms)
    scale = sum(d) / max(var, 1e-30)
    m = [[scale * x for x in row] for row in rot]
    for i in range(3):
        m[i].append(mt[i] - sum(m[i][j] * ms[j] for j in range(3)))
    m.append([0.0, 0.0, 0.0, 1.0])
    return np.array(m)


def _matmul3(a, b):
    return [[a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j] for j in range(3)]
            for i in range(3)]


def _det3(m) -> float:
    (a, b, c), (e, f, g), (h, i, j) = m
    return a * (f * j - g * i) - b * (e * j - g * h) + c * (e * i - f * h)


def _similarity_fit_batch(source: np.ndarray, target: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per frame n: the weighted similarity from source (3, S) (shared; or (N, 3, S)) to
    target[n] (3, S) with weights w[n] (S,): (N, 4, 4). The moments come from a few products
    over all frames at once."""
    if source.ndim == 3:  # one source per frame: frame by frame
        return np.stack([similarity_fit_soa(s, t, x) for s, t, x in zip(source, target, w)])
    frames, _, count = target.shape
    sw = w.sum(1)  # (N,)
    wt = target * w[:, None]  # (N, 3, S)
    mu_t = wt.sum(2) / sw[:, None]  # (N, 3)
    # (stacked matmul: one small BLAS product per frame, each far below BLAS's threading size)
    mu_s = np.matmul(w[:, None, :], source.T)[:, 0] / sw[:, None]  # (N, 3)
    cross = np.matmul(wt, source.T) / sw[:, None, None]
    cov = cross - mu_t[:, :, None] * mu_s[:, None, :]  # weighted covariance, target x source
    var = np.einsum("ns,s->n", w, np.einsum("cs,cs->s", source, source)) / sw - \
        (mu_s * mu_s).sum(1)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones((frames, 3))
    sign[:, 2] = np.where(np.linalg.det(np.matmul(u, vt)) < 0, -1.0, 1.0)
    rot = np.matmul(u * sign[:, None], vt)
    scale = (d * sign).sum(1) / np.maximum(var, 1e-30)
    m = np.zeros((frames, 4, 4))
    m[:, :3, :3] = scale[:, None, None] * rot
    m[:, :3, 3] = mu_t - np.einsum("nij,nj->ni", m[:, :3, :3], mu_s)
    m[:, 3, 3] = 1.0
    return m


def robust_similarity_fit(source: np.ndarray, target: np.ndarray, weights: np.ndarray,
                          rounds: int = 2) -> np.ndarray:
    """Similarity fit with Huber-like reweighting, so a few bad points do not tilt the head."""
    return robust_similarity_fit_soa(np.asarray(source, np.float64).T,
                                     np.asarray(target, np.float64).T,
                                     np.asarray(weights, np.float64), rounds)


def robust_similarity_fit_soa(source: np.ndarray, target: np.ndarray, weights: np.ndarray,
                              rounds: int = 2) -> np.ndarray:
    """robust_similarity_fit on channel-first points (3, n), or batches: target (N, 3, n),
    weights (N, n), source (3, n) or (N, 3, n). The robust scale is 1.4826 x the median error
    over the points with weight (each frame its own)."""
    w0 = np.asarray(weights, np.float64)
    if target.ndim == 2:
        points = np.empty((7, source.shape[1]))
        points[:3] = source
        points[3:6] = target
        points[6] = 1.0
        unit = w0.min() == 1.0 and w0.max() == 1.0
        m = _fit_from_points(points, None if unit else w0)
        use = None if w0.min() > 0 else w0 > 0
        for _ in range(rounds):
            diff = m[:3, :3] @ source
            diff += m[:3, 3:]
            diff -= target
            err = np.sqrt(np.einsum("ij,ij->j", diff, diff))
            seen = err if use is None else err[use]
            half = len(seen) // 2
            scale = 2.0 * (1.4826 * float(np.partition(seen, half)[half]) + 1e-9)
            np.maximum(err, 1e-12, out=err)
            w = np.minimum(1.0, np.divide(scale, err, out=err), out=err)
            if not unit:
                w *= w0
            m = _fit_from_points(points, w)
        return m
    m = _similarity_fit_batch(source, target, w0)
    for _ in range(rounds):
        diff = np.matmul(m[:, :3, :3], source)  # one small product per frame
        diff += m[:, :3, 3:]
        diff -= target
        err = np.sqrt(np.einsum("ncv,ncv->nv", diff, diff))
        scale = 1.4826 * _weighted_median(err, w0 > 0) + 1e-9
        w = w0 * np.minimum(1.0, 2.0 * scale[:, None] / np.maximum(err, 1e-12))
        m = _similarity_fit_batch(source, target, w)
    return m


def _weighted_median(err: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Per row of err (N, n), the median over the entries where `use` (the upper one of the
    middle two), by a partial sort."""
    count = use.sum(1)
    if use.all():
        k = count // 2
        if np.all(k == k[0]):
            return np.partition(err, k[0], axis=1)[:, k[0]]
    masked = np.where(use, err, np.inf)
    k = np.maximum(count // 2, 0)
    out = np.empty(len(err))
    for i in range(len(err)):  # rows with different counts (rare: frames seen differently)
        out[i] = np.partition(masked[i], k[i])[k[i]] if count[i] else 0.0
    return out


def transform(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:3, :3].T + m[:3, 3]


def pose_scale(m: np.ndarray) -> float:
    return float(np.cbrt(np.linalg.det(m[:3, :3])))
