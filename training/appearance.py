# SPDX-License-Identifier: GPL-3.0-or-later
"""Procedural albedo of skin, hair, brows, lips, make-up, eyes, teeth and clothes, per pixel.

Everything is a function of the pixel's reference position (where its surface point sits on the
neutral head, metres, head-local), the MPFB2 masks interpolated from the vertices, and the
identity's `Look` (stacked per image). Features therefore stick to the skin as the face moves.
"""
from __future__ import annotations

import torch

from .noise import fbm3, noise3

LOOK_VECTORS = ("skin", "lips", "hair", "brow", "beard_colour", "eyeshadow", "blush", "iris",
                "sclera", "teeth", "cloth", "cloth2")
LOOK_SCALARS = ("seed", "blotch", "redness", "freckles", "lip_gloss", "hair_amount", "hairline",
                "nape", "brow_density", "brow_thickness", "brow_lift", "brow_arch", "beard",
                "eyeliner", "pupil", "cloth_pattern", "collar", "specular", "shininess")


def stack_looks(looks, device) -> dict[str, torch.Tensor]:
    """Looks of the images (list of scene.Look) as tensors (I, ...)."""
    out = {}
    for name in LOOK_VECTORS:
        out[name] = torch.tensor([list(getattr(lk, name)) for lk in looks], dtype=torch.float32,
                                 device=device)
    for name in LOOK_SCALARS:
        out[name] = torch.tensor([float(getattr(lk, name)) for lk in looks], dtype=torch.float32,
                                 device=device)
    # a per-identity shift of the noise domain, so every identity has its own texture
    out["offset"] = torch.tensor([[(lk.seed * k * 0.6180339887) % 1.0 * 500.0 for k in (1, 2, 3)]
                                  for lk in looks], dtype=torch.float32, device=device)
    return out


