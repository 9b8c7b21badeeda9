# SPDX-License-Identifier: GPL-3.0-or-later
"""Exact prediction maps for tests and benchmarks of the geometry core.

A face-like mesh (a grid on a bulging ellipsoid cap) with a known canonical coordinate per vertex
is deformed, posed and rasterised through a known pinhole camera into depth and canonical maps
with a z-buffer, perspective-correct. Ground truth: each vertex's projection, camera-space
position and visibility. Not a hot path: a loop over triangles is fine here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FaceMesh:
    rest: np.ndarray  # (V, 3) metres, head-local: x right, y down, z away from the camera
    canonical: np.ndarray  # (V, 3) in [-1, 1]
    faces: np.ndarray  # (F, 3)
    grid: tuple[int, int]


def face_mesh(n: int = 71) -> FaceMesh:
    """n x n vertices on the front of an ellipsoid (about 16 x 22 cm, 10 cm deep) with a nose."""
    u, v = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    u, v = u.ravel(), v.ravel()
    x, y = 0.08 * u, 0.11 * v
    bulge = np.sqrt(np.clip(1 - u ** 2 * 0.8 - v ** 2 * 0.8, 0.05, None))
    nose = 0.02 * np.exp(-((u / 0.18) ** 2 + ((v + 0.05) / 0.3) ** 2))
    z = -0.05 * bulge - nose  # towards the camera is -z in head space, camera looks along +z
    rest = np.stack([x, y, z], 1)
    canonical = rest / np.abs(rest).max(0)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    return FaceMesh(rest, canonical.astype(np.float32), faces.astype(np.int64), (n, n))


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch),
                              np.cos(roll), np.sin(roll))
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def expression(mesh: FaceMesh, amount: float) -> np.ndarray:
    """A smooth 'jaw open' like deformation of the rest mesh (metres)."""
    x, y, _ = mesh.rest.T
    lower = np.clip((y - 0.01) / 0.1, 0, 1)
    d = np.zeros_like(mesh.rest)
    d[:, 1] = 0.02 * amount * lower
    d[:, 2] = -0.006 * amount * np.exp(-(x / 0.04) ** 2) * lower
    return d


def pout(mesh: FaceMesh, amount: float) -> np.ndarray:
    """A second smooth deformation, unlike `expression`: the lower middle of the face pushed
    towards the camera and narrowed (metres)."""
    x, y, _ = mesh.rest.T
    near = np.exp(-(x / 0.03) ** 2 - ((y - 0.06) / 0.03) ** 2)
    d = np.zeros_like(mesh.rest)
    d[:, 0] = -0.2 * amount * x * near
    d[:, 2] = -0.01 * amount * near
    return d


@dataclass
class Frame3D:
    depth: np.ndarray  # (H, W), inf where no surface
    canonical: np.ndarray  # (H, W, 3)
    weight: np.ndarray  # (H, W) 1 on the face, 0 elsewhere
    points: np.ndarray  # (V, 3) camera space
    uv: np.ndarray  # (V, 2) pixel positions
    visible: np.ndarray  # (V,)
    k: np.ndarray  # (3, 3)
    canonical_metric: np.ndarray  # (H, W, 3): the rest-pose (metric) position seen at each pixel


def render(mesh: FaceMesh, points: np.ndarray, k: np.ndarray, size: tuple[int, int]) -> Frame3D:
    """Rasterise camera-space `points` (V, 3) of `mesh` into maps of size (W, H)."""
    w, h = size
    proj = points @ k.T
    uv = proj[:, :2] / proj[:, 2:]
    depth = np.full((h, w), np.inf)
    canon = np.zeros((h, w, 3))
    rest = np.zeros((h, w, 3))
    inv_z = 1.0 / points[:, 2]
    for tri in mesh.faces:
        p = uv[tri]
        x0, y0 = np.floor(p.min(0) - 0.5).astype(int)
        x1, y1 = np.ceil(p.max(0) - 0.5).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
        if x1 < x0 or y1 < y0:
            continue
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        px, py = xs.ravel() + 0.5, ys.ravel() + 0.5
        (ax, ay), (bx, by), (cx, cy) = p
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if abs(area) < 1e-12:
            continue
        l1 = ((px - ax) * (cy - ay) - (py - ay) * (cx - ax)) / area
        l2 = ((bx - ax) * (py - ay) - (by - ay) * (px - ax)) / area
        l0 = 1 - l1 - l2
        inside = (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)
        if not inside.any():
            continue
        bary = np.stack([l0, l1, l2], 1)[inside]
        iz = bary @ inv_z[tri]
        z = 1.0 / iz
        xi, yi = xs.ravel()[inside], ys.ravel()[inside]
        closer = z < depth[yi, xi]
        if not closer.any():
            continue
        xi, yi, z = xi[closer], yi[closer], z[closer]
        persp = bary[closer] * inv_z[tri][None, :] * z[:, None]
        depth[yi, xi] = z
        canon[yi, xi] = persp @ mesh.canonical[tri]
        rest[yi, xi] = persp @ mesh.rest[tri]
    face = np.isfinite(depth)
    # visible: inside the image and not behind the surface at its own projection
    inside = (uv[:, 0] >= 0.5) & (uv[:, 1] >= 0.5) & (uv[:, 0] <= w - 0.5) & (uv[:, 1] <= h - 0.5)
    xi = np.clip(uv[:, 0].astype(int), 0, w - 1)
    yi = np.clip(uv[:, 1].astype(int), 0, h - 1)
    visible = inside & (points[:, 2] <= depth[yi, xi] + 2e-3)
    return Frame3D(depth, canon.astype(np.float32), face.astype(np.float32), points, uv, visible, k,
                   rest.astype(np.float32))


def posed(mesh: FaceMesh, amount: float = 0.0, yaw: float = 0.0, pitch: float = 0.0,
          roll: float = 0.0, t=(0.0, 0.0, 0.45)) -> np.ndarray:
    return (mesh.rest + expression(mesh, amount)) @ rotation(yaw, pitch, roll).T + np.asarray(t)


def camera(size: tuple[int, int], focal: float) -> np.ndarray:
    w, h = size
    return np.array([[focal, 0, w / 2], [0, focal, h / 2], [0, 0, 1.0]])


def synthetic_template(mesh: FaceMesh, landmarks: dict[str, int] | None = None,
                       targets: dict[str, np.ndarray] | None = None,
                       identity: np.ndarray | None = None):
    """A Template whose metric positions are exactly the mesh's rest positions; `targets`: its
    expression targets, name -> (V, 3) displacement in metres; `identity`: its identity shapes
    (J, V, 3) metres."""
    from face_anything_addon.core.template import Template

    centre = np.zeros(3, np.float32)
    scale = float(np.abs(mesh.rest).max())
    landmarks = landmarks or {}
    return Template(name="synthetic", canonical_space="synthetic-space",
                    canonical=(mesh.rest / scale).astype(np.float32),
                    faces=mesh.faces.astype(np.int32),
                    uvs=np.zeros((len(mesh.faces), 3, 2), np.float32), centre=centre,
                    scale=scale, landmark_names=list(landmarks),
                    landmark_vertex=np.array(list(landmarks.values()), np.int32),
                    blendshape_names=list(targets or {}),
                    blendshape_deltas=np.array(list((targets or {}).values()), np.float16
                                               ).reshape(-1, len(mesh.rest), 3),
                    identity_deltas=None if identity is None else np.asarray(identity, np.float16))


def prediction(frame: Frame3D, number: int, mesh_scale: float, depth_factor: float = 1.0,
               noise: float = 0.0, seed: int = 0, occluded=None):
    """A FramePrediction as a perfect (or noisy) network would give for this render. The canonical
    maps carry rest / mesh_scale, matching `synthetic_template`."""
    from face_anything_addon.core.pipeline import FramePrediction
    from face_anything_addon.core.preprocess import Crop

    h, w = frame.depth.shape
    rng = np.random.default_rng(seed)
    canonical = frame.canonical_metric / mesh_scale
    weight = frame.weight.copy()
    depth = np.where(np.isfinite(frame.depth), frame.depth, 0.0) * depth_factor
    if noise:
        canonical = canonical + rng.normal(0, noise, canonical.shape)
        depth = depth * (1 + rng.normal(0, noise, depth.shape))
    if occluded is not None:
        weight[occluded] = 0.0
    return FramePrediction(number=number, footage_size=(w, h), crop=Crop(0, 0, w, h, w, h),
                           depth=depth.astype(np.float32), depth_conf=1 + weight,
                           canonical=canonical.astype(np.float32),
                           canonical_conf=(1 + 9 * weight).astype(np.float32),
                           intrinsics=frame.k, mask=weight.astype(np.float32))


# footage colour = 0.5 + 0.25 * (FOOTAGE_A * canonical + FOOTAGE_B): face bright, background dark
FOOTAGE_A, FOOTAGE_B = 0.4, 0.6


def canonical_footage(mesh: FaceMesh, k: np.ndarray, size: tuple[int, int], yaw: float,
                      count: int = 5):
    """`count` frames of `mesh` talking (expression i / count) and turning (yaw * sin(i / 2)),
    whose colours encode the canonical coordinate (metric / the mesh's largest extent) of the
    surface at each pixel. With the tiny test model (its canonical output is its normalised
    input) the model is a perfect canonical predictor. Returns (renders, core Frames 1..count)."""
    from face_anything_addon.core.frames import Frame

    scale = float(np.abs(mesh.rest).max())
    renders = [render(mesh, posed(mesh, amount=i / count, yaw=yaw * np.sin(i / 2)), k, size)
               for i in range(count)]
    frames = []
    for i, r in enumerate(renders):
        canonical = r.canonical_metric / scale
        rgb = np.where(r.weight[..., None] > 0,
                       0.5 + 0.25 * (FOOTAGE_A * canonical + FOOTAGE_B), 0.0)
        frames.append(Frame(i + 1, rgb.astype(np.float32)))
    return renders, frames
