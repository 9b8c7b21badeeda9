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

The actor's face (`identity`): heads differ from the template's neutral head, and a fit with
expressions alone explains the difference as expressions (a broad nose as a sneer, a long chin
as a jaw opening, in every frame). With the template's identity shapes I (J, V, 3), each one
standard deviation of the synthetic heads' spread, one set of identity weights a for the whole
shot moves the neutral face to `rest + I a`:

    minimise  mean_n [ sum_v u[n, v] |R_n^T (x[n, v] - t_n) / s_n - rest_v - I_v a - E_v w_n|^2
                       / sum_v u[n, v] + prior^2 |w_n|^2 ]  +  identity_prior^2 |a|^2

on up to 64 frames spread over the shot: each round fits those frames' expressions on the
current face, then takes one Gauss-Newton step on their poses, their weights that are not at a
bound and a together, the frames' own unknowns eliminated (a Schur complement: one J x J solve;
an identity shape and an expression that look alike, a long chin and an opened jaw, are told
apart only together, and by the weights' bound at 0: an actor is at times at rest). Then every
frame's expressions on the face found. The shot's neutral face is `ExpressionFit.rest`.

Depth (`depth_weight`): a tracked point's error along its camera ray (its depth, the network's
smoothest output) counts `depth_weight` times its error across the ray (its place in the
image). Each Gauss-Newton round first moves every point along its ray 1 - depth_weight of the
way to the current fit (an expectation-maximisation step of that weighted least squares), so only
isotropic normal equations are ever formed; a target that moves points mostly along the rays
converges over more rounds.

Everything is batched over frames (`chunk` at a time); nothing loops over vertices.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .mesh_fill import robust_similarity_fit_soa

# the defaults suit the bundled model's maps (chosen on held-out clips: `training.tune_solve`)
DEFAULT_PRIOR_M = 0.004  # 4 mm RMS misfit per unit of weight
DEFAULT_IDENTITY_PRIOR_M = 0.002  # 2 mm RMS misfit per standard deviation of identity
DEFAULT_IDENTITY_ROUNDS = 2
DEFAULT_IDENTITY_FRAMES = 64
DEFAULT_DEPTH_WEIGHT = 0.3


@dataclass
class ExpressionFit:
    weights: np.ndarray  # (N, K) in [0, 1]
    poses: np.ndarray  # (N, 4, 4) camera-from-head similarity
    positions: np.ndarray  # (N, V, 3) float32, the fitted mesh, camera space
    rest: np.ndarray  # (V, 3) the shot's neutral face, head-local: rest + identity weights
    identity: np.ndarray  # (J,) the identity shapes' weights (empty: none fitted or given)