def _n3(p: torch.Tensor, look: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    return noise3(p + look["offset"] * (1 + 0.37 * k), k)


def _f3(p: torch.Tensor, look: dict[str, torch.Tensor], octaves: int, k: int) -> torch.Tensor:
    return fbm3(p + look["offset"] * (1 + 0.37 * k), octaves, k)


def _smooth(e0: float | torch.Tensor, e1: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def _mix(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return a + (b - a) * w[..., None]


class FaceFeatures:
    """Neutral-head anchor points (metres, head-local) the procedural features are placed by."""

    def __init__(self, model, device):
        self.lm = {k: torch.tensor(model.neutral[i], device=device)
                   for k, i in model.landmarks().items()}
        self.eye_centres = torch.tensor(model.eye_centres, device=device)
        self.eye_radius = float(model.eye_radius)


def _on(where: torch.Tensor, fn) -> torch.Tensor:
    """fn(indices) evaluated only where `where` (P,) holds; zeros elsewhere."""
    out = torch.zeros(where.shape, device=where.device)
    idx = torch.nonzero(where).squeeze(1)
    if idx.numel():
        out[idx] = fn(idx)
    return out


def skin_albedo(ref: torch.Tensor, masks: dict[str, torch.Tensor], look: dict[str, torch.Tensor],
                feat: FaceFeatures) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(albedo (P, 3), specular (P,), shininess (P,)) of skin pixels of one identity.

    ref: (P, 3) reference positions; masks: per-pixel MPFB2 masks plus `lash`; look: that
    identity's look (tensors with a leading dimension of 1). Costly noise is evaluated only on
    the pixels a feature can touch."""
    dev = ref.device
    x, y, z = ref.unbind(-1)
    ax = x.abs()
    lm = feat.lm
    # tone variation: blotches and fine mottling
    blotch = _f3(ref * 30.0, look, 3, 1)
    mottle = _n3(ref * 220.0, look, 7)
    tone = 1 + look["blotch"] * (0.8 * blotch) + 0.035 * mottle
    albedo = look["skin"] * tone[:, None] * torch.stack([1 + 0.02 * blotch, torch.ones_like(blotch),
                                                         1 - 0.03 * blotch], -1)
    # redness on cheeks, nose and ears
    cheek = torch.exp(-(((ax - 0.038) / 0.018) ** 2 + ((y + 0.035) / 0.02) ** 2))
    nose = torch.exp(-((ax / 0.012) ** 2 + ((y - lm["nose_tip"][1]) / 0.015) ** 2)) * (z > 0)
    red = (look["redness"] * (cheek + 0.7 * nose + 0.6 * masks["ears"])).clamp(0, 1)
    albedo = _mix(albedo, albedo * torch.tensor([1.05, 0.72, 0.74], device=dev), red)
    if float(look["freckles"]) > 0:
        zone = (cheek + nose).clamp(0, 1) * (z > 0)
        fr = _on(zone > 0.02, lambda i: _smooth(0.55, 0.75, _n3(ref[i] * 450.0, look, 11)))
        albedo = _mix(albedo, albedo * torch.tensor([0.72, 0.58, 0.5], device=dev),
                      fr * zone * look["freckles"])
    albedo = _mix(albedo, look["blush"][:, :3], (look["blush"][:, 3] * cheek).clamp(0, 1))
    # beard / stubble: chin, jaw, upper lip, lower cheeks and under the chin; never on the lips
    if float(look["beard"]) > 0:
        below_nose = _smooth(lm["subnasale"][1] + 0.004, lm["subnasale"][1] - 0.004, y)
        cheek_line = _smooth(lm["nose_wing_l"][1] - 0.005, lm["nose_wing_l"][1] - 0.03,
                             y - 0.35 * ax)
        zone = (below_nose * cheek_line * masks["face"] * (1 - masks["lips"])
                * (z > lm["jaw_angle_l"][2] - 0.01))
        under = (_smooth(-0.02, 0.0, z - lm["jaw_angle_l"][2]) * _smooth(-0.14, -0.12, y)
                 * _smooth(lm["chin"][1], lm["chin"][1] - 0.01, y) * (1 - masks["face"]))
        zone = torch.maximum(zone, under * 0.7)
        stubble = _on(zone > 0.01, lambda i: _smooth(-0.2, 0.5, _n3(ref[i] * 1500.0, look, 13)))
        albedo = _mix(albedo, look["beard_colour"],
                      (look["beard"] * zone * (0.5 + 0.5 * stubble)).clamp(0, 1) * 0.85)
    # scalp hair: off the face mask (hairline shifts the threshold), above the nape
    off_face = _smooth(0.35 + 0.3 * look["hairline"], 0.65 + 0.3 * look["hairline"],
                       1 - masks["face"])
    scalp = (off_face * (1 - masks["ears"]) * _smooth(look["nape"] - 0.01, look["nape"] + 0.01, y)
             * (z < lm["ear_front_l"][2] + 0.09) * look["hair_amount"]).clamp(0, 1)
    strands = _on(scalp > 0.01, lambda i: 0.75 + 0.25 * _n3(torch.stack(
        [torch.atan2(x[i], z[i] + 0.02) * 60.0, y[i] * 20.0, z[i] * 2.0], -1), look, 17))
    albedo = _mix(albedo, look["hair"] * strands[:, None], scalp)
    # brows
    bi, bo = lm["brow_inner_l"], lm["brow_outer_l"]
    t = (ax - bi[0]) / (bo[0] - bi[0])
    centre_y = bi[1] + (bo[1] - bi[1]) * t + look["brow_lift"] + look["brow_arch"] * torch.sin(
        3.1416 * t.clamp(0, 1))
    half = look["brow_thickness"] * (1.1 - 0.5 * t.clamp(0, 1)) / 2
    across = _smooth(half, half * 0.4, (y - centre_y).abs())
    brow = _smooth(-0.08, 0.05, t) * _smooth(1.1, 0.95, t) * across * (z > 0)
    hairs = _on(brow > 0.01, lambda i: _smooth(-0.4, 0.4, _n3(torch.stack(
        [x[i] * 250.0, y[i] * 2500.0, z[i] * 400.0], -1), look, 19)))
    brow_w = (look["brow_density"] * brow * (0.35 + 0.65 * hairs)).clamp(0, 1)
    albedo = _mix(albedo, look["brow"], brow_w)
    # eyelids: eye shadow on the lid skin above the margin; liner and lash line at the margin
    upper = (y > feat.eye_centres[0, 1] - 0.001).float()
    albedo = _mix(albedo, look["eyeshadow"][:, :3],
                  (look["eyeshadow"][:, 3] * masks["eyelids"] * upper).clamp(0, 1))
    lash = masks["lash"] * (0.55 + 0.45 * look["eyeliner"])
    albedo = _mix(albedo, torch.full_like(albedo, 0.02), lash.clamp(0, 1))
    # lips and the inside of the mouth
    lips_w = _smooth(0.25, 0.75, masks["lips"])
    albedo = _mix(albedo, look["lips"] * (0.9 + 0.1 * mottle[:, None]), lips_w)
    albedo = _mix(albedo, torch.tensor([0.30, 0.06, 0.06], device=dev).expand_as(albedo),
                  _smooth(0.3, 0.7, masks["mouth"]))
    # clothes below the neckline
    cloth_w = _smooth(look["collar"] + 0.004, look["collar"] - 0.004, y + 0.25 * (z - 0.02).abs())
    idx = torch.nonzero(cloth_w > 0).squeeze(1)
    if idx.numel():
        albedo[idx] = _mix(albedo[idx], _cloth(ref[idx], look), cloth_w[idx])
    oil = 0.6 + 0.4 * _n3(ref * 400.0, look, 53)  # patchy shine, stronger on the T-zone
    spec = look["specular"] * oil * (1 + 1.5 * lips_w * look["lip_gloss"] + 0.6 * nose) * (
        1 - 0.7 * scalp)
    spec = spec * (1 - 0.8 * cloth_w)
    shin = look["shininess"] * (1 + lips_w * look["lip_gloss"] * 2) * (1 - 0.6 * cloth_w)
    return albedo.clamp(0, 1), spec, shin


def _cloth(ref: torch.Tensor, look: dict[str, torch.Tensor]) -> torch.Tensor:
    x, y, z = ref.unbind(-1)
    pattern = look["cloth_pattern"]
    stripes = (torch.sin(y * 260.0) > 0).float()
    checks = ((torch.sin(x * 180.0) > 0) ^ (torch.sin(y * 180.0) > 0)).float()
    blotchy = _smooth(-0.2, 0.2, _f3(ref * 60.0, look, 2, 23))
    w = torch.where(pattern == 1, stripes, torch.where(pattern == 2, checks,
                    torch.where(pattern == 3, blotchy, torch.zeros_like(x))))
    weave = 0.92 + 0.08 * _n3(ref * 900.0, look, 29)
    return _mix(look["cloth"], look["cloth2"], w) * weave[:, None]


def eye_albedo(ref: torch.Tensor, side: torch.Tensor, look: dict[str, torch.Tensor],
               feat: FaceFeatures) -> tuple[torch.Tensor, torch.Tensor]:
    """(albedo, iris weight) of eyeball pixels; side: (P,) 0 left, 1 right eye."""
    centre = feat.eye_centres[side]
    d = ref - centre
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    ang = torch.acos(d[:, 2].clamp(-1, 1))  # angle from straight ahead
    iris_r = 0.36
    radial = torch.atan2(d[:, 1], d[:, 0])
    streak = _n3(torch.stack([radial * 12.0, ang * 30.0, side.float() * 5.0], -1), look, 31)
    iris = look["iris"] * (0.75 + 0.35 * streak[:, None])
    iris = iris * (1 - 0.5 * _smooth(iris_r * 0.75, iris_r, ang))[:, None]  # limbal ring
    pupil = _smooth(look["pupil"] * iris_r * 1.05, look["pupil"] * iris_r * 0.9, ang)
    iris = _mix(iris, torch.full_like(iris, 0.01), pupil)
    vessels = _smooth(0.3, 0.8, _n3(ref * 900.0, look, 37)) * _smooth(0.5, 1.1, ang)
    sclera = _mix(look["sclera"], look["sclera"] * torch.tensor([1.0, 0.55, 0.55],
                                                                 device=ref.device), vessels * 0.5)
    iris_w = _smooth(iris_r * 1.04, iris_r * 0.96, ang)
    return _mix(sclera, iris, iris_w), iris_w
