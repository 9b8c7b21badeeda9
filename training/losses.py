# SPDX-License-Identifier: GPL-3.0-or-later
"""Training losses: confidence-weighted regression, gradient losses on depth and canonical maps,
mask, intrinsics, and depth-scale consistency across the frames of a window.

Depth is metric: the loss compares log depth (so errors are relative, about 1 % per 0.01), plus a
relief term that compares log depth with its per-frame masked mean removed (the face's shape,
independent of its distance), plus gradients of log depth, plus (`depth_shape`, off by default)
the evaluation's relief measure as a loss: each frame's log depth aligned to the truth by least
squares scale and shift, its mean absolute residual over the truth's standard deviation, so that
every frame counts alike however far its face is and however deep the network thinks it is.
The mask has binary cross-entropy per pixel and (`mask_iou`, off by default) one minus each frame's
soft intersection over union, so that a small face's outline counts as much as a large one's
(`mask_iou_empty`: how much frames without a face count there; 0 leaves them to the cross-entropy).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class LossWeights:
    """Weights and error scales. With L1-type terms the gradient per pixel is weight / scale, so
    the scales put the terms on comparable footing (about 10 per face pixel for canonical and
    relief, 5 at most for the mask); canonical keeps the paper's 5x over depth shape."""

    depth: float = 0.5  # absolute (metric) log depth: weaker, the focal/distance ambiguity is large
    depth_relief: float = 0.2
    depth_grad: float = 0.2
    depth_shape: float = 0.0  # scale-and-shift invariant relief per frame, in [0, 1]
    canonical: float = 5.0
    canonical_grad: float = 2.0
    mask: float = 5.0
    mask_iou: float = 0.0  # 1 - soft IoU per frame (the evaluation's measure), in [0, 1]
    mask_iou_empty: float = 1.0  # weight of faceless frames in mask_iou (0: skipped, as the metric does)
    intrinsics: float = 0.5
    consistency: float = 0.05
    alpha: float = 0.2  # weight of -log(confidence)
    depth_scale: float = 0.2  # absolute log-depth error that counts as 1
    relief_scale: float = 0.02  # log-depth relief / gradient error that counts as 1
    canonical_scale: float = 0.5  # canonical error (its own units) that counts as 1


def masked_mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean of x over m (both broadcastable); 0 when m is empty."""
    return (x * m).sum() / m.sum().clamp_min(1.0)


def confidence_regression(err: torch.Tensor, conf: torch.Tensor, m: torch.Tensor,
                          alpha: float) -> torch.Tensor:
    """The paper's conf * error - alpha * log(conf), over the mask."""
    return masked_mean(conf * err - alpha * torch.log(conf), m)


def gradient_loss(pred: torch.Tensor, true: torch.Tensor, m: torch.Tensor,
                  scales: int = 3) -> torch.Tensor:
    """L1 between finite differences of pred and true (.., H, W[, C]) where both pixels of a pair
    are valid, at `scales` strides (1, 2, 4)."""
    if pred.dim() == m.dim() + 1:  # channels last
        pred, true = pred.movedim(-1, -3), true.movedim(-1, -3)
        m = m.unsqueeze(-3)
    total = pred.new_zeros(())
    for k in range(scales):
        step = 2 ** k
        d = pred - true
        gx = (d[..., :, step:] - d[..., :, :-step]).abs()
        gy = (d[..., step:, :] - d[..., :-step, :]).abs()
        mx = m[..., :, step:] * m[..., :, :-step]
        my = m[..., step:, :] * m[..., :-step, :]
        total = total + masked_mean(gx, mx.expand_as(gx)) + masked_mean(gy, my.expand_as(gy))
    return total / scales


def frame_mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Masked mean over each frame's pixels: (N, S, H, W) -> (N, S, 1, 1)."""
    return (x * m).sum((-2, -1), keepdim=True) / m.sum((-2, -1), keepdim=True).clamp_min(1.0)


