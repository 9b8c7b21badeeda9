# SPDX-License-Identifier: GPL-3.0-or-later
"""Camera effects, from linear radiance to display RGB in [0, 1] (B, 3, H, W).

Order: auto exposure (mean log-luminance of the face to 0.18) times the sampled exposure, white
balance, vignetting, defocus (disk) and motion (line) blur, shot + read noise, tone curve (sRGB
gamma with contrast), saturation, JPEG artefacts (8 x 8 DCT quantisation, 4:2:0 chroma). Only
the RGB image changes; the ground truth stays exact.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# the JPEG standard's example quantisation tables (luminance, chrominance)
_QY = torch.tensor([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=torch.float32)
_QC = torch.tensor([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, dtype=torch.float32)


def _dct_matrix(device) -> torch.Tensor:
    n = torch.arange(8, device=device, dtype=torch.float32)
    m = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * 0.5
    m[0] = m[0] / math.sqrt(2)
    return m  # orthonormal: m @ m.T = I


def _quality_table(q: torch.Tensor, quality: int) -> torch.Tensor:
    quality = min(max(quality, 1), 100)
    s = 5000 / quality if quality < 50 else 200 - 2 * quality
    return ((q * s + 50) / 100).floor().clamp(1, 255)


def _blockwise(x: torch.Tensor, table: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Quantise 8 x 8 DCT blocks of planes x (C, H, W) (H, W multiples of 8), values 0..255."""
    c, h, w = x.shape
    blocks = (x - 128).reshape(c, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    coef = m @ blocks @ m.T
    t = table.reshape(8, 8).to(x.device)
    coef = torch.round(coef / t) * t
    out = m.T @ coef @ m
    return out.permute(0, 1, 3, 2, 4).reshape(c, h, w) + 128


def jpeg(rgb: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG-like artefacts on one image (3, H, W) in [0, 1]."""
    _, h, w = rgb.shape
    ph, pw = (-h) % 16, (-w) % 16
    x = F.pad(rgb[None], (0, pw, 0, ph), mode="replicate")[0] * 255
    r, g, b = x.unbind(0)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    m = _dct_matrix(rgb.device)
    y = _blockwise(y[None], _quality_table(_QY, quality), m)[0]
    chroma = F.avg_pool2d(torch.stack([cb, cr])[None], 2)[0]
    chroma = _blockwise(chroma, _quality_table(_QC, quality), m)
    cb, cr = F.interpolate(chroma[None], scale_factor=2, mode="bilinear", align_corners=False)[0]
    r = y + 1.402 * (cr - 128)
    g = y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)
    b = y + 1.772 * (cb - 128)
    return (torch.stack([r, g, b]) / 255).clamp(0, 1)[:, :h, :w]


def _disk_kernel(radius: float, device) -> torch.Tensor:
    r = int(math.ceil(radius))
    ax = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    d = (ax[None] ** 2 + ax[:, None] ** 2).sqrt()
    k = (radius + 0.5 - d).clamp(0, 1)
    return k / k.sum()


def _line_kernel(vec: torch.Tensor, device) -> torch.Tensor:
    length = float(vec.norm())
    r = int(math.ceil(length / 2)) + 1
    ax = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    t = torch.linspace(-0.5, 0.5, 4 * r + 1, device=device)
    pts = t[:, None] * vec.to(device)
    k = torch.zeros_like(xx)
    for p in pts:
        k = k + (1 - (xx - p[0]).abs()).clamp(0, 1) * (1 - (yy - p[1]).abs()).clamp(0, 1)
    return k / k.sum()


def _convolve(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    pad = kernel.shape[-1] // 2
    x = F.pad(img[None], (pad, pad, pad, pad), mode="replicate")
    return F.conv2d(x, kernel.expand(3, 1, *kernel.shape), groups=3)[0]


def apply_effects(linear: torch.Tensor, effects,
                  subject: torch.Tensor | None = None) -> torch.Tensor:
    """linear: (B, 3, H, W) radiance; effects: one scene.Effects per image; subject: (B, H, W)
    weights of the pixels auto exposure meters on (the face; the whole image where empty)."""
    out = []
    for i, (img, fx) in enumerate(zip(linear, effects)):
        g = torch.Generator(device="cpu").manual_seed(int(fx.seed))
        lum = (0.2126 * img[0] + 0.7152 * img[1] + 0.0722 * img[2]).clamp_min(1e-4)
        w = subject[i] if subject is not None and subject[i].sum() > 16 else torch.ones_like(lum)
        key = torch.exp((torch.log(lum) * w).sum() / w.sum())
        img = img * (0.18 / key) * fx.exposure
        gains = torch.as_tensor(fx.white_balance, dtype=torch.float32, device=img.device)
        img = img * gains[:, None, None]
        if fx.vignette > 0:
            _, h, w = img.shape
            yy = (torch.arange(h, device=img.device) + 0.5 - h / 2) / (max(h, w) / 2)
            xx = (torch.arange(w, device=img.device) + 0.5 - w / 2) / (max(h, w) / 2)
            img = img * (1 - fx.vignette * (xx[None] ** 2 + yy[:, None] ** 2) / 2).clamp_min(0)
        if fx.defocus > 0.3:
            img = _convolve(img, _disk_kernel(fx.defocus, img.device))
        motion = torch.as_tensor(fx.motion, dtype=torch.float32)
        if motion.norm() > 0.5:
            img = _convolve(img, _line_kernel(motion, img.device))
        img = img.clamp(0, 8)
        noise = torch.randn(img.shape, generator=g).to(img.device)
        chroma = torch.randn((1, *img.shape[1:]), generator=g).to(img.device)
        sigma = (img.clamp_min(0) * fx.shot_noise + fx.read_noise ** 2).sqrt()
        img = img + sigma * (0.7 * noise + 0.3 * chroma)
        img = img.clamp(0, 1) ** (1 / 2.2)
        img = (0.5 + (img - 0.5) * fx.contrast).clamp(0, 1)
        grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
        img = (grey + (img - grey) * fx.saturation).clamp(0, 1)
        if fx.jpeg_quality > 0:
            img = jpeg(img, int(fx.jpeg_quality))
        out.append(img)
    return torch.stack(out)