class ExpressionModel:
    """rest (V, 3) metres and deltas (K, V, 3) metres (the template's neutral face and targets).
    Only the vertices some target moves (by more than `moving` metres) enter the weights' solve;
    the starting pose uses the `pose_vertices` given (e.g. the solve's even spread), the
    Gauss-Newton rounds every vertex. `identity` (J, V, 3) metres: the identity shapes fitted
    once per shot (none: the neutral face is `rest`)."""

    def __init__(self, rest: np.ndarray, deltas: np.ndarray,
                 pose_vertices: np.ndarray | None = None, moving: float = 1e-5,
                 identity: np.ndarray | None = None):
        self.rest = np.asarray(rest, np.float64)
        self.deltas = np.asarray(deltas, np.float64)
        k, v, _ = self.deltas.shape
        if self.rest.shape != (v, 3):
            raise ValueError(f"rest {self.rest.shape} and deltas {self.deltas.shape} differ")
        if k == 0:
            raise ValueError("the template has no expression targets to fit")
        self.identity = (np.zeros((0, v, 3)) if identity is None
                         else np.asarray(identity, np.float64))
        if self.identity.shape[1:] != (v, 3):
            raise ValueError(f"identity {self.identity.shape} and rest {self.rest.shape} differ")
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
        # the identity's: by coordinate (3, V, J); each moved vertex's products with the
        # targets (m, K J) and each vertex's with itself (V, J J)
        j = len(self.identity)
        self._id_by_axis = np.ascontiguousarray(self.identity.transpose(2, 1, 0))
        self._expr_id = np.einsum("kvc,jvc->vkj", moved, self.identity[:, self.moved]).reshape(
            len(self.moved), k * j)
        self._id_outer = np.einsum("ivc,jvc->vij", self.identity, self.identity).reshape(
            v, j * j)
        # (3, m, K): the moved vertices' deltas by coordinate, for the pose-weight cross terms
        self._by_axis = np.ascontiguousarray(moved.transpose(2, 1, 0))

    def shape(self, weights: np.ndarray, rest: np.ndarray | None = None) -> np.ndarray:
        """(N, K) -> (N, V, 3) head-local shapes (on `rest`, by default the template's)."""
        k, v, _ = self.deltas.shape
        rest = self.rest if rest is None else rest
        return rest + (weights @ self.deltas.reshape(k, -1)).reshape(-1, v, 3)

    def fit(self, positions: np.ndarray, seen: np.ndarray, prior: float = DEFAULT_PRIOR_M,
            rounds: int = 3, chunk: int = 64,
            progress: Callable[[int, int], None] | None = None,
            cancel: threading.Event | None = None,
            identity_prior: float = DEFAULT_IDENTITY_PRIOR_M,
            identity_rounds: int = DEFAULT_IDENTITY_ROUNDS,
            identity_frames: int = DEFAULT_IDENTITY_FRAMES,
            depth_weight: float = DEFAULT_DEPTH_WEIGHT,
            actor: np.ndarray | None = None) -> ExpressionFit | None:
        """positions (N, V, 3) camera space, seen (N, V) bool (frames that see nothing are fitted
        to all their vertices: the solve held or filled them). With identity shapes, the shot's
        neutral face is fitted first: `identity_rounds` rounds (0: none) of expressions then
        identity on up to `identity_frames` frames spread over those that see the face; then
        every frame's expressions on it. A point's error along its camera ray (its depth) counts
        `depth_weight` times its error across it (each round moves the points along their rays
        part of the way to the fit). `actor` (J,): identity weights to use as they are (an
        actor's face found in another shot); then none is fitted. progress(done, total) after
        each chunk of frames of each pass; None when `cancel` is set (checked between chunks)."""
        positions = np.asarray(positions, np.float64)
        n, v, _ = positions.shape
        if positions.shape[1] != len(self.rest):
            raise ValueError(f"positions have {v} vertices, the template {len(self.rest)}")
        if prior <= 0:
            raise ValueError("the expression prior must be positive (metres)")
        if identity_prior <= 0:
            raise ValueError("the identity prior must be positive (metres)")
        if not 0 < depth_weight <= 1:
            raise ValueError(f"the depth weight must be above 0 and at most 1, not {depth_weight}")
        seen = np.asarray(seen, bool)
        use = seen.copy()
        use[~use.any(1)] = True
        face = np.flatnonzero(seen.any(1))
        sample = face[np.unique(np.linspace(0, len(face) - 1, min(len(face), identity_frames)
                                            ).round().astype(int))] if len(face) else face
        rounds_id = identity_rounds if len(self.identity) and len(sample) else 0
        rest, coefficients = self.rest, np.zeros(len(self.identity))
        if actor is not None:
            coefficients = np.asarray(actor, np.float64)
            if coefficients.shape != (len(self.identity),):
                raise ValueError(f"{coefficients.shape[0] if coefficients.ndim else 0} identity "
                                 f"weights given for {len(self.identity)} identity shapes")
            rest, rounds_id = self.rest + np.tensordot(coefficients, self.identity, 1), 0
        total = rounds_id * len(sample) + n
        for r in range(rounds_id):
            step = None if progress is None else (
                lambda done, _, r=r: progress(r * len(sample) + done, total))
            fitted = self._fit_frames(positions[sample], use[sample], prior, rounds, chunk, rest,
                                      depth_weight, step, cancel)
            if fitted is None:
                return None
            coefficients = self._fit_identity(positions[sample], seen[sample], *fitted,
                                              coefficients, identity_prior, prior, depth_weight)
            rest = self.rest + np.tensordot(coefficients, self.identity, 1)
        step = None if progress is None else (
            lambda done, _: progress(rounds_id * len(sample) + done, total))
        fitted = self._fit_frames(positions, use, prior, rounds, chunk, rest, depth_weight, step,
                                  cancel)
        if fitted is None:
            return None
        weights, poses = fitted
        positions = (np.einsum("nij,nvj->nvi", poses[:, :3, :3], self.shape(weights, rest)) +
                     poses[:, None, :3, 3]).astype(np.float32)
        fitted_or_given = rounds_id > 0 or actor is not None
        return ExpressionFit(weights, poses, positions, rest,
                             coefficients if fitted_or_given else np.zeros(0))

    def _fit_frames(self, positions, use, prior, rounds, chunk, rest, depth_weight, progress,
                    cancel):
        """Weights (N, K) and poses (N, 4, 4) of every frame on the neutral face `rest`, `chunk`
        frames at a time; None when cancelled."""
        n = len(positions)
        weights = np.zeros((n, self.count))
        poses = np.empty((n, 4, 4))
        for a in range(0, n, chunk):
            if cancel is not None and cancel.is_set():
                return None
            b = min(a + chunk, n)
            weights[a:b], poses[a:b] = self._fit_chunk(positions[a:b], use[a:b], prior, rounds,
                                                       rest, depth_weight)
            if progress is not None:
                progress(b, n)
        return weights, poses

    def _fit_identity(self, positions, seen, weights, poses, coefficients, prior, wprior,
                      depth_weight, chunk: int = 64):
        """The identity weights (J,) for frames fitted at (weights, poses) on the neutral face
        rest + identity . coefficients: one Gauss-Newton step on every frame's pose, its
        weights that are not at a bound, and the shot's identity weights together, the frames'
        own unknowns eliminated (a Schur complement: a J x J solve). Fitting the identity
        with the frames' expressions held converges slowly where an identity shape and an
        expression look alike (a long chin, an opened jaw); together, in a round or two."""
        j, k = len(self.identity), self.count
        frames = np.flatnonzero(seen.any(1))
        if not len(frames):
            return coefficients
        rest = self.rest + np.tensordot(coefficients, self.identity, 1)
        schur = len(frames) * prior ** 2 * np.eye(j)
        pull = -len(frames) * prior ** 2 * coefficients
        for a in range(0, len(frames), chunk):
            f = frames[a:a + chunk]
            n = len(f)
            weighting = self._weighting(seen[f], wprior)
            u = weighting[0]
            m = poses[f]
            scale = np.cbrt(np.linalg.det(m[:, :3, :3]))
            rot = m[:, :3, :3] / scale[:, None, None]
            w = weights[f]
            normal, rhs, target, shape = self._system(
                positions[f], rays(positions[f]), weighting, rest, scale, rot, m[:, :3, 3], w,
                depth_weight)
            # the identity's columns: pose rows, weight rows; its own block and right side
            cross = np.empty((n, POSE_PARAMS + k, j))
            cross[:, :POSE_PARAMS] = self._pose_cross(shape * u[..., None], u, self._id_by_axis)
            cross[:, POSE_PARAMS:] = (u[:, self.moved] @ self._expr_id).reshape(n, k, j)
            own = (u @ self._id_outer).reshape(n, j, j)
            right = np.einsum("nv,nvc,jvc->nj", u, target, self.identity)
            # weights at a bound stay there: their terms move to the right sides
            held = np.zeros((n, POSE_PARAMS + k), bool)
            held[:, POSE_PARAMS:] = (w <= 0) | (w >= 1)
            fixed = np.where(held, np.pad(w, ((0, 0), (POSE_PARAMS, 0))), 0.0)
            rhs = rhs - np.einsum("nab,nb->na", normal, fixed)
            right -= np.einsum("naj,na->nj", cross, fixed)
            both = held[:, :, None] | held[:, None, :]
            normal = np.where(both, 0.0, normal) + np.eye(POSE_PARAMS + k) * held[:, :, None]
            cross = np.where(held[:, :, None], 0.0, cross)
            rhs = np.where(held, 0.0, rhs)
            solved = spd_solve(normal, np.concatenate([cross, rhs[..., None]], 2))
            schur += own.sum(0) - np.einsum("naj,nal->jl", cross, solved[..., :j])
            pull += right.sum(0) - np.einsum("naj,na->j", cross, solved[..., j])
        return coefficients + np.linalg.solve(schur, pull)

    def _weighting(self, use: np.ndarray, prior: float):
        """Each frame's vertex weights u (n, V) (its seen vertices' mean), those of the moved
        vertices (n, m) and repeated per coordinate (n, 3 m), their sums (n,), and the
        weights' block of the normal matrix with the prior (n, K, K)."""
        n, k = len(use), self.count
        u = use.astype(np.float64)
        u /= np.maximum(u.sum(1), 1.0)[:, None]
        u_moved = u[:, self.moved]
        lower = np.empty((n, k, k))
        lower[:, self._upper[0], self._upper[1]] = upper = u_moved @ self._outer
        lower[:, self._upper[1], self._upper[0]] = upper
        lower += prior ** 2 * np.eye(k)
        return u, u_moved, np.repeat(u_moved, 3, axis=1), u.sum(1), lower

    def _system(self, x, ray, weighting, rest, scale, rot, shift, w, depth_weight):
        """The Gauss-Newton normal equations of every frame at its pose (scale, rot, shift) and
        weights w on the neutral face `rest`, in head-local coordinates (see `_fit_chunk`):
        normal (n, 7 + K, 7 + K), rhs (n, 7 + K), the target R^T (x - t) / s - rest (n, V, 3)
        and the current shape (n, V, 3). With depth_weight < 1 each point is first moved along
        its camera ray part of the way to the current fit."""
        u, u_moved, u3, total, lower = weighting
        n, k = len(x), self.count
        shape = self.shape(w, rest)
        if depth_weight < 1:
            model = scale[:, None, None] * np.einsum("nij,nvj->nvi", rot, shape) + shift[:, None]
            along = np.einsum("nvc,nvc->nv", model - x, ray)
            x = x + ((1 - depth_weight) * along)[..., None] * ray
        local = np.einsum("nvi,nij->nvj", x - shift[:, None], rot) / scale[:, None, None]
        target = local - rest
        normal = np.empty((n, POSE_PARAMS + k, POSE_PARAMS + k))
        normal[:, POSE_PARAMS:, POSE_PARAMS:] = lower
        pose_normal, pose_rhs = pose_moments(shape, target, u, total)
        normal[:, :POSE_PARAMS, :POSE_PARAMS] = pose_normal
        cross = self._pose_cross(shape[:, self.moved] * u_moved[..., None], u_moved)
        normal[:, :POSE_PARAMS, POSE_PARAMS:] = cross
        normal[:, POSE_PARAMS:, :POSE_PARAMS] = cross.transpose(0, 2, 1)
        rhs = np.empty((n, POSE_PARAMS + k))
        rhs[:, :POSE_PARAMS] = pose_rhs
        rhs[:, POSE_PARAMS:] = (target[:, self.moved].reshape(n, -1) * u3) @ self._basis.T
        return normal, rhs, target, shape

    def _fit_chunk(self, x: np.ndarray, use: np.ndarray, prior: float, rounds: int,
                   rest: np.ndarray, depth_weight: float = 1.0):
        """Gauss-Newton on the pose and the weights together, from the neutral template's robust
        similarity: each round solves, in head-local coordinates, for a small rotation omega,
        scale change sigma, shift tau and the new weights w (bounded):
            R^T (x - t) / s - rest ~ (-[S]x) omega + S sigma + tau + B w,
        S the current shape, then composes the pose update. (Fitting the pose and the weights
        in turn converges slowly: a jaw opening is partly a scale and a shift.)"""
        n, k = len(x), self.count
        weighting = self._weighting(use, prior)
        sub = self.pose_vertices
        m = robust_similarity_fit_soa(np.ascontiguousarray(rest[sub].T),
                                      np.ascontiguousarray(x[:, sub].transpose(0, 2, 1)),
                                      use[:, sub].astype(np.float64) + 1e-6)
        scale = np.cbrt(np.linalg.det(m[:, :3, :3]))
        rot = m[:, :3, :3] / scale[:, None, None]
        shift = m[:, :3, 3].copy()
        w = np.zeros((n, k))
        free = np.ones((n, POSE_PARAMS + k), bool)  # the pose's parameters are never bounded
        ray = rays(x)
        for _ in range(rounds):
            normal, rhs, _, _ = self._system(x, ray, weighting, rest, scale, rot, shift, w,
                                             depth_weight)
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

    def _pose_cross(self, us: np.ndarray, u: np.ndarray,
                    by_axis: np.ndarray | None = None) -> np.ndarray:
        """(n, 7, K): sum_v u_v J_v^T delta_kv over the moved vertices, from us = u S (n, m, 3)
        and u (n, m): rows S x delta (3), S . delta (1), delta (3), as small matrix products.
        by_axis: other deltas (3, m, J) by coordinate (default: the targets')."""
        d = self._by_axis if by_axis is None else by_axis  # (3, m, K)
        us = np.ascontiguousarray(us.transpose(2, 0, 1))  # (3, n, m): BLAS wants unit strides
        prod = [[us[i] @ d[j] for j in range(3)] for i in range(3)]  # sum u S_i delta_j
        out = np.empty((len(u), POSE_PARAMS, d.shape[2]))
        out[:, 0] = prod[1][2] - prod[2][1]
        out[:, 1] = prod[2][0] - prod[0][2]
        out[:, 2] = prod[0][1] - prod[1][0]
        out[:, 3] = prod[0][0] + prod[1][1] + prod[2][2]
        for j in range(3):
            out[:, 4 + j] = u @ d[j]
        return out


