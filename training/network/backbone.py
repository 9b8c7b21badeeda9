# SPDX-License-Identifier: GPL-3.0-or-later
"""The encoder: patch-14 embedding, convolutional position encoding, and blocks that attend within
a frame or across all frames of a window (the Face Anything / Depth-Anything-3 alternation)."""
from __future__ import annotations

import torch
from torch import nn

from .attention import Block
from .config import NetConfig


class PositionConv(nn.Module):
    """Depthwise 3x3 convolution on the token grid added to the tokens: position information that
    needs no fixed grid size (zero padding tells the border apart), so any H, W exports."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1, groups=width)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return grid + self.conv(grid)


class Encoder(nn.Module):
    """Images [N, S, 3, H, W] -> list of tapped token maps, each [N*S, D, H/14, W/14], and the
    pooled per-frame token [N*S, D]."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Conv2d(3, cfg.width, cfg.patch, stride=cfg.patch)
        self.position = PositionConv(cfg.width)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        n, s, c, h, w = images.shape
        grid = self.position(self.embed(images.reshape(-1, c, h, w)))
        gh, gw = grid.shape[-2:]
        d = self.cfg.width
        tokens = grid.flatten(2).transpose(1, 2)  # (NS, T, D)
        ns = tokens.shape[0]
        taps = []
        for i, block in enumerate(self.blocks):
            if self.cfg.global_block(i):
                tokens = block(tokens.reshape(n, -1, d)).reshape(ns, -1, d)
            else:
                tokens = block(tokens)
            if i in self.cfg.taps:
                taps.append(self.norm(tokens).transpose(1, 2).reshape(ns, d, gh, gw))
        return taps, self.norm(tokens).mean(1)
