# SPDX-License-Identifier: GPL-3.0-or-later
"""Shift averaging: the network run on the frames and on the frames moved by half a patch
(right and down), the moved predictions moved back and averaged with the direct ones.

A patch-14 network sees a frame through a 14-pixel grid; what falls across a patch border is
predicted differently from what falls inside one. Moving the frames by half a patch puts every
border where a patch centre was, so the average of the two predictions is less tied to the grid:
measured on the bundled v7 (12 clips, whole frames) it lowered the canonical error by 7 %, the
median 2D error by 6 % and the jitter by 13 %, at twice the inference cost. Pixels that the move
pushes out of the frame come back as the border's values (edge padding), as do the frames' own
pixels moved in at the other side.

The camera is the direct prediction's alone. The moved frame's principal point lies half a patch
further, but a network trained on centred cameras predicts it near the centre of whatever it is
shown, so moving it back would put it half a patch off: averaged that way, v7's principal point
error grew from 4.7 to 7.9 px (48 clips at 256).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def move(maps: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """[..., H, W] maps with their content moved by (dx, dy) >= 0 pixels (right, down) or, with
    both <= 0, back (left, up); what comes in at the edge repeats the edge."""
    shape = maps.shape
    flat = maps.reshape((-1,) + tuple(shape[-3:]))
    h, w = shape[-2], shape[-1]
    if dx >= 0 and dy >= 0:
        out = F.pad(flat, (dx, 0, dy, 0), mode="replicate")[..., :h, :w]
    else:
        out = F.pad(flat[..., -dy:, -dx:], (0, -dx, 0, -dy), mode="replicate")
    return out.reshape(shape)


class ShiftAveraged(nn.Module):
    """A network (or `MirrorAveraged` network) whose maps average its predictions on the frames
    and on the frames moved by `shift` pixels right and down (default half a patch), the latter
    moved back; the intrinsics are the frames' own (module note). Same inputs and outputs as
    the network."""

    def __init__(self, model: nn.Module, shift: int = 0):
        super().__init__()
        self.model = model
        self.cfg = model.cfg
        self.shift = shift or model.cfg.patch // 2

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        n, d = images.shape[0], self.shift
        both = self.model(torch.cat([images, move(images, d, d)], 0))
        out = {}
        for key, value in both.items():
            direct, moved = value[:n], value[n:]
            if key == "intrinsics":  # the frames' own camera (module note)
                out[key] = direct
                continue
            if key == "canonical":  # [N, S, H, W, 3] (explicit dims: ONNX wants them >= 0)
                moved = move(moved.permute(0, 1, 4, 2, 3), -d, -d).permute(0, 1, 3, 4, 2)
            else:  # [N, S, H, W] maps
                moved = move(moved, -d, -d)
            out[key] = (direct + moved) / 2
        out["mask"] = torch.sigmoid(out["mask_logit"])
        return out
