# SPDX-License-Identifier: GPL-3.0-or-later
"""From per-frame predictions to a tracked, complete, fixed-topology face: the capture solve.

Per frame (`CaptureSolver.add`, streaming, O(vertices)):
  canonical inversion of every template vertex (warm-started from the last frame's complete mesh
  projected into this frame) -> lift by bilinear depth through the frame's camera -> robust rigid
  (similarity) head pose -> spike rejection -> harmonic fill of the unseen vertices' displacement.
At the end (`finish`): one camera for the shot, metric scale for relative-depth models, optional
zero-lag temporal filtering of head-local positions (never across a gap), markers, the Capture.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .capture import Capture
from .inversion import CanonicalMap, InversionSettings, invert
from .mesh_fill import MeshFiller, pose_scale, robust_similarity_fit, transform
from .pipeline import FramePrediction
from .template import Template


class SolveError(Exception):
    """The predictions cannot make a capture (the message says what to do)."""


@dataclass
class SolveSettings:
    max_residual: float = 0.02  # canonical units: a match further off is not a match
    min_weight: float = 0.5  # face weight every bilinear neighbour of a match must reach
    max_depth_spread: float = 0.04  # relative spread of the 4 depth samples (silhouette edges)
    min_visible: int = 12  # fewer observed vertices: the frame has no usable face
    spike_floor: float = 0.004  # metres; observed displacement jumps beyond this may be spikes
    temporal_sigma: float = 0.0  # frames; 0 = no temporal filtering
    marker_count: int = 0  # automatically seeded markers (farthest-point sampling)


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
        return np.einsum("...mkc,mk->...mc", vertices[..., self.vertices, :], self.weights)


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
    h, w = image.shape
    x = np.clip(p[:, 0] - 0.5, 0, w - 1.001)
    y = np.clip(p[:, 1] - 0.5, 0, h - 1.001)
    x0, y0 = x.astype(np.int64), y.astype(np.int64)
    fx, fy = x - x0, y - y0
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    c = np.stack([image[y0, x0], image[y0, x1], image[y1, x0], image[y1, x1]], 1)
    value = (c[:, 0] * (1 - fx) + c[:, 1] * fx) * (1 - fy) + (c[:, 2] * (1 - fx) + c[:, 3] * fx) * fy
    spread = (c.max(1) - c.min(1)) / np.maximum(np.abs(c).mean(1), 1e-12)
    return value, spread


def unproject(k: np.ndarray, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
    x = (uv[:, 0] - k[0, 2]) / k[0, 0]
    y = (uv[:, 1] - k[1, 2]) / k[1, 1]
    return np.stack([x * z, y * z, z], 1)


def project(k: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = points @ k.T
    return p[..., :2] / p[..., 2:3]


class CaptureSolver:
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
        self._last_positions: np.ndarray | None = None
        self._last_displacement: np.ndarray | None = None

    def add(self, prediction: FramePrediction) -> None:
        """Solve one frame (footage order)."""
        k = prediction.intrinsics
        crop = prediction.crop
        cmap = CanonicalMap(prediction.canonical, prediction.face_weight, self.settings.min_weight)
        warm = None
        continuous = bool(self.frames) and prediction.number == self.frames[-1] + 1
        if self._last_positions is not None and continuous:
            warm = crop.to_input(project(k, self._last_positions)).astype(np.float32)
        p, residual, ok = invert(cmap, self.targets, warm, self.inversion)
        z, spread = bilinear(prediction.depth, np.nan_to_num(p))
        ok &= (spread <= self.settings.max_depth_spread) & (z > 0) & np.isfinite(z)
        observed = unproject(k, crop.to_footage(np.nan_to_num(p)), z)
        positions, pose, ok = self._complete(observed, ok)
        self.frames.append(prediction.number)
        self.positions.append(positions.astype(np.float32))
        self.visible.append(ok)
        self.residuals.append(np.where(ok, residual, np.inf).astype(np.float32))
        self.poses.append(pose)
        self.intrinsics.append(k)

    def _complete(self, observed: np.ndarray, ok: np.ndarray):
        s = self.settings
        if ok.sum() < s.min_visible:
            if self._last_positions is None:
                pose = np.full((4, 4), np.nan)
                return np.full_like(observed, np.nan), pose, np.zeros_like(ok)
            positions = self._last_positions  # hold the last complete mesh through a dropout
            return positions, robust_similarity_fit(self.rest, positions,
                                                    np.ones(len(positions))), np.zeros_like(ok)
        pose = robust_similarity_fit(self.rest[ok], observed[ok], np.ones(ok.sum()))
        base = transform(pose, self.rest)
        displacement = observed - base
        spikes = self.filler.outliers(ok, displacement, s.spike_floor * pose_scale(pose))
        if spikes.any():
            ok = ok & ~spikes
            pose = robust_similarity_fit(self.rest[ok], observed[ok], np.ones(ok.sum()))
            base = transform(pose, self.rest)
            displacement = observed - base
        displacement = self.filler.fill(ok, displacement, self._last_displacement)
        positions = base + displacement
        self._last_positions, self._last_displacement = positions, displacement
        return positions, pose, ok

    # ------------------------------------------------------------------ the end of the shot

    def finish(self, *, camera: np.ndarray | None, footage_name: str,
               footage_size: tuple[int, int], fps: float, model, settings: dict) -> Capture:
        """The Capture. camera: the shot camera (footage pixels) to express every frame in, or
        None to keep each frame's own camera."""
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
            remap = np.linalg.inv(camera) @ intrinsics  # (N, 3, 3)
            positions = np.einsum("nij,nvj->nvi", remap, positions)
        else:
            camera = np.median(intrinsics, axis=0)
        weights = visible | ~seen[:, None]  # frames with no face: fit to the held mesh
        poses = np.stack([robust_similarity_fit(self.rest, x, w.astype(np.float64) + 1e-6)
                          for x, w in zip(positions, weights)])
        if getattr(model, "depth_units", "metric") == "relative":
            scale = float(np.median([pose_scale(m) for m in poses[seen]]))
            positions /= scale
            poses[:, :3, :] /= scale
            poses[:, 3, 3] = 1.0
        if self.settings.temporal_sigma > 0:
            positions = self._filter(positions, poses)
        markers = self.markers.positions(positions)
        marker_vis = visible[:, self.markers.vertices].all(2)
        marker_res = self._marker_residuals()
        t = self.template
        return Capture(
            template_name=t.name, canonical_space=t.canonical_space,
            rest_vertices=t.metric, template_canonical=t.canonical.astype(np.float32),
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
            settings={**settings, "solve": asdict(self.settings)})

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
