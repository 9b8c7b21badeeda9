# SPDX-License-Identifier: GPL-3.0-or-later
"""Procedural value noise in torch (2D and 3D lattice noise, fractal sums), deterministic."""
from __future__ import annotations

import itertools

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


def _lattice_noise(p: torch.Tensor, seed: int, extra_key: bool) -> torch.Tensor:
    """Value noise in [-1, 1] at points p (..., D): the table's values at the 2^D lattice corners
    around each point, blended with smoothstep weights. `extra_key` hashes the seed in as one
    more lattice coordinate (the 2D noise's layers)."""
    table = _table(p.device)
    p = p + (seed % 9973) * 17.31
    base = torch.floor(p)
    f = _fade(p - base)
    i = base.long()
    dims = p.shape[-1]
    key = (torch.full_like(i[..., 0], seed),) if extra_key else ()
    out = torch.zeros(p.shape[:-1], device=p.device, dtype=p.dtype)
    for corner in itertools.product((0, 1), repeat=dims):
        value = table[_hash(*(i[..., a] + d for a, d in enumerate(corner)), *key)]
        for a, d in enumerate(corner):
            value = value * (f[..., a] if d else 1 - f[..., a])
        out = out + value
    return out


def noise3(p: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Smooth value noise in [-1, 1] at points p (..., 3) (lattice spacing 1)."""
    return _lattice_noise(p, seed, extra_key=False)


def noise2(p: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Smooth value noise in [-1, 1] at points p (..., 2)."""
    return _lattice_noise(p, seed, extra_key=True)


def _fbm(noise, p: torch.Tensor, octaves: int, seed: int, lacunarity: float,
         gain: float) -> torch.Tensor:
    total, amp, norm = torch.zeros(p.shape[:-1], device=p.device, dtype=p.dtype), 1.0, 0.0
    for k in range(octaves):
        total = total + amp * noise(p * lacunarity ** k, seed + 101 * k)
        norm += amp
        amp *= gain
    return total / norm


def fbm3(p: torch.Tensor, octaves: int = 4, seed: int = 0, lacunarity: float = 2.0,
         gain: float = 0.5) -> torch.Tensor:
    """Fractal sum of `noise3` octaves, normalised to about [-1, 1]."""
    return _fbm(noise3, p, octaves, seed, lacunarity, gain)


def fbm2(p: torch.Tensor, octaves: int = 4, seed: int = 0, lacunarity: float = 2.0,
         gain: float = 0.5) -> torch.Tensor:
    """Fractal sum of `noise2` octaves, normalised to about [-1, 1]."""
    return _fbm(noise2, p, octaves, seed, lacunarity, gain)
