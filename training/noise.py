# SPDX-License-Identifier: GPL-3.0-or-later
"""Procedural value noise in torch (2D and 3D lattice noise, fractal sums), deterministic."""
from __future__ import annotations

import torch

_TABLE_SIZE = 1 << 16
_tables: dict[torch.device, torch.Tensor] = {}


def _table(device: torch.device) -> torch.Tensor:
    if device not in _tables:
        g = torch.Generator().manual_seed(20260501)
        _tables[device] = torch.rand(_TABLE_SIZE, generator=g).to(device) * 2 - 1
    return _tables[device]


def _hash(*coords: torch.Tensor) -> torch.Tensor:
    h = torch.zeros_like(coords[0])
    for c, prime in zip(coords, (73856093, 19349663, 83492791)):
        h = h ^ (c * prime)
    return (h ^ (h >> 13)) & (_TABLE_SIZE - 1)


def _fade(t: torch.Tensor) -> torch.Tensor:
    return t * t * (3 - 2 * t)


def noise3(p: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Smooth value noise in [-1, 1] at points p (..., 3) (lattice spacing 1)."""
    table = _table(p.device)
    p = p + (seed % 9973) * 17.31
    base = torch.floor(p)
    f = _fade(p - base)
    i = base.long()
    out = torch.zeros(p.shape[:-1], device=p.device, dtype=p.dtype)
    for dx in (0, 1):
        wx = f[..., 0] if dx else 1 - f[..., 0]
        for dy in (0, 1):
            wy = f[..., 1] if dy else 1 - f[..., 1]
            for dz in (0, 1):
                wz = f[..., 2] if dz else 1 - f[..., 2]
                h = _hash(i[..., 0] + dx, i[..., 1] + dy, i[..., 2] + dz)
                out = out + table[h] * wx * wy * wz
    return out


def noise2(p: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Smooth value noise in [-1, 1] at points p (..., 2)."""
    table = _table(p.device)
    p = p + (seed % 9973) * 17.31
    base = torch.floor(p)
    f = _fade(p - base)
    i = base.long()
    out = torch.zeros(p.shape[:-1], device=p.device, dtype=p.dtype)
    for dx in (0, 1):
        wx = f[..., 0] if dx else 1 - f[..., 0]
        for dy in (0, 1):
            wy = f[..., 1] if dy else 1 - f[..., 1]
            out = out + table[_hash(i[..., 0] + dx, i[..., 1] + dy, i[..., 0] * 0 + seed)] * wx * wy
    return out


def fbm3(p: torch.Tensor, octaves: int = 4, seed: int = 0, lacunarity: float = 2.0,
         gain: float = 0.5) -> torch.Tensor:
    """Fractal sum of `noise3` octaves, normalised to about [-1, 1]."""
    total, amp, norm = torch.zeros(p.shape[:-1], device=p.device, dtype=p.dtype), 1.0, 0.0
    for k in range(octaves):
        total = total + amp * noise3(p * lacunarity ** k, seed + 101 * k)
        norm += amp
        amp *= gain
    return total / norm


def fbm2(p: torch.Tensor, octaves: int = 4, seed: int = 0, lacunarity: float = 2.0,
         gain: float = 0.5) -> torch.Tensor:
    total, amp, norm = torch.zeros(p.shape[:-1], device=p.device, dtype=p.dtype), 1.0, 0.0
    for k in range(octaves):
        total = total + amp * noise2(p * lacunarity ** k, seed + 101 * k)
        norm += amp
        amp *= gain
    return total / norm
