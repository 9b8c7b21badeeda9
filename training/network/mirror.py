# SPDX-License-Identifier: GPL-3.0-or-later
"""Mirror averaging: the network run on the frames and on their left-right mirror images in one
batch, the mirrored predictions mirrored back and averaged with the direct ones.

A face's mirror image is a face; its canonical coordinates are those of the mirrored face, which
on a template symmetric about x = 0 (`symmetric_template`) is the coordinate with x negated. So
mirrored predictions come back by flipping the maps, negating canonical x and taking the principal
point to W - cx. The average halves the network's left-right bias and some of its noise, at twice
the inference cost; measured on the bundled model in its card.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .model import FaceAnythingNet


def symmetric_template(canonical: np.ndarray, tolerance: float = 1e-4) -> bool:
    """Whether every template vertex (V, 3) has a vertex at its mirror image (x negated)."""
    pts = np.asarray(canonical, np.float64)
    mirrored = pts * (-1.0, 1.0, 1.0)
    order = np.lexsort(np.round(pts / tolerance).T)
    back = np.lexsort(np.round(mirrored / tolerance).T)
    return bool(np.abs(pts[order] - mirrored[back]).max() <= tolerance)


class MirrorAveraged(nn.Module):
    """`FaceAnythingNet` whose outputs are the average of its predictions on the frames and on
    their mirror images (mirrored back). Same inputs and outputs as the network."""

    def __init__(self, model: FaceAnythingNet):
        super().__init__()
        self.model = model
        self.cfg = model.cfg
        self.register_buffer("_canon_sign", torch.tensor([-1.0, 1.0, 1.0]), persistent=False)
        sign = torch.ones(3, 3)
        sign[0, 2] = -1.0
        corner = torch.zeros(3, 3)
        corner[0, 2] = 1.0
        self.register_buffer("_k_sign", sign, persistent=False)
        self.register_buffer("_k_corner", corner, persistent=False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        n = images.shape[0]
        both = self.model(torch.cat([images, images.flip(-1)], 0))
        out = {}
        for key, value in both.items():
            direct, mirror = value[:n], value[n:]
            if key == "intrinsics":  # the mirror's principal point, cx -> W - cx
                width = images.new_ones(1) * images.shape[-1]
                mirror = mirror * self._k_sign + self._k_corner * width
            elif key == "canonical":  # [N, S, H, W, 3]: flip W, negate x
                mirror = mirror.flip(-2) * self._canon_sign
            else:  # [N, S, H, W] maps
                mirror = mirror.flip(-1)
            out[key] = (direct + mirror) / 2
        out["mask"] = torch.sigmoid(out["mask_logit"])
        return out
