# SPDX-License-Identifier: GPL-3.0-or-later
"""Output heads: per-pixel maps from decoder features, and the camera head from pooled tokens."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class MapHead(nn.Module):
    """Decoder features -> `channels` raw maps at the image size (convolutions run at the decoder's
    resolution; only the final few channels are upsampled, bilinearly)."""

    def __init__(self, ch: int, channels: int):
        super().__init__()
        hidden = max(ch // 2, 8)
        self.body = nn.Sequential(nn.Conv2d(ch, hidden, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(hidden, channels, 1))

    def forward(self, feats: torch.Tensor, size: tuple) -> torch.Tensor:
        return F.interpolate(self.body(feats), size=size, mode="bilinear", align_corners=False)


class CameraHead(nn.Module):
    """Pooled frame token -> pinhole intrinsics in input pixels (square pixels, fx = fy).

    Raw outputs: log focal (relative to `focal_prior` x image width) and the principal point's
    offset from the image centre in image widths / heights."""

    def __init__(self, width: int, focal_prior: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 3))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.log_prior = math.log(focal_prior)

    def forward(self, pooled: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """pooled: (B, D); h, w: image size as 0-d or (1,) float tensors. Returns (B, 3, 3)."""
        raw = self.mlp(pooled)
        f = torch.exp(raw[:, 0] + self.log_prior) * w
        cx = (0.5 + raw[:, 1]) * w
        cy = (0.5 + raw[:, 2]) * h
        zero, one = torch.zeros_like(f), torch.ones_like(f)
        return torch.stack([f, zero, cx, zero, f, cy, zero, zero, one], -1).reshape(-1, 3, 3)
