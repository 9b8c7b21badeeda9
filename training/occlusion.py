# SPDX-License-Identifier: GPL-3.0-or-later
"""Visibility from orthographic views: per-vertex ambient occlusion and shadow maps."""
from __future__ import annotations

import torch

from .geometry import orthonormal_basis
from .raster import Fragments, query, rasterize


def light_space(points: torch.Tensor, direction: torch.Tensor, extent: tuple[torch.Tensor, float],
                resolution: int) -> torch.Tensor:
    """Orthographic (u, v, depth) of points (..., N, 3) seen from far along `direction` (..., 3)
    (unit, pointing from the scene towards the light). extent = (centre (..., 3), half size in
    metres) of the square window. Depth grows away from the light and is > 0 within the window."""
    a, b = orthonormal_basis(direction)
    centre, half = extent
    rel = points - centre[..., None, :]
    px = resolution / (2 * half)
    u = (rel * a[..., None, :]).sum(-1) * px + resolution / 2
    v = -(rel * b[..., None, :]).sum(-1) * px + resolution / 2
    depth = half * 4 - (rel * direction[..., None, :]).sum(-1)
    return torch.stack([u, v, depth], -1)


def ambient_occlusion(vertices: torch.Tensor, faces: torch.Tensor, normals: torch.Tensor,
                      directions: torch.Tensor, resolution: int = 512,
                      bias: float = 5e-4) -> torch.Tensor:
    """Cosine-weighted fraction of the directions (D, 3) from which each vertex is unoccluded.

    Every direction is one orthographic view of the whole mesh; a vertex is lit from it when no
    triangle lies between it and the light (exact point query at the vertex, depth slack `bias`
    metres)."""
    n, d = vertices.shape[0], directions.shape[0]
    centre = (vertices.max(0).values + vertices.min(0).values) / 2
    half = float((vertices.max(0).values - vertices.min(0).values).max()) * 0.55
    screen = light_space(vertices.expand(d, n, 3), directions, (centre.expand(d, 3), half),
                         resolution)  # (D, N, 3)
    dev = vertices.device
    all_faces = (faces[None] + (torch.arange(d, device=dev) * n)[:, None, None]).reshape(-1, 3)
    face_image = torch.arange(d, device=dev).repeat_interleave(faces.shape[0])
    flat = screen.reshape(-1, 3)
    hit = query(flat, all_faces, face_image, d, resolution, resolution, flat[:, :2],
                torch.arange(d, device=dev).repeat_interleave(n), perspective=False)
    lit = (~hit.hit) | (flat[:, 2] <= hit.depth + bias)
    cos = (normals[None] * directions[:, None]).sum(-1).clamp_min(0).reshape(-1)
    num = (cos * lit.float()).reshape(d, n).sum(0)
    return num / (cos.reshape(d, n).sum(0)).clamp_min(1e-9)


def shadow_map(screen: torch.Tensor, faces: torch.Tensor, face_image: torch.Tensor, images: int,
               resolution: int) -> Fragments:
    """Depth maps (images, R, R) of the scene from the lights (screen from `light_space`)."""
    return rasterize(screen, faces, face_image, images, resolution, resolution, perspective=False)
