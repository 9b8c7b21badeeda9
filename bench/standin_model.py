# SPDX-License-Identifier: GPL-3.0-or-later
"""A contract-conforming stand-in network with random weights, for benchmarks only.

A patch-14 ViT (the paper's backbone family) with per-pixel heads by pixel shuffle, exported to ONNX
with the model contract's interface. Its predictions are meaningless; its cost is that of a real
network of the same size, which is what the pipeline-overhead benchmark needs until the project's
own trained model exists.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

PATCH = 14
SIZES = {  # name -> (width, blocks, heads)
    "vit-tiny": (192, 6, 3),
    "vit-small": (384, 12, 6),
}


class Block(nn.Module):
    """Pre-norm transformer block written with shape-agnostic reshapes (exports with dynamic
    token counts)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class StandIn(nn.Module):
    def __init__(self, width: int, blocks: int, heads: int):
        super().__init__()
        self.embed = nn.Conv2d(3, width, PATCH, stride=PATCH)
        self.blocks = nn.Sequential(*[Block(width, heads) for _ in range(blocks)])
        self.head = nn.Conv2d(width, 7 * PATCH * PATCH, 1)
        self.focal = nn.Linear(width, 1)

    def forward(self, images):
        n, s, _, h, w = images.shape
        x = self.embed(images.flatten(0, 1))  # (NS, D, h/14, w/14)
        gh, gw = x.shape[-2:]
        tokens = self.blocks(x.flatten(2).transpose(1, 2))
        grid = tokens.transpose(1, 2).reshape(n * s, -1, gh, gw)
        maps = nn.functional.pixel_shuffle(self.head(grid), PATCH).reshape(n, s, 7, h, w)
        depth = torch.exp(maps[:, :, 0])
        depth_conf = 1 + torch.exp(maps[:, :, 1])
        canonical = maps[:, :, 2:5].permute(0, 1, 3, 4, 2)
        canonical_conf = 1 + torch.exp(maps[:, :, 5])
        mask = torch.sigmoid(maps[:, :, 6])
        wf = torch.full((1,), 1.0) * w
        hf = torch.full((1,), 1.0) * h
        f = torch.exp(self.focal(tokens.mean(1))).reshape(n, s) * wf
        zero, one = torch.zeros_like(f), torch.ones_like(f)
        k = torch.stack([f, zero, zero + wf / 2, zero, f, zero + hf / 2, zero, zero, one], -1)
        return depth, depth_conf, canonical, canonical_conf, k.reshape(n, s, 3, 3), mask


def export(path: Path, size: str = "vit-small", input_size: int = 504) -> Path:
    import onnx

    torch.manual_seed(0)
    model = StandIn(*SIZES[size]).eval()
    names = ["depth", "depth_conf", "canonical", "canonical_conf", "intrinsics", "mask"]
    axes = {"images": {0: "N", 1: "S", 3: "H", 4: "W"}}
    axes.update({n: {0: "N", 1: "S"} for n in names})
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 1, 3, 56, 56),), str(path), dynamo=False,
                          input_names=["images"], output_names=names, dynamic_axes=axes,
                          opset_version=17)
    proto = onnx.load(str(path))
    meta = {"contract": "1", "patch_size": str(PATCH), "input_size": str(input_size),
            "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "max_window": "8",
            "depth_units": "relative", "canonical_space": "benchmark-stand-in",
            "name": f"random-weight {size} stand-in (benchmarks only)"}
    for k, v in meta.items():
        proto.metadata_props.add(key=f"faceanything.{k}", value=v)
    onnx.save(proto, str(path))
    return path
