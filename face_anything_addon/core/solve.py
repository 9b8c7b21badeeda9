# SPDX-License-Identifier: GPL-3.0-or-later
"""From per-frame predictions to a tracked, complete, fixed-topology face: the capture solve.

Per frame (`CaptureSolver.add`, streaming, O(vertices), nothing that scales with the maps' size):
  canonical inversion of every template vertex (warm-started from the last two frames' complete
  meshes, extrapolated at constant velocity and projected into this frame) -> lift by bilinear
  depth through the frame's camera -> robust rigid (similarity) head pose -> spike rejection ->
  harmonic fill of the unseen vertices' displacement.
At the end (`finish`): one camera for the shot, head poses (batched over frames), metric scale for
relative-depth models, the expression fit (each frame's mesh as the template's expression targets,
e.g. ARKit, and a head pose: `expression_fit`; on by default, `SolveSettings.expressions`),
optional zero-lag temporal filtering of head-local positions (never across a gap), markers, the
Capture.

Internally per-frame fields are channel-first ((3, V)): every step is a few contiguous vector
operations; the stored per-frame arrays are (V, 3) as before.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .capture import Capture, CaptureError
from .expression_fit import (DEFAULT_DEPTH_WEIGHT, DEFAULT_IDENTITY_PRIOR_M,
                             DEFAULT_IDENTITY_ROUNDS, DEFAULT_PRIOR_M, ExpressionFit,
                             ExpressionModel)
from .inversion import CanonicalMap, InversionSettings, gather, invert_soa, pair_records
from .mesh_fill import MeshFiller, pose_scale, robust_similarity_fit_soa
from .pipeline import FramePrediction
from .template import Template


class SolveError(Exception):
    """The predictions cannot make a capture (the message says what to do)."""


@dataclass
class ActorFace:
    """An actor's neutral face found in an earlier capture, to use as it is: the same face in
    every shot of the actor (two halves of one shot, each fitted alone, give faces that differ
    about as much as they differ from the template)."""

    template_name: str
    weights: list  # the template's identity shapes' weights
    source: str = ""  # the capture file it came from

    @classmethod
    def from_capture(cls, path) -> "ActorFace":
        """The actor's face of a capture file; SolveError (saying what to do) when the file is
        no capture or was captured without the actor's face."""
        path = Path(path)
        try:
            capture = Capture.load(path)
        except CaptureError as exc:
            raise SolveError(f"the actor's face comes from a capture file: {exc}") from None
        if not np.size(capture.identity_weights):
            raise SolveError(f"{path.name} holds no actor's face: it was captured with the "
                             f"template's face (Actor's Face off, --neutral-face or --raw-mesh) "
                             f"or with a mesh without identity shapes; capture a shot of the "
                             f"actor with Actor's Face on and use that file")
        return cls(capture.template_name, [float(w) for w in capture.identity_weights],
                   str(path))


@dataclass
class SolveSettings:
    max_residual: float = 0.02  # canonical units: a match further off is not a match
    min_weight: float = 0.5  # face weight every bilinear neighbour of a match must reach
    max_depth_spread: float = 0.04  # relative spread of the 4 depth samples (silhouette edges)
    min_visible: int = 12  # fewer observed vertices: the frame has no usable face
    spike_floor: float = 0.004  # metres; observed displacement jumps beyond this may be spikes
    temporal_sigma: float = 0.0  # frames; 0 = no temporal filtering
    marker_count: int = 0  # automatically seeded markers (farthest-point sampling)
    expressions: bool = True  # the mesh as the template's expression targets (expression_fit)
    expression_prior_mm: float = DEFAULT_PRIOR_M * 1000  # misfit per unit of weight (RMS, mm)
    # the actor's neutral face from the template's identity shapes, once per shot, with the
    # expression fit (0 rounds: the template's neutral face)
    identity_rounds: int = DEFAULT_IDENTITY_ROUNDS
    identity_prior_mm: float = DEFAULT_IDENTITY_PRIOR_M * 1000  # misfit per std of identity
    # how much a point's error along its camera ray (depth) counts against its error across it
    depth_weight: float = DEFAULT_DEPTH_WEIGHT
    # the actor's face from an earlier capture, used as it is (then none is fitted)
    actor_face: ActorFace | None = None


