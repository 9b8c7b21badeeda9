# SPDX-License-Identifier: GPL-3.0-or-later
"""Lighting: second-order spherical-harmonic irradiance, directional lights, shadow-map lookups,
Blinn-Phong specular. Everything per pixel, vectorised."""
from __future__ import annotations

import torch

# irradiance-SH basis constants (Ramamoorthi & Hanrahan's 9-term form)
_C1, _C2, _C3, _C4, _C5 = 0.429043, 0.511664, 0.743125, 0.886227, 0.247708


def sh_basis(n: torch.Tensor) -> torch.Tensor:
    """(..., 9) irradiance basis of unit normals (..., 3): E(n) = basis(n) @ coefficients."""
    x, y, z = n.unbind(-1)
    return torch.stack([
        torch.full_like(x, _C4), 2 * _C2 * y, 2 * _C2 * z, 2 * _C2 * x,
        2 * _C1 * x * y, 2 * _C1 * y * z, _C3 * z * z - _C5, 2 * _C1 * x * z,
        _C1 * (x * x - y * y)], dim=-1)


def sh_irradiance(n: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Irradiance (..., 3) at unit normals (..., 3) for coefficients (..., 9, 3); clamped >= 0."""
    return (sh_basis(n)[..., None] * coeffs).sum(-2).clamp_min(0)


def pcf_lookup(depth_map: torch.Tensor, image: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
               depth: torch.Tensor, radius: torch.Tensor, bias: float) -> torch.Tensor:
    """Fraction of a 3 x 3 tap pattern (spread over `radius` (P,) pixels) of the shadow maps
    (I, R, R) (0 = empty) that does not occlude points at (u, v, depth) of images `image`;
    points outside the map's window are lit."""
    res = depth_map.shape[-1]
    lit = torch.zeros_like(depth)
    outside = (u < 0) | (u >= res) | (v < 0) | (v >= res)  # beyond the map: lit
    spread = radius.clamp_min(0.5)
    flat = depth_map.reshape(-1)
    base = image * (res * res)
    for ox in (-1.0, 0.0, 1.0):
        x = (u + ox * spread).floor().long().clamp(0, res - 1)
        for oy in (-1.0, 0.0, 1.0):
            y = (v + oy * spread).floor().long().clamp(0, res - 1)
            occ = flat[base + y * res + x]
            lit = lit + ((occ == 0) | (depth <= occ + bias) | outside).float()
    return lit / 9


def blinn_phong(n: torch.Tensor, view: torch.Tensor, light: torch.Tensor,
                shininess: torch.Tensor) -> torch.Tensor:
    """Normalised Blinn-Phong lobe (...,) for unit normal, view (towards the eye) and light."""
    h = view + light
    h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    ndh = (n * h).sum(-1).clamp_min(0)
    return ndh ** shininess * (shininess + 8) / 25.13