POSE_PARAMS = 7  # rotation (3), scale (1), shift (3)


def rays(points: np.ndarray) -> np.ndarray:
    """(..., 3) camera-space points -> unit vectors from the camera's centre through them."""
    return points / np.maximum(np.linalg.norm(points, axis=-1, keepdims=True), 1e-12)


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
    (N, K, K), b (N, K) or (N, K, M), by Cholesky, vectorised over N with elementwise numpy only.
    (A batch of LAPACK solves runs each tiny matrix through the threaded BLAS: on a busy CPU, as
    during a capture, its threads wait on each other for seconds.)"""
    if b.ndim == 3:
        return spd_solve_many(a, b)
    return spd_solve_many(a, b[..., None])[..., 0]


def spd_solve_many(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """spd_solve for right sides b (N, K, M)."""
    n, k, _ = b.shape
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
        y[:, j] = (b[:, j] - np.einsum("ni,nim->nm", low[:, j, :j], y[:, :j])) / \
            low[:, j, j, None]
    x = np.empty_like(b)
    for j in range(k - 1, -1, -1):  # L^T x = y
        x[:, j] = (y[:, j] - np.einsum("ni,nim->nm", low[:, j + 1:, j], x[:, j + 1:])) / \
            low[:, j, j, None]
    return x
