# SPDX-License-Identifier: GPL-3.0-or-later
"""Completing a partially observed mesh smoothly, and the rigid fit that goes with it.

`MeshFiller` holds the template's graph Laplacian in a compact sparse form (neighbour lists for
`np.add.reduceat`). `fill` makes a displacement field harmonic over the unseen vertices, held to
the seen ones (a Dirichlet problem), by conjugate gradients warm-started from the last frame: no
spikes, no collapse, and no factorisation to rebuild when the seen set changes.
"""
from __future__ import annotations

import numpy as np


class MeshFiller:
    def __init__(self, faces: np.ndarray, vertex_count: int):
        e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        e = np.unique(np.sort(e, axis=1), axis=0)
        both = np.concatenate([e, e[:, ::-1]])
        order = np.lexsort((both[:, 1], both[:, 0]))
        src, dst = both[order, 0], both[order, 1]
        self.vertex_count = vertex_count
        self.degree = np.bincount(src, minlength=vertex_count).astype(np.float64)
        self.neighbours = dst
        self.has_neighbours = self.degree > 0
        self.starts = np.searchsorted(src, np.arange(vertex_count))[self.has_neighbours]
        self.edges = e

    def neighbour_sum(self, x: np.ndarray) -> np.ndarray:
        """(V, C) -> (V, C): the sum over each vertex's neighbours."""
        out = np.zeros_like(x)
        out[self.has_neighbours] = np.add.reduceat(x[self.neighbours], self.starts, axis=0)
        return out

    def laplacian(self, x: np.ndarray) -> np.ndarray:
        return self.degree[:, None] * x - self.neighbour_sum(x)

    def fill(self, known: np.ndarray, values: np.ndarray, guess: np.ndarray | None = None,
             tolerance: float = 1e-3, max_iterations: int = 150) -> np.ndarray:
        """A (V, C) field equal to `values` where `known`, harmonic elsewhere.

        guess: a warm start for the unknown entries (e.g. last frame's field). Vertices with no
        path to a known vertex get 0. The system is built over the unknown vertices only (their
        edges), so a small hole costs a small solve.
        """
        x = np.where(known[:, None], values, 0.0 if guess is None else guess).astype(np.float64)
        if known.all():
            return x
        if not known.any():
            return np.zeros_like(x)
        free = np.flatnonzero(~known)
        local = np.full(self.vertex_count, -1, np.int64)
        local[free] = np.arange(free.size)
        src = np.repeat(np.arange(self.vertex_count), self.degree.astype(np.int64))
        from_free = local[src] >= 0
        src_l = local[src[from_free]]
        dst = self.neighbours[from_free]
        inner = local[dst] >= 0
        a_src, a_dst = src_l[inner], local[dst[inner]]  # free -> free edges
        deg = self.degree[free]
        n, c = free.size, x.shape[1]

        def sum_over(index, vals):
            return np.stack([np.bincount(index, vals[:, j], minlength=n) for j in range(c)], 1)

        def apply(z):
            return deg[:, None] * z - sum_over(a_src, z[a_dst])

        b = sum_over(src_l[~inner], x[dst[~inner]])  # pull from the known neighbours
        z = x[free]
        r = b - apply(z)
        p = r.copy()
        rr = np.einsum("ij,ij->j", r, r)
        stop = tolerance ** 2 * np.maximum(np.einsum("ij,ij->j", b, b), 1e-30)
        for _ in range(max_iterations):
            if np.all(rr <= stop):
                break
            ap = apply(p)
            alpha = rr / np.maximum(np.einsum("ij,ij->j", p, ap), 1e-30)
            z += alpha * p
            r -= alpha * ap
            rr_new = np.einsum("ij,ij->j", r, r)
            p = r + (rr_new / np.maximum(rr, 1e-30)) * p
            rr = rr_new
        x[free] = z
        return x

    def outliers(self, known: np.ndarray, values: np.ndarray, floor: float,
                 factor: float = 4.0) -> np.ndarray:
        """Known vertices whose value departs from the mean of their known neighbours by more than
        max(floor, factor x the median departure), and more than any neighbour does (a spike
        also drags its neighbours' means: only its own peak counts): spikes to drop."""
        k = known.astype(np.float64)[:, None]
        count = self.neighbour_sum(k)[:, 0]
        mean = self.neighbour_sum(values * k) / np.maximum(count, 1)[:, None]
        departure = np.linalg.norm(values - mean, axis=1)
        judged = known & (count >= 2)
        if not judged.any():
            return np.zeros_like(known)
        limit = max(floor, factor * float(np.median(departure[judged])))
        peak = np.zeros(self.vertex_count)
        peak[self.has_neighbours] = np.maximum.reduceat(
            np.where(judged, departure, 0.0)[self.neighbours], self.starts)
        return judged & (departure > limit) & (departure >= peak)


def similarity_fit(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None):
    """Weighted least-squares similarity (Umeyama): target ~ s R source + t.
    Returns a 4 x 4 matrix with s R in the 3 x 3 block."""
    w = np.ones(len(source)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_t = w @ source, w @ target
    a, b = source - mu_s, target - mu_t
    cov = (b * w[:, None]).T @ a
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(3)
    sign[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = (u * sign) @ vt
    var = (w * (a * a).sum(1)).sum()
    s = (d * sign).sum() / max(var, 1e-30)
    m = np.eye(4)
    m[:3, :3] = s * rot
    m[:3, 3] = mu_t - s * rot @ mu_s
    return m


def robust_similarity_fit(source: np.ndarray, target: np.ndarray, weights: np.ndarray,
                          rounds: int = 2) -> np.ndarray:
    """Similarity fit with Huber-like reweighting, so a few bad points do not tilt the head."""
    m = similarity_fit(source, target, weights)
    for _ in range(rounds):
        err = np.linalg.norm(source @ m[:3, :3].T + m[:3, 3] - target, axis=1)
        scale = 1.4826 * np.median(err) + 1e-9
        w = weights * np.minimum(1.0, 2.0 * scale / np.maximum(err, 1e-12))
        m = similarity_fit(source, target, w)
    return m


def transform(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:3, :3].T + m[:3, 3]


def pose_scale(m: np.ndarray) -> float:
    return float(np.cbrt(np.linalg.det(m[:3, :3])))
