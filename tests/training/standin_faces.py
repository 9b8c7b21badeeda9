# SPDX-License-Identifier: GPL-3.0-or-later
"""A tiny procedural stand-in for the synthetic face engine (tests only): a shaded ellipsoid
"head" seen by a pinhole camera, with exact depth, canonical coordinates (the ellipsoid point in
head space, over its radius), mask and intrinsics, in the engine's sample layout."""
from __future__ import annotations

import math
from typing import Iterator

import torch

RADII = torch.tensor([0.08, 0.11, 0.09])  # metres: x, y, z half-axes


def _rotation(yaw: float, pitch: float) -> torch.Tensor:
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = torch.tensor([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return rx @ ry


def render(size: int, yaw: float, pitch: float, centre: torch.Tensor, focal: float) -> dict:
    """One frame: images (3,H,W), depth, canonical (H,W,3), mask, intrinsics (3,3)."""
    k = torch.tensor([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]])
    v, u = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    rays = torch.stack([(u - size / 2) / focal, (v - size / 2) / focal, torch.ones_like(u)], -1)
    rot = _rotation(yaw, pitch)  # head -> camera
    o = (-centre @ rot) / RADII  # camera origin in scaled head space
    d = (rays @ rot) / RADII
    a, b, c = (d * d).sum(-1), 2 * (d * o).sum(-1), (o * o).sum() - 1
    disc = b * b - 4 * a * c
    hit = disc > 0
    t = (-b - disc.clamp_min(0).sqrt()) / (2 * a)
    p = o + t[..., None] * d  # unit-sphere point
    depth = torch.where(hit, t, torch.zeros_like(t))
    canonical = torch.where(hit[..., None], p * RADII / RADII.max(), torch.zeros_like(p))
    normal = p @ rot.T
    shade = (0.3 + 0.7 * (-normal[..., 2]).clamp(0, 1))
    colour = torch.stack([0.5 + 0.4 * p[..., 0], 0.5 + 0.4 * p[..., 1], 0.6 + 0.0 * p[..., 2]], -1)
    image = torch.where(hit[..., None], colour * shade[..., None], torch.full_like(colour, 0.2))
    return {"images": image.permute(2, 0, 1).clamp(0, 1), "depth": depth,
            "canonical": canonical, "mask": hit.float(), "intrinsics": k}


def standin_source(split: str, size: int, window: int, seed: int) -> Iterator[dict]:
    """Endless windows in SyntheticFaces' layout ([S, ...] per key)."""
    g = torch.Generator().manual_seed(seed + (0 if split == "train" else 10_000))
    while True:
        r = torch.rand(6, generator=g)
        frames = []
        for s in range(window):
            yaw = float(r[0] - 0.5) * 1.2 + 0.1 * s
            centre = torch.tensor([float(r[2] - 0.5) * 0.05, float(r[3] - 0.5) * 0.05,
                                   0.45 + 0.2 * float(r[4])])
            frames.append(render(size, yaw, float(r[1] - 0.5) * 0.6, centre, size * (1.2 + float(r[5]))))
        yield {k: torch.stack([f[k] for f in frames]) for k in frames[0]}
