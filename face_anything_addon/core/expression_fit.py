# SPDX-License-Identifier: GPL-3.0-or-later
"""The expression fit: each frame's tracked face as the template's expression targets (for the
bundled template the 52 ARKit blendshapes) plus a head pose.

Per frame n, with the observed vertices' weights u[n] (1 seen, 0 filled by the solve):

    minimise  sum_v u[n, v] |s R (rest_v + sum_k w_k delta_kv) + t - x[n, v]|^2 / sum_v u[n, v]
              + prior^2 |w|^2,   0 <= w_k <= 1

from the neutral template's robust similarity (`mesh_fill.robust_similarity_fit_soa`), by
Gauss-Newton on the pose and the weights together (`_fit_chunk`), the weights' bounds by an
active set (solve, clip, solve again with the clipped weights held). `prior` (metres) is the
misfit, RMS over the seen vertices, that one unit of weight is worth: larger keeps the face
nearer the neutral template.

Why: a frame's tracked vertices carry the network's noise (a few pixels across, more in depth);
fitted to the template's expressions, the mesh keeps what they agree on. On the validation clips
the fitted mesh is far nearer the truth than the tracked one, and a little nearer than the
neutral template (the model card: `training.evaluate_mesh`); its speed is in bench/RESULTS.md.
The weights are what an ARKit-driven rig reads.

Everything is batched over frames (`chunk` at a time); nothing loops over vertices.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .mesh_fill import robust_similarity_fit_soa

DEFAULT_PRIOR_M = 0.004  # 4 mm RMS misfit per unit of weight (tuned on held-out clips)


@dataclass
class ExpressionFit:
    weights: np.ndarray  # (N, K) in [0, 1]
    poses: np.ndarray  # (N, 4, 4) camera-from-head similarity
    positions: np.ndarray  # (N, V, 3) float32, the fitted mesh, camera space


class ExpressionModel:
    """rest (V, 3) metres and deltas (K, V, 3) metres (the template's neutral face and targets).
    Only the vertices some target moves (by more than `moving` metres) enter the weights' solve;
    the starting pose uses the `pose_vertices` given (e.g. the solve's even spread), the
    Gauss-Newton rounds every vertex."""

    def __init__(self, rest: np.ndarray, deltas: np.ndarray,
                 pose_vertices: np.ndarray | None = None, moving: float = 1e-5):
        self.rest = np.asarray(rest, np.float64)
        self.deltas = np.asarray(deltas, np.float64)
        k, v, _ = self.deltas.shape
        if self.rest.shape != (v, 3):
            raise ValueError(f"rest {self.rest.shape} and deltas {self.deltas.shape} differ")
        if k == 0:
            raise ValueError("the template has no expression targets to fit")
        self.count = k
        self.moved = np.flatnonzero(np.abs(self.deltas).max((0, 2)) > moving)
        # (K, 3 * m): the moved vertices' deltas, channel-last flattened
        self._basis = np.ascontiguousarray(self.deltas[:, self.moved].reshape(k, -1))
        # (m, K (K + 1) / 2): each moved vertex's share of the normal matrix, B_v B_v^T, its
        # upper triangle only (symmetric: half the memory and the work), made in blocks of
        # vertices so that the whole (m, K, K) never exists
        moved = self.deltas[:, self.moved]
        self._upper = np.triu_indices(k)
        self._outer = np.empty((len(self.moved), len(self._upper[0])))
        for a in range(0, len(self.moved), 256):
            block = moved[:, a:a + 256]
            self._outer[a:a + 256] = np.einsum("kvc,jvc->vkj", block, block)[
                :, self._upper[0], self._upper[1]]
        self.pose_vertices = np.arange(v) if pose_vertices is None else np.asarray(pose_vertices)
        # (3, m, K): the moved vertices' deltas by coordinate, for the pose-weight cross terms
        self._by_axis = np.ascontiguousarray(moved.transpose(2, 1, 0))

    def shape(self, weights: np.ndarray) -> np.ndarray:
        """(N, K) -> (N, V, 3) head-local shapes."""
        k, v, _ = self.deltas.shape
        return self.rest + (weights @ self.deltas.reshape(k, -1)).reshape(-1, v, 3)

    def fit(self, positions: np.ndarray, seen: np.ndarray, prior: float = DEFAULT_PRIOR_M,
            rounds: int = 3, chunk: int = 64,
            progress: Callable[[int, int], None] | None = None,
            cancel: threading.Event | None = None) -> ExpressionFit | None:
        """positions (N, V, 3) camera space, seen (N, V) bool (frames that see nothing are fitted
        to all their vertices: the solve held or filled them). progress(done, total) after each
        chunk of frames; None when `cancel` is set (checked between chunks)."""
        positions = np.asarray(positions, np.float64)
        n, v, _ = positions.shape
        if positions.shape[1] != len(self.rest):
            raise ValueError(f"positions have {v} vertices, the template {len(self.rest)}")
        if prior <= 0:
            raise ValueError("the expression prior must be positive (metres)")
        weights = np.zeros((n, self.count))
        poses = np.empty((n, 4, 4))
        fitted = np.empty(positions.shape, np.float32)
        use = np.asarray(seen, bool).copy()
        use[~use.any(1)] = True
        for a in range(0, n, chunk):
            if cancel is not None and cancel.is_set():
                return None
            b = min(a + chunk, n)
            w, m = self._fit_chunk(positions[a:b], use[a:b], prior, rounds)
            weights[a:b], poses[a:b] = w, m
            fitted[a:b] = np.einsum("nij,nvj->nvi", m[:, :3, :3], self.shape(w)) + \
                m[:, None, :3, 3]
            if progress is not None:
                progress(b, n)
        return ExpressionFit(weights, poses, fitted)

    def _fit_chunk(self, x: np.ndarray, use: np.ndarray, prior: float, rounds: int):
        """Gauss-Newton on the pose and the weights together, from the neutral template's robust
        similarity: each round solves, in head-local coordinates, for a small rotation omega,
        scale change sigma, shift tau and the new weights w (bounded):
            R^T (x - t) / s - rest ~ (-[S]x) omega + S sigma + tau + B w,
        S the current shape, then composes the pose update. (Fitting the pose and the weights
        in turn converges slowly: a jaw opening is partly a scale and a shift.)"""
        n, k = len(x), self.count
        u = use.astype(np.float64)
        u /= np.maximum(u.sum(1), 1.0)[:, None]  # (n, V): each frame's seen vertices, mean
        u_moved = u[:, self.moved]
        lower = np.empty((n, k, k))  # the weights' block: fixed
        lower[:, self._upper[0], self._upper[1]] = upper = u_moved @ self._outer
        lower[:, self._upper[1], self._upper[0]] = upper
        lower += prior ** 2 * np.eye(k)
        sub = self.pose_vertices
        m = robust_similarity_fit_soa(np.ascontiguousarray(self.rest[sub].T),
                                      np.ascontiguousarray(x[:, sub].transpose(0, 2, 1)),
                                      use[:, sub].astype(np.float64) + 1e-6)
        scale = np.cbrt(np.linalg.det(m[:, :3, :3]))
        rot = m[:, :3, :3] / scale[:, None, None]
        shift = m[:, :3, 3].copy()
        w = np.zeros((n, k))
        free = np.ones((n, POSE_PARAMS + k), bool)  # the pose's parameters are never bounded
        normal = np.zeros((n, POSE_PARAMS + k, POSE_PARAMS + k))
        normal[:, POSE_PARAMS:, POSE_PARAMS:] = lower
        total = u.sum(1)  # 1, or 0 for a frame that sees nothing
        u3 = np.repeat(u_moved, 3, axis=1)
        for _ in range(rounds):
            local = np.einsum("nvi,nij->nvj", x - shift[:, None], rot) / scale[:, None, None]
            target = local - self.rest  # (n, V, 3)
            shape = self.shape(w)
            pose_normal, pose_rhs = pose_moments(shape, target, u, total)
            normal[:, :POSE_PARAMS, :POSE_PARAMS] = pose_normal
            cross = self._pose_cross(shape[:, self.moved] * u_moved[..., None], u_moved)
            normal[:, :POSE_PARAMS, POSE_PARAMS:] = cross
            normal[:, POSE_PARAMS:, :POSE_PARAMS] = cross.transpose(0, 2, 1)
            rhs = np.empty((n, POSE_PARAMS + k))
            rhs[:, :POSE_PARAMS] = pose_rhs
            rhs[:, POSE_PARAMS:] = (target[:, self.moved].reshape(n, -1) * u3) @ self._basis.T
            z = bounded_solve(normal, rhs, free, POSE_PARAMS)
            omega, sigma, tau, w = z[:, :3], z[:, 3], z[:, 4:7], z[:, POSE_PARAMS:]
            # x = s R ((I + [omega]x)(1 + sigma) S + tau) + t
            shift += scale[:, None] * np.einsum("nij,nj->ni", rot, tau)
            scale *= 1.0 + sigma
            rot = rot @ rodrigues(omega)
        m = np.zeros((n, 4, 4))
        m[:, :3, :3] = scale[:, None, None] * rot
        m[:, :3, 3] = shift
        m[:, 3, 3] = 1.0
        return w, m

    def _pose_cross(self, us: np.ndarray, u: np.ndarray) -> np.ndarray:
        """(n, 7, K): sum_v u_v J_v^T delta_kv over the moved vertices, from us = u S (n, m, 3)
        and u (n, m): rows S x delta (3), S . delta (1), delta (3), as small matrix products."""
        d = self._by_axis  # (3, m, K)
        us = np.ascontiguousarray(us.transpose(2, 0, 1))  # (3, n, m): BLAS wants unit strides
        prod = [[us[i] @ d[j] for j in range(3)] for i in range(3)]  # sum u S_i delta_j
        out = np.empty((len(u), POSE_PARAMS, self.count))
        out[:, 0] = prod[1][2] - prod[2][1]
        out[:, 1] = prod[2][0] - prod[0][2]
        out[:, 2] = prod[0][1] - prod[1][0]
        out[:, 3] = prod[0][0] + prod[1][1] + prod[2][2]
        for j in range(3):
            out[:, 4 + j] = u @ d[j]
        return out


POSE_PARAMS = 7  # rotation (3), scale (1), shift (3)


def cross_matrix(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3): [v]x, the matrix of v x (.)."""
    out = np.zeros(v.shape + (3,))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def pose_moments(shape: np.ndarray, target: np.ndarray, u: np.ndarray, total: np.ndarray):
    """The pose block of the normal equations, sum_v u_v J_v^T J_v (N, 7, 7), and of the right
    side, sum_v u_v J_v^T r_v (N, 7), for J_v = [-[S_v]x | S_v | I] (the derivative of (I +
    [omega]x)(1 + sigma) S + tau at zero by (omega, sigma, tau)), from a few weighted moments of
    the shapes S (N, V, 3) and the targets r (N, V, 3); u (N, V), total = u.sum(1)."""
    us = shape * u[..., None]
    first = us.sum(1)  # (N, 3)
    second = np.einsum("nvi,nvj->nij", us, shape)  # (N, 3, 3)
    square = np.trace(second, axis1=1, axis2=2)
    normal = np.zeros((len(u), POSE_PARAMS, POSE_PARAMS))
    normal[:, :3, :3] = square[:, None, None] * np.eye(3) - second
    normal[:, :3, 4:] = cross_matrix(first)
    normal[:, 4:, :3] = normal[:, :3, 4:].transpose(0, 2, 1)
    normal[:, 3, 3] = square
    normal[:, 3, 4:] = normal[:, 4:, 3] = first
    normal[:, 4:, 4:] = total[:, None, None] * np.eye(3)
    normal += 1e-12 * np.eye(POSE_PARAMS)
    rhs = np.empty((len(u), POSE_PARAMS))
    rhs[:, :3] = np.cross(us, target).sum(1)
    rhs[:, 3] = np.einsum("nvc,nvc->n", us, target)
    rhs[:, 4:] = np.einsum("nv,nvc->nc", u, target)
    return normal, rhs


def rodrigues(omega: np.ndarray) -> np.ndarray:
    """(N, 3) rotation vectors -> (N, 3, 3) rotations."""
    theta = np.linalg.norm(omega, axis=1)
    axis = omega / np.maximum(theta, 1e-300)[:, None]
    cross = cross_matrix(axis)
    sin, cos = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    return np.eye(3) + sin * cross + (1 - cos) * (cross @ cross)


def bounded_solve(normal: np.ndarray, rhs: np.ndarray, free: np.ndarray,
                  unbounded: int = 0, passes: int = 3) -> np.ndarray:
    """Per row n: argmin z^T A z / 2 - rhs^T z with z[unbounded:] in [0, 1], A = normal[n]
    (symmetric positive definite), by an active set: the bounded entries that leave the box
    are clipped and held, the others solved again (`free` (N, P): entries free to start with;
    not modified)."""
    n, k = rhs.shape
    free = free.copy()
    bounded = np.arange(k) >= unbounded
    z = np.zeros((n, k))
    eye = np.eye(k)
    for _ in range(passes):
        held = np.where(free, 0.0, z)
        b = rhs - np.einsum("nkj,nj->nk", normal, held)
        a = np.where(free[:, :, None] & free[:, None, :], normal, 0.0) + eye * ~free[:, :, None]
        z = np.where(free, spd_solve(a, np.where(free, b, 0.0)), held)
        out = free & bounded & ((z < 0) | (z > 1))
        if not out.any():
            break
        z[:, bounded] = np.clip(z[:, bounded], 0.0, 1.0)
        free &= ~out
    z[:, bounded] = np.clip(z[:, bounded], 0.0, 1.0)
    return z


def spd_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve a[n] x[n] = b[n] for a stack of small symmetric positive definite matrices a
    (N, K, K), b (N, K), by Cholesky, vectorised over N with elementwise numpy only. (A batch
    of LAPACK solves runs each tiny matrix through the threaded BLAS: on a busy CPU, as during a
    capture, its threads wait on each other for seconds.)"""
    n, k = b.shape
    low = np.zeros_like(a)
    for j in range(k):
        row = low[:, j, :j]
        d = np.sqrt(np.maximum(a[:, j, j] - np.einsum("ni,ni->n", row, row), 1e-300))
        low[:, j, j] = d
        if j + 1 < k:
            low[:, j + 1:, j] = (a[:, j + 1:, j] -
                                 np.einsum("nri,ni->nr", low[:, j + 1:, :j], row)) / d[:, None]
    y = np.empty_like(b)
    for j in range(k):  # L y = b
        y[:, j] = (b[:, j] - np.einsum("ni,ni->n", low[:, j, :j], y[:, :j])) / low[:, j, j]
    x = np.empty_like(b)
    for j in range(k - 1, -1, -1):  # L^T x = y
        x[:, j] = (y[:, j] - np.einsum("ni,ni->n", low[:, j + 1:, j], x[:, j + 1:])) / \
            low[:, j, j]
    return x