def shape_loss(pred: torch.Tensor, true: torch.Tensor, m: torch.Tensor,
               min_pixels: int = 16) -> torch.Tensor:
    """Per frame (.., H, W): pred aligned to true by least-squares scale and shift over m, the mean
    absolute residual over m divided by true's standard deviation there; the mean over frames
    with at least `min_pixels` valid pixels (0 when none has). 0 for any pred = a * true + b,
    at most 1 (the aligned residual's RMS never exceeds the std), about 0.8 for a flat pred."""
    n = m.sum((-2, -1))
    xc = (pred - frame_mean(pred, m)) * m
    yc = (true - frame_mean(true, m)) * m
    nn = n.clamp_min(1.0)
    var_x = (xc * xc).sum((-2, -1)) / nn
    cov = (xc * yc).sum((-2, -1)) / nn
    scale = cov / (var_x + 1e-10)
    residual = (scale[..., None, None] * xc - yc).abs() * m
    std_y = ((yc * yc).sum((-2, -1)) / nn + 1e-12).sqrt()
    per_frame = residual.sum((-2, -1)) / nn / std_y
    keep = (n >= min_pixels).float()
    return (per_frame * keep).sum() / keep.sum().clamp_min(1.0)


def soft_iou_loss(logit: torch.Tensor, true: torch.Tensor, smooth: float = 1.0,
                  empty_weight: float = 1.0) -> torch.Tensor:
    """Weighted mean over frames (.., H, W) of 1 - soft intersection / soft union of
    sigmoid(logit) and the true mask; `smooth` pixels added to both keep an empty truth and an
    empty prediction at 0. Frames whose truth is empty (no face) weigh `empty_weight` (0: left
    out, as the evaluation's mask IoU leaves them out; the cross-entropy still covers them);
    0 when no frame weighs anything."""
    p = torch.sigmoid(logit)
    inter = (p * true).sum((-2, -1))
    union = (p + true - p * true).sum((-2, -1))
    per_frame = 1.0 - (inter + smooth) / (union + smooth)
    weight = torch.where(true.sum((-2, -1)) > 0, 1.0, float(empty_weight)).to(per_frame.dtype)
    return (per_frame * weight).sum() / weight.sum().clamp_min(1e-6)


def face_losses(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                w: LossWeights = LossWeights()) -> dict[str, torch.Tensor]:
    """All loss terms (and their weighted sum under 'total') for one batch.

    out: the network's dict; batch: depth (N,S,H,W) metres, canonical (N,S,H,W,3), mask (N,S,H,W),
    intrinsics (N,S,3,3)."""
    m = (batch["mask"] > 0.5).float()
    valid = m * (batch["depth"] > 0).float()
    log_pred = torch.log(out["depth"].clamp_min(1e-4))
    log_true = torch.log(batch["depth"].clamp_min(1e-4))
    d_err = (log_pred - log_true).abs() / w.depth_scale
    terms = {"depth": confidence_regression(d_err, out["depth_conf"], valid, w.alpha)}
    rel_pred = log_pred - frame_mean(log_pred, valid)
    rel_true = log_true - frame_mean(log_true, valid)
    terms["depth_relief"] = masked_mean((rel_pred - rel_true).abs(), valid) / w.relief_scale
    terms["depth_grad"] = gradient_loss(log_pred, log_true, valid) / w.relief_scale
    terms["depth_shape"] = shape_loss(log_pred, log_true, valid)
    c_err = (out["canonical"] - batch["canonical"]).norm(dim=-1) / w.canonical_scale
    terms["canonical"] = confidence_regression(c_err, out["canonical_conf"], m, w.alpha)
    terms["canonical_grad"] = gradient_loss(out["canonical"], batch["canonical"], m) / w.canonical_scale
    terms["mask"] = F.binary_cross_entropy_with_logits(out["mask_logit"], batch["mask"].float())
    terms["mask_iou"] = soft_iou_loss(out["mask_logit"], batch["mask"].float(),
                                      empty_weight=w.mask_iou_empty)
    k_pred, k_true = out["intrinsics"], batch["intrinsics"]
    width = float(out["depth"].shape[-1])
    terms["intrinsics"] = ((torch.log(k_pred[..., 0, 0] / k_true[..., 0, 0])).abs().mean()
                           + (k_pred[..., :2, 2] - k_true[..., :2, 2]).abs().mean() / width * 10)
    if log_pred.shape[1] > 1:  # one depth scale per window: the offsets must agree across frames
        offset = frame_mean(log_pred - log_true, valid)
        terms["consistency"] = (offset - offset.mean(1, keepdim=True)).abs().mean() / w.relief_scale
    else:
        terms["consistency"] = log_pred.new_zeros(())
    weights = {"depth": w.depth, "depth_relief": w.depth_relief, "depth_grad": w.depth_grad,
               "depth_shape": w.depth_shape,
               "canonical": w.canonical, "canonical_grad": w.canonical_grad, "mask": w.mask,
               "mask_iou": w.mask_iou, "intrinsics": w.intrinsics, "consistency": w.consistency}
    terms["total"] = sum(weights[k] * v for k, v in terms.items())
    return terms
