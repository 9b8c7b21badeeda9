# SPDX-License-Identifier: GPL-3.0-or-later
"""A DPT-style decoder: four token maps reassembled at four scales and fused coarse to fine."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ResidualConv(nn.Module):
    """Two 3x3 convolutions with a skip."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Fusion(nn.Module):
    """Adds the coarser path to this scale's features, refines, and doubles the resolution."""

    def __init__(self, ch: int):
        super().__init__()
        self.skip = ResidualConv(ch)
        self.refine = ResidualConv(ch)
        self.out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, coarser: torch.Tensor | None = None) -> torch.Tensor:
        if coarser is not None:
            x = self.skip(x) + coarser
        x = self.refine(x)
        return self.out(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))


def reassemble(width: int, ch: int, scale: int) -> nn.Module:
    """Token map -> feature map at `scale` x the token grid resolution (4, 2, 1 or 1/2 as 0)."""
    project = nn.Conv2d(width, ch, 1)
    if scale == 4:
        return nn.Sequential(project, nn.ConvTranspose2d(ch, ch, 4, stride=4))
    if scale == 2:
        return nn.Sequential(project, nn.ConvTranspose2d(ch, ch, 2, stride=2))
    if scale == 1:
        return project
    return nn.Sequential(project, nn.Conv2d(ch, ch, 3, stride=2, padding=1))


class ImageStem(nn.Module):
    """A shallow convolutional path from the pixels (stride 4), added to the decoder's output:
    edges and colour reach the heads without waiting for the transformer to learn them."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, ch, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(ch, ch, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, images: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(self.body(images), size=size, mode="bilinear", align_corners=False)


class DPTDecoder(nn.Module):
    """Token maps (fine to deep) -> features [B, ch, 8*gh, 8*gw] (stride patch/8 of the image)."""

    def __init__(self, width: int, ch: int):
        super().__init__()
        self.reassemble = nn.ModuleList(reassemble(width, ch, s) for s in (4, 2, 1, 0))
        self.fusion = nn.ModuleList(Fusion(ch) for _ in range(4))

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        feats = [r(t) for r, t in zip(self.reassemble, taps)]
        x = self.fusion[3](feats[3])
        x = self.fusion[2](feats[2], x[..., :feats[2].shape[-2], :feats[2].shape[-1]])
        x = self.fusion[1](feats[1], x)
        return self.fusion[0](feats[0], x)
