# SPDX-License-Identifier: GPL-3.0-or-later
"""Procedural 2D backgrounds (linear RGB, (B, 3, H, W)); drawn where no geometry is hit.

Kinds: "gradient" (linear or radial), "noise" (fractal colour noise), "stripes", "checker" (an
affinely warped checkerboard), "blobs" (soft ellipses), "bokeh" (bright out-of-focus discs on a
dark base). 3D backgrounds (walls, boxes) are props (`training.props`) and have depth.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .noise import fbm2

KINDS = ("gradient", "noise", "stripes", "checker", "blobs", "bokeh")


def _grid(h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / max(h, w)
    x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / max(h, w)
    return x[None, :].expand(h, w), y[:, None].expand(h, w)


def _one(bg, h: int, w: int, device) -> torch.Tensor:
    x, y = _grid(h, w, device)
    c = torch.as_tensor(bg.colours, dtype=torch.float32, device=device)  # (4, 3)
    p = [float(v) for v in bg.params]
    ang = p[0] * 2 * math.pi
    along = x * math.cos(ang) + y * math.sin(ang)
    if bg.kind == "gradient":
        if p[1] > 0.5:  # radial
            t = ((x - p[2]) ** 2 + (y - p[3]) ** 2).sqrt() * 1.5
        else:
            t = along - along.min()
            t = t / t.max().clamp_min(1e-6)
        t = t.clamp(0, 1)
        img = c[0][:, None, None] * (1 - t) + c[1][:, None, None] * t
    elif bg.kind == "noise":
        pts = torch.stack([x, y], -1) * (2 + 8 * p[1])
        a = fbm2(pts, 4, bg.seed) * 0.5 + 0.5
        b = fbm2(pts * 1.7, 3, bg.seed + 5) * 0.5 + 0.5
        img = (c[0][:, None, None] * a + c[1][:, None, None] * (1 - a)) * (0.6 + 0.8 * b)
    elif bg.kind == "stripes":
        period = 0.03 + 0.25 * p[1]
        t = (torch.sin(along / period * 2 * math.pi) * (1 + 4 * p[2])).clamp(-1, 1) * 0.5 + 0.5
        img = c[0][:, None, None] * t + c[1][:, None, None] * (1 - t)
    elif bg.kind == "checker":
        m = torch.tensor([[p[1] * 20 + 3, p[2] * 8 - 4], [p[3] * 8 - 4, p[4] * 20 + 3]],
                         device=device)
        u = m[0, 0] * x + m[0, 1] * y
        v = m[1, 0] * x + m[1, 1] * y
        t = ((torch.floor(u) + torch.floor(v)) % 2).float()
        img = c[0][:, None, None] * t + c[1][:, None, None] * (1 - t)
    elif bg.kind == "blobs":
        img = c[0][:, None, None].expand(3, h, w).clone()
        g = np.random.default_rng(bg.seed)
        for _ in range(int(3 + 10 * p[1])):
            cx, cy = g.uniform(0, 1), g.uniform(0, 1)
            rx, ry = g.uniform(0.05, 0.4), g.uniform(0.05, 0.4)
            d = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
            wgt = (1 - d).clamp(0, 1) ** 0.5
            col = c[int(g.integers(1, 4))] * float(g.uniform(0.5, 1.2))
            img = img * (1 - wgt) + col[:, None, None] * wgt
    elif bg.kind == "bokeh":
        img = c[0][:, None, None].expand(3, h, w).clone() * 0.3
        g = np.random.default_rng(bg.seed)
        for _ in range(int(5 + 25 * p[1])):
            cx, cy, r = g.uniform(0, 1), g.uniform(0, 1), g.uniform(0.02, 0.12)
            d = ((x - cx) ** 2 + (y - cy) ** 2).sqrt() / r
            wgt = ((1 - d) * 8).clamp(0, 1) * float(g.uniform(0.2, 1.0))
            img = img + c[int(g.integers(1, 4))][:, None, None] * wgt * 1.5
    else:
        raise ValueError(f"unknown background kind {bg.kind!r}")
    return img.clamp(0, 4)


def render_backgrounds(backgrounds, height: int, width: int, device) -> torch.Tensor:
    """(B, 3, H, W): drawn at half resolution and upsampled (backgrounds are smooth or get
    blurred anyway; this halves their cost twice)."""
    h, w = (height + 1) // 2, (width + 1) // 2
    small = torch.stack([_one(bg, h, w, device) for bg in backgrounds])
    return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