@dataclass
class Markers:
    """Markers as points on the template: vertex triples and barycentric weights."""

    names: list[str]
    vertices: np.ndarray  # (M, 3) int
    weights: np.ndarray  # (M, 3)

    @classmethod
    def from_template(cls, template: Template, auto_count: int = 0,
                      picks: dict[str, np.ndarray] | None = None) -> "Markers":
        names = list(template.landmark_names)
        verts = [[v, v, v] for v in template.landmark_vertex.tolist()]
        weights = [[1.0, 0.0, 0.0]] * len(names)
        for i, v in enumerate(farthest_points(template.metric, auto_count,
                                              template.landmark_vertex)):
            names.append(f"auto_{i:03d}")
            verts.append([v, v, v])
            weights.append([1.0, 0.0, 0.0])
        for name, canonical in (picks or {}).items():
            tri, bary = closest_surface_point(template, np.asarray(canonical, np.float64))
            names.append(name)
            verts.append(tri.tolist())
            weights.append(bary.tolist())
        return cls(names, np.array(verts, np.int64).reshape(-1, 3),
                   np.array(weights, np.float64).reshape(-1, 3))

    def positions(self, vertices: np.ndarray) -> np.ndarray:
        """(..., V, 3) -> (..., M, 3)."""
        out = vertices[..., self.vertices[:, 0], :] * self.weights[:, 0:1]
        for k in (1, 2):
            if self.weights[:, k].any():
                out += vertices[..., self.vertices[:, k], :] * self.weights[:, k:k + 1]
        return out


def farthest_points(points: np.ndarray, count: int, seeds: np.ndarray = ()) -> list[int]:
    """`count` vertex indices spread evenly over `points` (farthest-point sampling), away from
    `seeds` as well."""
    if count <= 0:
        return []
    seeds = list(np.asarray(seeds, np.int64))
    start = seeds or [int(np.argmin(points[:, 1]))]
    dist = np.min(np.linalg.norm(points[None] - points[start][:, None], axis=2), axis=0)
    chosen = []
    for _ in range(min(count, len(points))):
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(points - points[i], axis=1))
    return chosen


def closest_surface_point(template: Template, canonical: np.ndarray):
    """Triangle vertices and barycentric weights of the template point nearest `canonical`."""
    tri = template.canonical[template.faces].astype(np.float64)  # (F, 3, 3)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac, ap = b - a, c - a, canonical - a
    d00, d01, d11 = (ab * ab).sum(1), (ab * ac).sum(1), (ac * ac).sum(1)
    d20, d21 = (ap * ab).sum(1), (ap * ac).sum(1)
    den = np.maximum(d00 * d11 - d01 * d01, 1e-30)
    v = np.clip((d11 * d20 - d01 * d21) / den, 0, 1)
    w = np.clip((d00 * d21 - d01 * d20) / den, 0, 1 - v)
    point = a + v[:, None] * ab + w[:, None] * ac
    f = int(np.argmin(np.linalg.norm(point - canonical, axis=1)))
    return template.faces[f], np.array([1 - v[f] - w[f], v[f], w[f]])


def bilinear(image: np.ndarray, p: np.ndarray):
    """Bilinear samples of an (H, W) map at pixel positions p (T, 2), and the spread of the four
    neighbours relative to their mean (large across a depth edge)."""
    image = np.asarray(image)
    h, w = image.shape
    q = np.array(np.asarray(p, np.float64).T)
    q[0] = np.clip(q[0], 0.5, w - 0.5)
    q[1] = np.clip(q[1], 0.5, h - 0.5)
    x, y = q[0] - 0.5, q[1] - 0.5
    x0 = np.minimum(np.floor(x), w - 2)
    y0 = np.minimum(np.floor(y), h - 2)
    index = (y0.astype(np.intp) * w + x0.astype(np.intp)) + np.array([[0], [w]], np.intp)
    return _bilinear_at(pair_records(image), image.dtype, index, x - x0, y - y0)


def _bilinear_at(records: np.ndarray, dtype, index: np.ndarray, fx: np.ndarray, fy: np.ndarray):
    """Value and relative spread of a scalar map at located positions (see CanonicalMap.locate)."""
    g = gather(records, index, dtype).transpose(0, 2, 1).copy()  # (2, 2, n): row, left/right
    side = g[:, 1] - g[:, 0]
    side *= fx
    side += g[:, 0]  # top and bottom rows interpolated along x
    value = side[1] - side[0]
    value *= fy
    value += side[0]
    corners = g.reshape(4, -1)
    spread = np.maximum.reduce(corners, axis=0)
    spread -= np.minimum.reduce(corners, axis=0)
    spread /= np.maximum(np.abs(corners).sum(0) * 0.25, 1e-12)
    return value, spread


