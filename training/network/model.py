# SPDX-License-Identifier: GPL-3.0-or-later
"""FaceAnythingNet: encoder + DPT decoder(s) + heads, in the model contract's output layout."""
from __future__ import annotations

import math

import torch
from torch import nn

from .backbone import Encoder
from .config import NetConfig
from .decoder import DPTDecoder, ImageStem
from .heads import CameraHead, MapHead

# Raw channels of the map heads.
DEPTH_CH = 2  # log depth, depth confidence
CANON_CH = 4  # canonical x, y, z, canonical confidence
MASK_CH = 1


class FaceAnythingNet(nn.Module):
    """Normalised images [N, S, 3, H, W] (H, W multiples of the patch) -> dict of
    depth [N,S,H,W] (metres), depth_conf, canonical [N,S,H,W,3], canonical_conf, mask (probability),
    mask_logit, intrinsics [N,S,3,3]."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = DPTDecoder(cfg.width, cfg.features)
        self.canonical_decoder = (DPTDecoder(cfg.width, cfg.features)
                                  if cfg.separate_decoders else None)
        self.stem = ImageStem(cfg.features) if cfg.image_stem else None
        self.depth_head = MapHead(cfg.features, DEPTH_CH + MASK_CH)
        self.canonical_head = MapHead(cfg.features, CANON_CH)
        self.camera = CameraHead(cfg.width, cfg.focal_prior)
        self.log_depth_prior = math.log(cfg.depth_prior)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        n, s, _, h, w = images.shape
        taps, pooled = self.encoder(images)
        feats = self.decoder(taps)
        cfeats = feats if self.canonical_decoder is None else self.canonical_decoder(taps)
        if self.stem is not None:
            pixels = self.stem(images.reshape(-1, 3, h, w), feats.shape[-2:])
            feats, cfeats = feats + pixels, cfeats + pixels
        size = (h, w)
        dm = self.depth_head(feats, size).reshape(n, s, DEPTH_CH + MASK_CH, h, w)
        cm = self.canonical_head(cfeats, size).reshape(n, s, CANON_CH, h, w)
        hf = torch.ones(1, dtype=images.dtype) * h
        wf = torch.ones(1, dtype=images.dtype) * w
        return {
            "depth": torch.exp(dm[:, :, 0] + self.log_depth_prior),
            "depth_conf": 1 + torch.exp(dm[:, :, 1]),
            "canonical": cm[:, :, :3].permute(0, 1, 3, 4, 2),
            "canonical_conf": 1 + torch.exp(cm[:, :, 3]),
            "intrinsics": self.camera(pooled, hf, wf).reshape(n, s, 3, 3),
            "mask_logit": dm[:, :, 2],
            "mask": torch.sigmoid(dm[:, :, 2]),
        }
