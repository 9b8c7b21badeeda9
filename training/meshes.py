# SPDX-License-Identifier: GPL-3.0-or-later
"""Small procedural meshes (torch): ribbons, tubes, ellipsoid patches, boxes, quads."""
from __future__ import annotations

import math

import torch


def grid_faces(rows: int, cols: int, device, closed: bool = False) -> torch.Tensor:
    """Triangles of a rows x cols vertex grid (row-major); `closed` wraps the columns."""
    r = torch.arange(rows - 1, device=device)[:, None]
    c = torch.arange(cols if closed else cols - 1, device=device)[None, :]
    a = r * cols + c
    b = r * cols + (c + 1) % cols
    d = (r + 1) * cols + c
    e = (r + 1) * cols + (c + 1) % cols
    return torch.cat([torch.stack([a, b, e], -1).reshape(-1, 3),
                      torch.stack([a, e, d], -1).reshape(-1, 3)])


def ribbon(points: torch.Tensor, side: torch.Tensor, width: torch.Tensor):
    """A strip along polylines. points (S, n, 3), side (S, n, 3) unit vectors across the strip,
    width (S, n). Returns vertices (S * n * 2, 3) and faces."""
    s, n, _ = points.shape
    half = (width / 2)[..., None] * side
    verts = torch.stack([points - half, points + half], dim=2)  # (S, n, 2, 3)
    f = grid_faces(n, 2, points.device)
    offsets = torch.arange(s, device=points.device) * n * 2
    faces = (f[None] + offsets[:, None, None]).reshape(-1, 3)
    return verts.reshape(-1, 3), faces


def tube(points: torch.Tensor, radius: torch.Tensor, sides: int = 8):
    """A tube along a polyline points (n, 3) with radii (n,). Open ends."""
    n = points.shape[0]
    tangent = torch.zeros_like(points)
    tangent[1:-1] = points[2:] - points[:-2]
    tangent[0], tangent[-1] = points[1] - points[0], points[-1] - points[-2]
    tangent = tangent / tangent.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    helper = torch.tensor([0.0, 0.0, 1.0], device=points.device).expand_as(tangent)
    helper = torch.where((tangent[:, 2:3].abs() > 0.9), torch.tensor([1.0, 0.0, 0.0],
                                                                     device=points.device), helper)
    u = torch.cross(tangent, helper, dim=-1)
    u = u / u.norm(dim=-1, keepdim=True)
    v = torch.cross(tangent, u, dim=-1)
    ang = torch.arange(sides, device=points.device) * (2 * math.pi / sides)
    ring = (ang.cos()[None, :, None] * u[:, None] + ang.sin()[None, :, None] * v[:, None])
    verts = points[:, None] + radius[:, None, None] * ring
    return verts.reshape(-1, 3), grid_faces(n, sides, points.device, closed=True)


def ellipsoid(centre: torch.Tensor, radii: torch.Tensor, rings: int = 12, segments: int = 16,
              theta_max: float = math.pi):
    """An ellipsoid patch from its +y pole down to polar angle theta_max (pi: closed)."""
    dev = centre.device
    th = torch.linspace(0, theta_max, rings + 1, device=dev)
    ph = torch.arange(segments, device=dev) * (2 * math.pi / segments)
    x = th.sin()[:, None] * ph.sin()[None]
    y = th.cos()[:, None].expand(-1, segments)
    z = th.sin()[:, None] * ph.cos()[None]
    verts = torch.stack([x, y, z], -1).reshape(-1, 3) * radii + centre
    return verts, grid_faces(rings + 1, segments, dev, closed=True)


def box(centre: torch.Tensor, size: torch.Tensor, rotation: torch.Tensor):
    """A closed box (8 vertices, 12 triangles)."""
    dev = centre.device
    corners = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5)
                            for z in (-0.5, 0.5)], device=dev)
    verts = (corners * size) @ rotation.T + centre
    faces = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                          [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]],
                         device=dev)
    return verts, faces


def quad_grid(origin: torch.Tensor, du: torch.Tensor, dv: torch.Tensor, n: int = 8):
    """A planar n x n grid spanning origin + [0, 1] du + [0, 1] dv."""
    t = torch.linspace(0, 1, n, device=origin.device)
    verts = origin + t[:, None, None] * dv + t[None, :, None] * du
    return verts.reshape(-1, 3), grid_faces(n, n, origin.device)
