# SPDX-License-Identifier: GPL-3.0-or-later
"""Small geometry helpers (torch and numpy): normals, rotations, sphere fits, direction sets.

Head-local frame (the template's): x = subject's left, y = up, z = forward out of the face
(right-handed), metres. Camera frame: OpenCV (x right, y down, z forward).
"""
from __future__ import annotations

import math

import numpy as np
import torch


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals. vertices (..., N, 3), faces (F, 3) -> (..., N, 3)."""
    tri = vertices[..., faces, :]  # (..., F, 3, 3)
    n = torch.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :], dim=-1)
    out = torch.zeros_like(vertices)
    idx = faces.reshape(-1)
    out.index_add_(-2, idx, n.repeat_interleave(3, dim=-2))
    return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-20)


def rotation_xyz(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) from angles (..., 3) in radians:
    R = Rz(roll) @ Ry(yaw) @ Rx(pitch) with angles = (pitch about x, yaw about y, roll about z),
    applied to head-local points."""
    p, y, r = angles.unbind(-1)
    cp, sp, cy, sy, cr, sr = p.cos(), p.sin(), y.cos(), y.sin(), r.cos(), r.sin()
    one, zero = torch.ones_like(p), torch.zeros_like(p)
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(*p.shape, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*p.shape, 3, 3)
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(*p.shape, 3, 3)
    return rz @ ry @ rx


def axis_angle(rot: torch.Tensor) -> torch.Tensor:
    """Rotation vectors (..., 3) of rotation matrices (..., 3, 3) (angles below pi)."""
    cos = ((rot.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    angle = torch.acos(cos)
    axis = torch.stack([rot[..., 2, 1] - rot[..., 1, 2], rot[..., 0, 2] - rot[..., 2, 0],
                        rot[..., 1, 0] - rot[..., 0, 1]], -1)
    s = torch.sin(angle)
    scale = torch.where(s.abs() > 1e-6, angle / (2 * s).where(s.abs() > 1e-6, torch.ones_like(s)),
                        torch.full_like(s, 0.5))
    return axis * scale[..., None]


def rodrigues(vec: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) of rotation vectors (..., 3)."""
    angle = vec.norm(dim=-1, keepdim=True)
    axis = vec / angle.clamp_min(1e-12)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*x.shape, 3, 3)
    s, c = angle.sin()[..., None], angle.cos()[..., None]
    eye = torch.eye(3, dtype=vec.dtype, device=vec.device).expand_as(k)
    return eye + s * k + (1 - c) * (k @ k)


def head_to_camera() -> torch.Tensor:
    """The rotation that maps head-local axes to camera axes for a face looking into the camera:
    head x (subject's left) -> camera x (image right), head y (up) -> camera -y, head z
    (forward) -> camera -z."""
    return torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through points (n, 3): (centre, radius)."""
    a = np.concatenate([2 * points, np.ones((len(points), 1))], axis=1)
    b = (points ** 2).sum(1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = sol[:3]
    return centre, float(math.sqrt(sol[3] + centre @ centre))


def fibonacci_sphere(n: int) -> np.ndarray:
    """n nearly uniform unit directions (n, 3), deterministic."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5 ** 0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.cos(phi), np.sin(theta) * np.sin(phi)], 1)


def orthonormal_basis(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unit vectors (..., 3) completing the unit vectors d (..., 3) to a right-handed basis
    (a, b, d)."""
    helper = torch.where((d[..., 1:2].abs() < 0.9),
                         torch.tensor([0.0, 1.0, 0.0], device=d.device, dtype=d.dtype),
                         torch.tensor([1.0, 0.0, 0.0], device=d.device, dtype=d.dtype))
    a = torch.cross(helper.expand_as(d), d, dim=-1)
    a = a / a.norm(dim=-1, keepdim=True)
    b = torch.cross(d, a, dim=-1)
    return a, b