@lru_cache(maxsize=4)
def _crop_affine(crop) -> tuple[np.ndarray, np.ndarray]:
    """A crop's model-input -> footage pixel map as origin + unit * p (crops are frozen, and a
    shot usually keeps one)."""
    origin = crop.to_footage(np.zeros((1, 2)))[0]
    return origin, crop.to_footage(np.ones((1, 2)))[0] - origin


def unproject(k: np.ndarray, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
    x = (uv[:, 0] - k[0, 2]) / k[0, 0]
    y = (uv[:, 1] - k[1, 2]) / k[1, 1]
    return np.stack([x * z, y * z, z], 1)


def into_camera(positions: np.ndarray, k_frames: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Frames' points (n, V, 3) seen through their own intrinsics (n, 3, 3) re-expressed in one
    `camera` (3, 3): every point keeps its footage pixel, and the head is moved along the view
    axis by the focal-length ratio at its centre while its relief is kept (depth shifted, not
    scaled). A network's depth of a face crop is consistent with the focal length it predicted
    for that crop: a shorter one places the face nearer with the same relief, so moving it keeps
    the face's shape, where scaling its depth with the distance would stretch or flatten it."""
    ratio = (camera[0, 0] + camera[1, 1]) / (k_frames[:, 0, 0] + k_frames[:, 1, 1])  # (n,)
    z = positions[..., 2]
    shift = (ratio - 1.0) * z.mean(1)  # (n,)
    factor = np.where(z > 0, (z + shift[:, None]) / np.where(z > 0, z, 1.0), ratio[:, None])
    pixels = np.matmul(positions, k_frames.transpose(0, 2, 1))  # (n, V, 3): u z, v z, z
    return np.matmul(pixels * factor[..., None], np.linalg.inv(camera).T)


def project(k: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = points @ k.T
    return p[..., :2] / p[..., 2:3]


class CaptureSolver:
    POSE_POINTS = 1024  # about this many vertices (a fixed, even spread) fit the head pose
    POSE_ROUNDS = 1  # robust reweighting rounds of the per-frame pose (the fill's frame)
    # conjugate-gradient tolerance of the fill (relative residual); warm-started each frame,
    # the filled vertices stay as close to the truth as with 1e-3 (bench/geometry_bench.py)
    FILL_TOLERANCE = 1e-2

    def __init__(self, template: Template, settings: SolveSettings | None = None,
                 markers: Markers | None = None):
        self.template = template
        self.settings = settings or SolveSettings()
        self.markers = markers or Markers.from_template(template, self.settings.marker_count)
        self.filler = MeshFiller(template.faces, template.vertex_count)
        self.rest = template.metric.astype(np.float64)
        self.targets = template.canonical.astype(np.float32)
        self.inversion = InversionSettings(max_residual=self.settings.max_residual,
                                           min_weight=self.settings.min_weight)
        self.frames: list[int] = []
        self.positions: list[np.ndarray] = []
        self.visible: list[np.ndarray] = []
        self.residuals: list[np.ndarray] = []
        self.poses: list[np.ndarray] = []
        self.intrinsics: list[np.ndarray] = []
        self._rest = np.ascontiguousarray(self.rest.T)  # (3, V)
        self._targets = np.ascontiguousarray(self.targets.T)  # (3, V)
        v = template.vertex_count
        self._pose_subset = np.arange(0, v, max(1, v // self.POSE_POINTS))
        self._last_positions: np.ndarray | None = None  # (3, V) the last complete mesh
        self._prev_positions: np.ndarray | None = None  # (3, V) the one before, if continuous
        self._last_local: np.ndarray | None = None  # (3, V) head-local displacement
        self._prev_local: np.ndarray | None = None
        self._last_visible: np.ndarray | None = None
        self._check_actor_face()

    def _check_actor_face(self) -> None:
        """An actor's face given must fit this template (checked before any frame is solved).
        Without the expression fit (turned off, or a mesh without targets) it is not used."""
        face = self.settings.actor_face
        if face is None or not self.fits_expressions:
            return
        source = Path(face.source).name or "the actor's face"
        shapes = len(self.template.identity_deltas)
        if face.template_name != self.template.name or len(face.weights) != shapes:
            raise SolveError(f"{source} holds a face for the mesh {face.template_name!r} with "
                             f"{len(face.weights)} identity shapes; this capture's mesh is "
                             f"{self.template.name!r} with {shapes}: use a capture made with "
                             f"the same model and mesh")

    def add(self, prediction: FramePrediction) -> None:
        """Solve one frame (footage order)."""
        k = np.asarray(prediction.intrinsics, np.float64)
        crop = prediction.crop
        cmap = CanonicalMap(prediction.canonical, prediction.face_weight, self.settings.min_weight)
        origin, unit = _crop_affine(crop)  # model-input pixel -> footage pixel
        continuous = bool(self.frames) and prediction.number == self.frames[-1] + 1
        warm, tracked = self._predict(k, origin, unit) if continuous else (None, None)
        p, residual, ok = invert_soa(cmap, self._targets, warm, self.inversion, tracked)
        z, spread = self._depth(prediction.depth, cmap, p)
        ok &= (spread <= self.settings.max_depth_spread) & (z > 0) & np.isfinite(z)
        # unproject the footage pixel (origin + unit * p) at depth z
        observed = np.empty((3, len(z)))
        for i in (0, 1):
            a = unit[i] / k[i, i]
            b = (origin[i] - k[i, 2]) / k[i, i]
            np.multiply(p[i], a, out=observed[i])
            observed[i] += b
            observed[i] *= z
        observed[2] = z
        positions, pose, ok = self._complete(observed, ok, continuous)
        self.frames.append(prediction.number)
        self.positions.append(positions.T.astype(np.float32))
        self.visible.append(ok)
        self.residuals.append(np.where(ok, residual, np.inf).astype(np.float32))
        self.poses.append(pose)
        self.intrinsics.append(k)

    def _predict(self, k: np.ndarray, origin: np.ndarray, unit: np.ndarray):
        """Warm starts (2, V) in this frame's model-input pixels (the next frame after the last
        one), and which vertices were seen in the last frame."""
        if self._last_positions is None:
            return None, None
        x = self._last_positions
        if self._prev_positions is not None:  # constant velocity
            x = 2.0 * x - self._prev_positions
        proj = k @ x
        warm = np.empty((2, x.shape[1]), np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            for i in (0, 1):
                warm[i] = (proj[i] / proj[2] - origin[i]) / unit[i]
        return warm, self._last_visible

    def _depth(self, depth: np.ndarray, cmap: CanonicalMap, p: np.ndarray):
        """Bilinear depth at p (2, V) (nan: anywhere) and the spread of its four samples."""
        depth = np.asarray(depth)
        if depth.shape != (cmap.h, cmap.w):
            return bilinear(depth, np.nan_to_num(p, nan=0.5).T)
        located = cmap.located(p)
        if located is None:
            c = np.nan_to_num(p, nan=0.5)
            c -= 0.5
            located = cmap.locate(cmap.clip_corner(c))
        index, f = located
        return _bilinear_at(pair_records(depth), depth.dtype, index, f[0], f[1])

    def _complete(self, observed: np.ndarray, ok: np.ndarray, continuous: bool):
        """observed (3, V) (meaningful where ok) -> the complete mesh (3, V), pose, ok.
        continuous: this frame follows the last one (the two may give a velocity)."""
        s = self.settings
        number_seen = int(ok.sum())
        if number_seen < s.min_visible:
            self._prev_positions = self._prev_local = None
            self._last_visible = np.zeros_like(ok)
            if self._last_positions is None:
                pose = np.full((4, 4), np.nan)
                return np.full_like(observed, np.nan), pose, np.zeros_like(ok)
            positions = self._last_positions  # hold the last complete mesh through a dropout
            return positions, robust_similarity_fit_soa(self._rest, positions,
                                                        np.ones(positions.shape[1])), \
                np.zeros_like(ok)
        fit = self._pose_subset[ok[self._pose_subset]]
        if len(fit) < min(number_seen, 3 * s.min_visible, 256):  # a small face: all it shows
            fit = np.flatnonzero(ok)
        pose = self._fit_pose(observed, fit)
        # head-local displacement from the posed template (rotation and scale commute with the
        # Laplacian: it is what gets filled; head motion does not change it, only expression)
        local = self._local(pose, observed, ok)
        spikes = self.filler.outliers_soa(ok, local, s.spike_floor)
        if spikes.any():
            ok = ok & ~spikes
            if spikes[fit].any():
                fit = fit[~spikes[fit]]
                pose = self._fit_pose(observed, fit)
            local = self._local(pose, observed, ok)
        guess = None  # warm start: the last frames' (at constant velocity when in a row)
        if self._last_local is not None:
            guess = self._last_local
            if self._prev_local is not None and continuous:
                guess = 2.0 * guess - self._prev_local
        local = self.filler.fill_soa(ok, local, guess, self.FILL_TOLERANCE)
        positions = pose[:3, :3] @ (local + self._rest)
        positions += pose[:3, 3:]
        self._prev_positions = self._last_positions if continuous else None
        self._prev_local = self._last_local if continuous else None
        self._last_positions, self._last_local = positions, local
        self._last_visible = ok
        return positions, pose, ok

    def _fit_pose(self, observed: np.ndarray, fit: np.ndarray) -> np.ndarray:
        return robust_similarity_fit_soa(self._rest.take(fit, axis=1), observed.take(fit, axis=1),
                                         np.ones(len(fit)), self.POSE_ROUNDS)

    def _local(self, pose: np.ndarray, observed: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """(3, V) observed displacement from the posed template, in the template's frame and
        units (0 where not ok)."""
        m = pose[:3, :3]
        inverse = m.T / (m[:, 0] @ m[:, 0])  # (s R)^-1 = R^T / s
        local = inverse @ (observed - pose[:3, 3:])
        local -= self._rest
        return np.where(ok, local, 0.0)

    # ------------------------------------------------------------------ the end of the shot

    def finish(self, *, camera: np.ndarray | None, footage_name: str,
               footage_size: tuple[int, int], fps: float, model, settings: dict,
               progress=None, cancel=None) -> Capture | None:
        """The Capture. camera: the shot camera (footage pixels) to express every frame in, or
        None to keep each frame's own camera. progress(done, total) and cancel (an Event; then
        None is returned): for the expression fit, the one part that takes a while."""
        if not self.frames:
            raise SolveError("no frame was solved")
        positions = np.stack(self.positions).astype(np.float64)
        visible = np.stack(self.visible)
        intrinsics = np.stack(self.intrinsics)
        seen = visible.any(1)
        if not seen.any():
            raise SolveError("no face was found in any frame: check the footage and the face "
                             "region, or try another model")
        positions = _fill_dropouts(positions, seen)
        if camera is not None:  # re-express each frame through the one shot camera
            camera = np.asarray(camera, np.float64)
            differ = np.flatnonzero((intrinsics != camera).any((1, 2)))  # others: as they are
            if differ.size:
                positions[differ] = into_camera(positions[differ], intrinsics[differ], camera)
        else:
            camera = np.median(intrinsics, axis=0)
        weights = visible | ~seen[:, None]  # frames with no face: fit to the held mesh
        poses = self._poses(positions, weights)
        if getattr(model, "depth_units", "metric") == "relative":
            scale = float(np.median([pose_scale(m) for m in poses[seen]]))
            positions /= scale
            poses[:, :3, :] /= scale
            poses[:, 3, 3] = 1.0
        names, weights = [], np.zeros((len(positions), 0), np.float32)
        rest, identity = self.template.metric, np.zeros(0)
        if self.fits_expressions:
            fit = self.fit_expressions(positions, visible, progress=progress, cancel=cancel)
            if fit is None:
                return None
            positions, poses, rest = fit.positions, fit.poses, fit.rest
            identity = fit.identity
            names, weights = list(self.template.blendshape_names), fit.weights
        if self.settings.temporal_sigma > 0:
            positions = self._filter(positions, poses)
        markers = self.markers.positions(positions)
        marker_vis = visible[:, self.markers.vertices].all(2)
        marker_res = self._marker_residuals()
        t = self.template
        return Capture(
            template_name=t.name, canonical_space=t.canonical_space,
            rest_vertices=rest.astype(np.float32), template_canonical=t.canonical.astype(np.float32),
            faces=t.faces.astype(np.int32),
            uvs=t.uvs.astype(np.float32), region_names=list(t.region_names),
            vertex_region=t.vertex_region.astype(np.int16),
            frame_numbers=np.array(self.frames, np.int64),
            positions=positions.astype(np.float32), visibility=visible,
            head_pose=poses.astype(np.float32), intrinsics=intrinsics.astype(np.float64),
            camera=np.asarray(camera, np.float64), marker_names=list(self.markers.names),
            marker_xy=project(camera, markers).astype(np.float32),
            marker_xyz=markers.astype(np.float32), marker_visible=marker_vis,
            marker_residual=marker_res, footage_name=footage_name,
            footage_size=tuple(int(v) for v in footage_size), fps=float(fps),
            model_name=getattr(model, "name", "") or str(getattr(model, "path", "")),
            contract_version=getattr(model, "contract", ""),
            depth_units=getattr(model, "depth_units", "metric"),
            settings={**settings, "solve": asdict(self.settings)},
            expression_names=names, expression_weights=weights.astype(np.float32),
            identity_weights=np.asarray(identity, np.float32))

    def fit_expressions(self, positions: np.ndarray, seen: np.ndarray, progress=None,
                        cancel=None) -> ExpressionFit | None:
        """The settings' expression fit (and the actor's face) of camera-space meshes (N, V, 3)
        whose vertices `seen` (N, V) the frames observed; None when cancelled."""
        s = self.settings
        model = ExpressionModel(self.rest, self.template.blendshape_deltas, self._pose_subset,
                                identity=self.template.identity_deltas)
        actor = None if s.actor_face is None else np.asarray(s.actor_face.weights, np.float64)
        return model.fit(positions, seen, s.expression_prior_mm / 1000, progress=progress,
                         cancel=cancel, identity_prior=s.identity_prior_mm / 1000,
                         identity_rounds=s.identity_rounds, depth_weight=s.depth_weight,
                         actor=actor)

    @property
    def fits_expressions(self) -> bool:
        """Whether `finish` fits the template's expression targets (asked for, and it has some)."""
        return self.settings.expressions and len(self.template.blendshape_names) > 0

    def _poses(self, positions: np.ndarray, weights: np.ndarray, chunk: int = 64) -> np.ndarray:
        """Robust similarity fits of the template to each frame's mesh (N, V, 3), weighted by
        (N, V) (hidden vertices count a millionth), on the pose subset of vertices; batched over
        frames, `chunk` at a time (memory stays O(chunk x vertices))."""
        sub = self._pose_subset
        rest = self._rest[:, sub]
        poses = np.empty((len(positions), 4, 4))
        for i in range(0, len(positions), chunk):
            x = np.ascontiguousarray(positions[i:i + chunk][:, sub].transpose(0, 2, 1))
            w = weights[i:i + chunk][:, sub].astype(np.float64) + 1e-6
            poses[i:i + chunk] = robust_similarity_fit_soa(rest, x, w)
        return poses

    def _marker_residuals(self) -> np.ndarray:
        res = np.stack(self.residuals)[:, self.markers.vertices]  # (N, M, 3)
        return np.where(np.isfinite(res), res, np.nan).max(2).astype(np.float32)

    def _filter(self, positions: np.ndarray, poses: np.ndarray) -> np.ndarray:
        """Zero-lag Gaussian filtering of head-local positions, segment by segment (a gap in the
        frame numbers starts a new segment), then back through each frame's own pose."""
        inv = np.linalg.inv(poses)
        local = np.einsum("nij,nvj->nvi", inv[:, :3, :3], positions) + inv[:, None, :3, 3]
        frames = np.array(self.frames)
        breaks = np.flatnonzero(np.diff(frames) != 1) + 1
        for segment in np.split(np.arange(len(frames)), breaks):
            local[segment] = _gaussian_along_frames(local[segment], self.settings.temporal_sigma)
        return np.einsum("nij,nvj->nvi", poses[:, :3, :3], local) + poses[:, None, :3, 3]


def _gaussian_along_frames(x: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase Gaussian over axis 0; near the ends the kernel is renormalised over the frames
    that exist (no pull towards repeated end values). One pass per tap: memory stays O(x)."""
    n = len(x)
    if n < 2:
        return x
    radius = max(1, int(3 * sigma))
    out = np.zeros_like(x)
    total = np.zeros(n)
    for offset in range(-radius, radius + 1):
        weight = np.exp(-0.5 * (offset / sigma) ** 2)
        lo, hi = max(0, -offset), min(n, n - offset)
        if hi <= lo:
            continue
        out[lo:hi] += weight * x[lo + offset:hi + offset]
        total[lo:hi] += weight
    return out / total.reshape((n,) + (1,) * (x.ndim - 1))


def _fill_dropouts(positions: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Frames before the first face take the first solved mesh."""
    if not seen[0]:
        first = int(np.argmax(seen))
        positions[:first] = positions[first]
    return positions
