# SPDX-License-Identifier: GPL-3.0-or-later
"""The Face Anything network: a patch-14 ViT with alternating frame / global attention, DPT-style
decoders and per-pixel heads (depth, canonical coordinate, mask) plus a camera head.

`FaceAnythingNet(config)` takes normalised images [N, S, 3, H, W] and returns a dict of maps.
"""
from .config import CONFIGS, NetConfig, get_config
from .model import FaceAnythingNet

__all__ = ["CONFIGS", "NetConfig", "get_config", "FaceAnythingNet"]
