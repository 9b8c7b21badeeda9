# SPDX-License-Identifier: GPL-3.0-or-later
"""Contact sheet of synthetic samples: `python -m training.contact_sheet [--out PNG]`.

Twelve items of the validation split (224 x 224): for each, the RGB image and, in a column
beside it, depth (near = bright), canonical coordinates (x, y, z -> R, G, B) and the template
mask with the visible landmarks in red.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import SyntheticFaces, single_thread
from .png import write_png

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "synthetic-contact-sheet.png"


def _small(img: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) float -> (C, size, size), area-averaged."""
    return F.interpolate(img[None], size=(size, size), mode="area")[0]


def panels(item: dict, landmarks: list[int], side: int) -> np.ndarray:
    rgb = item["images"][0]
    depth = item["depth"][0]
    valid = depth > 0
    d = torch.zeros_like(depth)
    if valid.any():
        lo, hi = depth[valid].min(), depth[valid].max()
        d[valid] = 1 - 0.85 * (depth[valid] - lo) / (hi - lo).clamp_min(1e-6)
    canon = (item["canonical"][0].permute(2, 0, 1) * 0.5 + 0.5) * item["mask"][0]
    mask = item["mask"][0].expand(3, -1, -1).clone() * 0.6
    h = depth.shape[0]
    for v in landmarks:
        if item["vertex_visible"][0, v]:
            x, y = item["vertex_xy"][0, v].long().tolist()
            red = torch.tensor([1.0, 0, 0])[:, None, None]
            mask[:, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = red
    s = h // 3
    column = torch.cat([_small(d[None].expand(3, -1, -1), s), _small(canon, s), _small(mask, s)], 1)
    column = F.pad(column, (0, 0, 0, h - column.shape[1]))
    tile = torch.cat([rgb, torch.ones(3, h, 2), column], 2)
    return tile


def contact_sheet(out: Path = DEFAULT_OUT, count: int = 12, per_row: int = 4,
                  size: int = 224) -> Path:
    ds = SyntheticFaces("val", size=size, window=1, seed=0)
    from .head_model import load_head_model
    lm = list(load_head_model().landmarks().values())
    tiles = []
    with single_thread(), torch.no_grad():
        for i in range(count):
            tiles.append(panels(ds[i], lm, size))
    rows = []
    for r in range(0, count, per_row):
        row = [F.pad(t, (2, 2, 2, 2), value=1.0) for t in tiles[r:r + per_row]]
        rows.append(torch.cat(row, 2))
    sheet = torch.cat(rows, 1)
    img = (sheet.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_png(out, img, level=9)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--count", type=int, default=12)
    a = p.parse_args(argv)
    path = contact_sheet(a.out, a.count)
    print(f"{path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
