# SPDX-License-Identifier: GPL-3.0-or-later
"""A template made from one reference frame, for models whose canonical space has no bundled
template (e.g. the published checkpoint): a regular triangulated grid over the face, each vertex
taking the canonical coordinate predicted there.
"""
from __future__ import annotations

import numpy as np

from .inversion import CanonicalMap
from .mesh_fill import similarity_fit
from .pipeline import FramePrediction
from .solve import bilinear, unproject
from .template import Template

DEFAULT_CANONICAL_SCALE = 0.1  # metres per canonical unit when the model does not say


class TemplateGridError(Exception):
    """The reference frame shows too little face to build a mesh."""


def grid_template(prediction: FramePrediction, canonical_space: str, vertices: int = 5000,
                  canonical_scale: float = 0.0, metric_depth: bool = False,
                  landmarks: dict | None = None, min_weight: float = 0.5) -> Template:
    """A grid of about `vertices` vertices over the confident face of `prediction`.

    The template's metric size: `canonical_scale` metres per canonical unit when given (a model
    may declare it), else from the reference frame's own depth when it is metric, else
    DEFAULT_CANONICAL_SCALE. Landmarks (canonical coordinates) snap to the nearest vertex.
    """
    weight = prediction.face_weight
    cmap = CanonicalMap(prediction.canonical, weight, min_weight)
    area = int(cmap.valid.sum())
    if area < 64:
        raise TemplateGridError(f"the reference frame (frame {prediction.number}) shows almost no "
                                f"face ({area} pixels): pick another reference frame")
    step = max(np.sqrt(area / max(vertices, 4)), 1.0)
    ys, xs = np.nonzero(cmap.valid)
    gx = np.arange(xs.min() + 0.5, xs.max() + 1.5, step)
    gy = np.arange(ys.min() + 0.5, ys.max() + 1.5, step)
    px, py = np.meshgrid(gx, gy)
    p = np.stack([px.ravel(), py.ravel()], 1).astype(np.float32)
    inside = cmap.supported(p)
    ny, nx = px.shape
    idx = np.arange(nx * ny).reshape(ny, nx)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    full = inside[a] & inside[b] & inside[c] & inside[d]
    quads = np.stack([a[full], b[full], c[full], d[full]], 1)
    if len(quads) < 8:
        raise TemplateGridError(f"the face in frame {prediction.number} is too small for a mesh")
    used, remap = np.unique(quads, return_inverse=True)
    quads = remap.reshape(-1, 4)
    faces = np.concatenate([quads[:, [0, 2, 1]], quads[:, [1, 2, 3]]]).astype(np.int32)
    p = p[used]
    canonical = cmap.value(p).astype(np.float32)
    grid_uv = np.stack([(px.ravel()[used] - gx[0]) / max(gx[-1] - gx[0], 1e-9),
                        1 - (py.ravel()[used] - gy[0]) / max(gy[-1] - gy[0], 1e-9)], 1)
    uvs = grid_uv[faces].astype(np.float32)

    scale = canonical_scale
    if scale <= 0:
        scale = DEFAULT_CANONICAL_SCALE
        z, _ = bilinear(prediction.depth, p)
        if metric_depth and np.all(z > 0):
            seen = unproject(prediction.intrinsics, prediction.crop.to_footage(p), z)
            fit = similarity_fit(canonical.astype(np.float64), seen)
            scale = float(np.cbrt(np.linalg.det(fit[:3, :3]))) or DEFAULT_CANONICAL_SCALE
    names, where = [], []
    for name, point in (landmarks or {}).items():
        names.append(name)
        where.append(int(np.argmin(np.linalg.norm(canonical - np.asarray(point), axis=1))))
    return Template(name=f"reference frame {prediction.number}", canonical_space=canonical_space,
                    canonical=canonical, faces=faces, uvs=uvs,
                    centre=np.zeros(3, np.float32), scale=float(scale), region_names=["face"],
                    vertex_region=np.zeros(len(canonical), np.int16), landmark_names=names,
                    landmark_vertex=np.array(where, np.int32))
