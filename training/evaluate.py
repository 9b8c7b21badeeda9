# SPDX-License-Identifier: GPL-3.0-or-later
"""Score any contract ONNX model on the synthetic validation split and write a results table.

    python -m training.evaluate face_anything_addon/assets/face_anything_default.onnx --out eval.md

Frames are rendered at `--size` (256), resized to the model's input size, predicted in windows of
`--window` frames, and the outputs brought back to `--size` by interpolating each map from the
pixels of the model's own face mask (`resize_from_mask`): a face pixel at the silhouette is not
blended with the background behind it, which sits a metre or more further away and would
otherwise dominate the relief error (plain bilinear upsampling scores even the true depth, taken
to 140 px and back, at 0.83). `--plain-upsampling` gives the plain protocol for comparison and
`--floor SIDE` scores the truth itself taken to SIDE pixels and back (the best a model of that
resolution can score), `--blurred SIGMA` the truth blurred by SIGMA pixels inside the face mask
(how much of a face's shape a model's maps carry). Metrics (inside the true face mask):
- relief: depth RMSE after least-squares scale-and-shift alignment / std of the true depth
  (a flat plane scores 1, perfect 0);
- absrel / rmse_m: after median scale alignment (the paper's protocol);
- metric_absrel: without any alignment (metric models only);
- spread_log2: log2 of the depth's relative spread (std / median) over the truth's, mean over
  frames: 0 when the face is as deep against its distance as in the truth, 0.3 when 23 %
  deeper. Relief is blind to it; median-scaled absrel and rmse_m are not. A flat prediction
  counts as -10 (as captured, a face left outside the crop), not -inf;
- canonical: mean L2 error of the canonical coordinate (the space's normalised units);
- corr_px (median, mean), pck1/2/4: 2D error of template vertices found by the add-on's own
  canonical inversion on the model's own output maps (as the add-on runs it; positions scaled to
  `--size` pixels), against the true vertex tracks (vertices visible in the truth; one not found
  counts as a miss in PCK);
- focal_log2: log2 of the predicted focal length over the true one, mean over frames (0: right,
  negative: too short, so a face of the right size is placed too close); principal_px: distance
  of the predicted principal point from the true one, in `--size` pixels;
- jitter_px: mean |second temporal difference| of (found - true) vertex positions within a clip;
- mask_iou: predicted mask > 0.5 vs truth (mean over frames); mask_iou_large / mask_iou_small:
  the same over frames whose true face covers at least / less than SMALL_FACE (2 %) of the
  frame (a face of about 36 x 36 pixels at 256: the validation split has faces down to
  0.3 %, where a model at 140-196 px input sees a face of about 10 pixels); relief_large /
  relief_small: relief split the same way;
- fps: frames per second of the model alone in ONNX Runtime at its input size.
`--baseline` also scores a trivial predictor (constant depth, mean canonical, centre-ellipse mask).
`--capture` also scores each model as the add-on's capture runs it (`CapturePredictor`): the face
found on the whole frame, then every frame predicted on its own face crop at the model's input
size and brought back into the frame; there fps counts both passes and the pipeline's own work,
and no_face is the share of clips where it found no face (scored from the whole-frame outputs).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch.nn import functional as F

from face_anything_addon.core.contract import describe_model
from face_anything_addon.core.inversion import CanonicalMap, invert
from face_anything_addon.core.session import open_session

TEMPLATE = (Path(__file__).resolve().parents[1] / "face_anything_addon" / "assets"
            / "template_makehuman_v1.npz")


def relief_error(pred: np.ndarray, true: np.ndarray) -> float:
    """RMSE after least-squares scale and shift, over the std of the truth (1-d arrays)."""
    a = np.stack([pred, np.ones_like(pred)], 1)
    coef, *_ = np.linalg.lstsq(a, true, rcond=None)
    rmse = np.sqrt(np.mean((a @ coef - true) ** 2))
    return float(rmse / max(true.std(), 1e-9))


SPREAD_FLOOR = -10.0  # spread_log2 of a flat prediction


def spread(depth: np.ndarray) -> float:
    """Relative spread of depths: std over median (how deep a face is against its distance)."""
    return float(depth.std() / max(abs(np.median(depth)), 1e-12))


def depth_metrics(pred: np.ndarray, true: np.ndarray, metric: bool) -> dict[str, float]:
    """Relief, median-aligned AbsRel and RMSE (metres), spread (log2 against the truth),
    unaligned AbsRel for one frame's pixels."""
    scaled = pred * np.median(true) / max(np.median(pred), 1e-9)
    # a flat prediction (a plane; as captured, a face left outside the crop) would be log2 0 =
    # -inf and swamp the mean over frames: it counts as SPREAD_FLOOR
    ratio = max(spread(pred) / max(spread(true), 1e-12), 2.0 ** SPREAD_FLOOR)
    out = {"relief": relief_error(pred, true),
           "absrel": float(np.mean(np.abs(scaled - true) / true)),
           "rmse_m": float(np.sqrt(np.mean((scaled - true) ** 2))),
           "spread_log2": float(np.log2(ratio))}
    if metric:
        out["metric_absrel"] = float(np.mean(np.abs(pred - true) / true))
    return out


def focal_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Intrinsics (3, 3) of one frame against the truth, both in frame pixels: focal_log2 =
    log2(predicted / true focal length) (0: right; -0.5: 29 % too short, which puts a face of
    the right size 29 % too close), principal_px = distance of the principal points."""
    return {"focal_log2": float(np.log2(pred[0, 0] / true[0, 0])),
            "principal_px": float(np.hypot(pred[0, 2] - true[0, 2], pred[1, 2] - true[1, 2]))}


def track_errors(canonical: np.ndarray, weight: np.ndarray, targets: np.ndarray,
                 true_xy: np.ndarray, visible: np.ndarray, scale=(1.0, 1.0),
                 offset=(0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """One clip: canonical (S,h,w,3), weight (S,h,w), targets (V,3), true_xy (S,V,2), visible
    (S,V); a map pixel position p is at p * scale + offset in true_xy's pixels (pixel centres at
    + 0.5 in both); scale and offset: (x, y), or (S, 2) when each frame's maps cover their own
    region (a face crop). Returns found positions (S,V,2) in true_xy's pixels (nan where not
    found) and per-vertex errors (S,V)."""
    s, v = visible.shape
    scale = np.broadcast_to(np.asarray(scale, np.float32), (s, 2))
    offset = np.broadcast_to(np.asarray(offset, np.float32), (s, 2))
    found = np.full((s, v, 2), np.nan, np.float32)
    warm = None
    for i in range(s):
        start = None if warm is None else (warm - offset[i]) / scale[i]
        p, _, ok = invert(CanonicalMap(canonical[i], weight[i]), targets, start)
        found[i, ok] = p[ok] * scale[i] + offset[i]
        warm = np.where(ok[:, None], found[i], np.nan).astype(np.float32)
    err = np.linalg.norm(found - true_xy, axis=-1)
    err[~visible] = np.nan
    return found, err


def resize(x: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """(B, C, h, w) numpy -> (B, C, H, W)."""
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    kw = {"align_corners": False, "antialias": True} if mode == "bilinear" else {}
    return F.interpolate(t, size=size, mode=mode, **kw).numpy()


def resize_from_mask(x: np.ndarray, weight: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(B, C, h, w) maps -> (B, C, H, W), each output pixel interpolated from the input pixels
    by their weight (B, 1, h, w), a face mask in [0, 1]: a pixel at the silhouette takes the face
    pixels' values, not a blend with the background. Plain interpolation where no weighted
    pixel is near."""
    num = resize(x * weight, size)
    den = resize(weight, size)
    return np.where(den > 0.05, num / np.maximum(den, 1e-6), resize(x, size)).astype(np.float32)


def to_eval_size(native: dict[str, np.ndarray], size: tuple[int, int],
                 plain: bool = False) -> dict[str, np.ndarray]:
    """Contract outputs of S frames at the model's resolution (depth (S,h,w), canonical
    (S,h,w,3), ...) -> the same at `size` (H, W), maps interpolated from the outputs' own mask
    (`resize_from_mask`) unless `plain` or there is no mask; the mask itself bilinearly. The
    model-resolution canonical map and weight, and the pixel scale, are kept under 'native' for
    the canonical inversion."""
    s, h, w = native["depth"].shape
    has_mask = "mask" in native
    weight = native["mask"][:, None] if has_mask else np.ones((s, 1, h, w), np.float32)

    def up(x):  # (S, C, h, w) -> (S, C, H, W)
        return resize(x, size) if plain or not has_mask else resize_from_mask(x, weight, size)

    res = {k: up(native[k][:, None])[:, 0] for k in ("depth", "depth_conf", "canonical_conf")
           if k in native}
    if has_mask:
        res["mask"] = resize(weight, size)[:, 0]
    res["canonical"] = up(native["canonical"].transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    res["native"] = {"canonical": native["canonical"], "weight": weight[:, 0],
                     "scale": (size[1] / w, size[0] / h)}
    return res


class ResolutionFloor:
    """Not a model: the truth itself taken to `side` x `side` pixels (area average from the
    true mask's pixels, as a perfect model of that resolution would predict) and brought back
    as any model's outputs are. What it scores is the floor for a model of that input size."""

    wants_truth = True

    def __init__(self, side: int, plain: bool = False):
        self.side, self.plain = side, plain

    def __call__(self, images: np.ndarray, truth: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        s, _, h, w = images.shape
        n = (self.side, self.side)
        m = (truth["mask"] > 0.5).astype(np.float32)[:, None]
        canon = truth["canonical"].transpose(0, 3, 1, 2)
        maps = np.concatenate([truth["depth"][:, None], canon], 1).astype(np.float32)
        small_m = F.interpolate(torch.from_numpy(m), size=n, mode="area").numpy()
        small = F.interpolate(torch.from_numpy(maps * m), size=n, mode="area").numpy()
        small = np.where(small_m > 1e-6, small / np.maximum(small_m, 1e-6), 1.0)
        native = {"depth": small[:, 0], "canonical": small[:, 1:].transpose(0, 2, 3, 1),
                  "canonical_conf": np.full((s,) + n, 2.0, np.float32), "mask": small_m[:, 0]}
        return to_eval_size(native, (h, w), self.plain)


def masked_blur(x: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """(B, C, H, W) maps blurred by a Gaussian of `sigma` pixels over the pixels of `mask`
    (B, 1, H, W) only (normalised convolution: no blend with what lies outside the mask)."""
    radius = max(1, int(3 * sigma + 0.5))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()

    def blur(t):  # separable, zero padding (the weight carries the same padding)
        c = t.shape[1]
        t = F.conv2d(t, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
        return F.conv2d(t, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)

    m = torch.from_numpy(np.ascontiguousarray(mask, np.float32))
    num = blur(torch.from_numpy(np.ascontiguousarray(x, np.float32)) * m)
    den = blur(m)
    return (num / den.clamp_min(1e-6)).numpy()


class BlurredTruth:
    """Not a model: the truth blurred by a Gaussian of `sigma` pixels (of the evaluation size)
    inside the true face mask, the mask itself exact. It calibrates how much of a face's shape a
    model's maps carry: a model whose relief equals the truth's at sigma 12 predicts the face
    only as it looks that blurred (v7: a nose and eye sockets washed out)."""

    wants_truth = True

    def __init__(self, sigma: float):
        self.sigma = sigma

    def __call__(self, images: np.ndarray, truth: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        m = (truth["mask"] > 0.5).astype(np.float32)[:, None]
        canon = truth["canonical"].transpose(0, 3, 1, 2)
        maps = np.concatenate([truth["depth"][:, None], canon], 1)
        blurred = masked_blur(maps, m, self.sigma)
        s, _, h, w = images.shape
        return {"depth": blurred[:, 0], "canonical": blurred[:, 1:].transpose(0, 2, 3, 1),
                "canonical_conf": np.full((s, h, w), 2.0, np.float32), "mask": m[:, 0]}


class OnnxPredictor:
    """A contract model run on frames of any size (resized to its input size and back)."""

    def __init__(self, path: Path, threads: int = 0, plain: bool = False):
        self.desc = describe_model(path)
        self.plain = plain
        self.session = open_session(self.desc, "CPU", cpu_threads=threads)
        self.seconds, self.frames = 0.0, 0

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """images (S, 3, H, W) in [0, 1] -> contract outputs for the S frames at H x W."""
        s, _, h, w = images.shape
        n = self.desc.fixed_size or (self.desc.input_size,) * 2
        x = resize(images, n)
        mean = np.array(self.desc.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.array(self.desc.std, np.float32).reshape(1, 3, 1, 1)
        t0 = time.perf_counter()
        out = self.session.run(((x - mean) / std)[None])
        self.seconds += time.perf_counter() - t0
        self.frames += s
        res = to_eval_size({k: v[0] for k, v in out.items() if k != "intrinsics"}, (h, w),
                           self.plain)
        k = out["intrinsics"][0].copy()
        k[:, 0] *= w / n[1]
        k[:, 1] *= h / n[0]
        res["intrinsics"] = k
        return res


def from_crops(native: dict[str, np.ndarray], crops, size: tuple[int, int],
               plain: bool = False) -> dict:
    """Contract outputs of S frames, each over its own crop of the frame (`core.preprocess.Crop`,
    model pixels -> frame pixels), -> the same over the whole frame `size` (H, W): maps sampled
    at each frame pixel's place in its crop, from the pixels of the outputs' own mask as in
    `resize_from_mask` (plain bilinear if `plain`); outside the crop the mask is 0 and the maps
    take the crop's edge. The model-resolution canonical map and weight are kept under 'native'
    with each frame's scale and offset to frame pixels, for the canonical inversion."""
    s, h, w = native["depth"].shape
    big_h, big_w = size
    grid = np.empty((s, big_h, big_w, 2), np.float32)
    for i, c in enumerate(crops):  # pixel centre -> the crop's normalised coordinate
        u = c.to_input(np.stack([np.arange(big_w) + 0.5, np.zeros(big_w)], 1))[:, 0] / w
        v = c.to_input(np.stack([np.zeros(big_h), np.arange(big_h) + 0.5], 1))[:, 1] / h
        grid[i, :, :, 0] = 2 * u[None, :] - 1
        grid[i, :, :, 1] = 2 * v[:, None] - 1
    grid_t = torch.from_numpy(grid)

    def sample(x, padding):  # (S, C, h, w) -> (S, C, H, W)
        return F.grid_sample(torch.from_numpy(np.ascontiguousarray(x, np.float32)), grid_t,
                             mode="bilinear", padding_mode=padding, align_corners=False).numpy()

    weight = native["mask"][:, None]
    den = sample(weight, "zeros")

    def up(x):
        if plain:
            return sample(x, "border")
        num = sample(x * weight, "border")
        near = sample(weight, "border")
        return np.where(near > 0.05, num / np.maximum(near, 1e-6), sample(x, "border"))

    res = {k: up(native[k][:, None])[:, 0] for k in ("depth", "depth_conf", "canonical_conf")}
    res["mask"] = den[:, 0]
    res["canonical"] = up(native["canonical"].transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    res["native"] = {"canonical": native["canonical"], "weight": native["mask"],
                     "scale": np.array([[1 / c.scale[0], 1 / c.scale[1]] for c in crops]),
                     "offset": np.array([[c.x0, c.y0] for c in crops])}
    return res


class CapturePredictor(OnnxPredictor):
    """A contract model run as the add-on's capture runs it (`core.pipeline.Pipeline` with face
    region 'auto' and the add-on's default settings, except that the whole clip is one window, as
    for `OnnxPredictor`): a face-finding pass on whole frames at 224 px, then every frame cropped
    to its smoothed face box grown by 35 % and taken to the model's input size; the maps are
    brought back into the whole frame (`from_crops`). `seconds` counts the whole pipeline, both
    passes; its intrinsics are the camera the add-on puts in the scene (`Pipeline.camera_for`).
    A clip where the capture finds no face (the add-on stops and asks for a face box) is
    scored from the whole-frame outputs and counted in `no_face`."""

    def __init__(self, path: Path, threads: int = 0, plain: bool = False, window: int = 0):
        super().__init__(path, threads, plain)
        self.no_face = 0
        self.window = window  # frames per window (0: the whole clip, up to the model's maximum)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        from face_anything_addon.core.frames import Frame
        from face_anything_addon.core.pipeline import Pipeline, PipelineError, PipelineSettings

        s, _, h, w = images.shape
        frames = [Frame(i, np.ascontiguousarray(images[i].transpose(1, 2, 0), np.float32))
                  for i in range(s)]
        window = min(self.window or s, s, self.desc.max_window)
        settings = PipelineSettings(window=window, overlap=1 if window > 1 else 0,
                                    pipelined=False)
        t0 = time.perf_counter()
        pipeline = Pipeline(self.session, settings)
        try:
            preds = list(pipeline.run(frames, total=s))
        except PipelineError:
            self.no_face += 1
            return super().__call__(images)
        self.seconds += time.perf_counter() - t0
        self.frames += s
        native = {k: np.stack([getattr(q, k) for q in preds]) for k in
                  ("depth", "depth_conf", "canonical", "canonical_conf")}
        native["mask"] = np.stack([q.face_weight for q in preds])
        res = from_crops(native, [q.crop for q in preds], (h, w), self.plain)
        # the camera the add-on gives the scene: the shot's (one for the clip, by default)
        res["intrinsics"] = np.stack([pipeline.camera_for(q) for q in preds]).astype(np.float32)
        return res


class Baseline:
    """The trivial predictor: constant depth, the mean canonical coordinate, a centred ellipse."""

    def __init__(self, mean_canonical: np.ndarray, depth: float = 0.6):
        self.c, self.depth = mean_canonical.astype(np.float32), depth

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        s, _, h, w = images.shape
        y, x = np.mgrid[:h, :w] + 0.5
        ellipse = (((x - w / 2) / (0.3 * w)) ** 2 + ((y - h / 2) / (0.4 * h)) ** 2 <= 1)
        depth = np.full((s, h, w), self.depth, np.float32)  # a flat plane: relief 1
        return {"depth": depth, "canonical": np.broadcast_to(self.c, (s, h, w, 3)).copy(),
                "canonical_conf": np.full((s, h, w), 2.0, np.float32),
                "mask": np.broadcast_to(ellipse, (s, h, w)).astype(np.float32)}


def template_targets(count: int) -> np.ndarray:
    """Canonical coordinates of the first `count` template vertices (the engine's vertex order)."""
    return np.load(TEMPLATE)["canonical"][:count].astype(np.float32)


SMALL_FACE = 0.02  # true face area / frame area below which a frame's mask IoU counts as small


def evaluate(predict, windows: Iterable[dict], metric: bool = True) -> dict[str, float]:
    """Mean metrics of `predict` over validation windows (engine sample dicts)."""
    rows: dict[str, list[float]] = {}
    errors, jitters = [], []
    ious = []
    for win in windows:
        win = {k: np.asarray(v) for k, v in win.items()}
        images = win["images"].astype(np.float32)
        out = predict(images, win) if getattr(predict, "wants_truth", False) else predict(images)
        mask = win["mask"] > 0.5
        for i in range(len(mask)):
            m = mask[i] & (win["depth"][i] > 0)
            if m.sum() < 16:
                continue
            for k, v in depth_metrics(out["depth"][i][m], win["depth"][i][m], metric).items():
                rows.setdefault(k, []).append(v)
            sized = "relief_large" if mask[i].mean() >= SMALL_FACE else "relief_small"
            rows.setdefault(sized, []).append(rows["relief"][-1])
            c_err = np.linalg.norm(out["canonical"][i][m] - win["canonical"][i][m], axis=-1)
            rows.setdefault("canonical", []).append(float(c_err.mean()))
            if "intrinsics" in out and "intrinsics" in win:
                for k, v in focal_metrics(out["intrinsics"][i], win["intrinsics"][i]).items():
                    rows.setdefault(k, []).append(v)
            if "mask" in out:
                pm = out["mask"][i] > 0.5
                ious.append(((pm & mask[i]).sum() / max((pm | mask[i]).sum(), 1),
                             mask[i].mean() >= SMALL_FACE))
        if "vertex_xy" in win:
            native = out.get("native") or {
                "canonical": out["canonical"], "scale": (1.0, 1.0),
                "weight": out["mask"] if "mask" in out else np.ones_like(out["depth"])}
            xy, vis = win["vertex_xy"], win["vertex_visible"] > 0.5
            found, err = track_errors(native["canonical"], native["weight"],
                                      template_targets(xy.shape[1]), xy, vis, native["scale"],
                                      native.get("offset", (0.0, 0.0)))
            errors.append(err[vis])
            if len(xy) >= 3:
                d = found - xy
                acc = d[2:] - 2 * d[1:-1] + d[:-2]
                ok = vis[2:] & vis[1:-1] & vis[:-2]
                jitters.append(np.linalg.norm(acc, axis=-1)[ok])
    result = {k: float(np.mean(v)) for k, v in rows.items()}
    if ious:
        iou, large = np.array(ious, np.float64).T
        result["mask_iou"] = float(iou.mean())
        for key, pick in (("mask_iou_large", large > 0), ("mask_iou_small", large == 0)):
            if pick.any():
                result[key] = float(iou[pick].mean())
    if errors:
        e = np.concatenate(errors)
        hit = e[np.isfinite(e)]
        result["corr_px_median"] = float(np.median(hit)) if hit.size else float("nan")
        result["corr_px_mean"] = float(np.mean(hit)) if hit.size else float("nan")
        result["found"] = float(hit.size / max(e.size, 1))
        for t in (1, 2, 4):
            result[f"pck{t}"] = float(np.sum(hit <= t) / max(e.size, 1))
    if jitters:
        j = np.concatenate(jitters)
        j = j[np.isfinite(j)]
        result["jitter_px"] = float(j.mean()) if j.size else float("nan")
    return result


def validation_windows(size: int, window: int, count: int, seed: int = 12345,
                       cache: Path | None = None, extra=None) -> list[dict]:
    """The fixed validation windows of the synthetic engine (validation identities only), kept in
    `cache` (.npz) when given so later runs score the very same frames without rendering.
    `extra(sample, window)` may add arrays to each freshly rendered window from the engine's
    sample (they are cached with it)."""
    from .train import pack, synthetic_source

    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            n = int(z["count"])
            if n >= count and int(z["size"]) == size and int(z["window"]) == window:
                return [{k[len(f"{i}/"):]: z[k] for k in z.files if k.startswith(f"{i}/")}
                        for i in range(count)]
    src = synthetic_source("val", size, window, seed)
    windows = []
    for _ in range(count):
        sample = next(src)
        w = pack(sample)
        w["images"] = w["images"].astype(np.float32) / 255
        if extra is not None:
            extra(sample, w)
        windows.append(w)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        flat = {f"{i}/{k}": v for i, w in enumerate(windows) for k, v in w.items()}
        np.savez(cache, count=count, size=size, window=window, **flat)
    return windows


def load_image(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) float in [0, 1], decoded by Blender's bpy (in .venv)."""
    import bpy

    img = bpy.data.images.load(str(path))
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    bpy.data.images.remove(img)
    return px.reshape(h, w, 4)[::-1, :, :3].copy()  # Blender stores rows bottom-up


def relief_panel(depth: np.ndarray, lo: float, hi: float, inside: np.ndarray) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) grey: brighter is nearer, `lo`..`hi` spanning black to white,
    black outside `inside`."""
    grey = np.clip((hi - depth) / max(hi - lo, 1e-6), 0, 1) * inside
    return np.repeat(grey[..., None], 3, -1)


def picture(model: Path, image: Path, out: Path, panel: int = 256,
            crop: tuple[int, int, int] | None = None) -> Path:
    """Input | depth (relief, inside the mask) | canonical (as RGB) | mask, side by side.
    crop: (x0, y0, side) square in image pixels; default the centred largest square."""
    from .png import write_png

    rgb = load_image(image)
    h, w = rgb.shape[:2]
    if crop is None:
        side = min(h, w)
        crop = ((w - side) // 2, (h - side) // 2, side)
    x0, y0, side = crop
    rgb = rgb[y0:y0 + side, x0:x0 + side]
    frame = resize(rgb.transpose(2, 0, 1)[None], (panel, panel))
    pred = OnnxPredictor(model)(frame)
    mask = pred["mask"][0] if "mask" in pred else np.ones((panel, panel), np.float32)
    depth = pred["depth"][0]
    inside = mask > 0.5
    lo, hi = np.percentile(depth[inside], [2, 98]) if inside.sum() > 10 else (depth.min(), depth.max())
    canon = np.clip(pred["canonical"][0] * 0.5 + 0.5, 0, 1) * inside[..., None]
    panels = [frame[0].transpose(1, 2, 0), relief_panel(depth, lo, hi, inside), canon,
              np.repeat(mask[..., None], 3, -1)]
    write_png(out, (np.concatenate(panels, 1) * 255 + 0.5).clip(0, 255).astype(np.uint8))
    return out


def validation_picture(model: Path, windows: list[dict], out: Path) -> Path:
    """One row per validation window (its first frame), four panels: input | mask (grey: both,
    red: face the model missed, blue: face it added) | true depth | predicted depth, scale and
    shift fitted to the truth inside the true mask; both depths on the truth's range."""
    from .png import write_png

    predict = OnnxPredictor(model)
    rows = []
    for win in windows:
        image = np.asarray(win["images"], np.float32)
        pred = predict(image)
        true_m = (win["mask"][0] > 0.5) & (win["depth"][0] > 0)
        pred_m = pred["mask"][0] > 0.5
        agree = np.zeros(true_m.shape + (3,), np.float32)
        agree[true_m & pred_m] = 0.5
        agree[true_m & ~pred_m] = (1.0, 0.0, 0.0)
        agree[~true_m & pred_m] = (0.0, 0.0, 1.0)
        true, depth = win["depth"][0], pred["depth"][0]
        if true_m.sum() > 10:
            a = np.stack([depth[true_m], np.ones(true_m.sum())], 1)
            (scale, shift), *_ = np.linalg.lstsq(a, true[true_m], rcond=None)
            lo, hi = np.percentile(true[true_m], [2, 98])
        else:
            scale, shift, lo, hi = 1.0, 0.0, 0.0, 1.0

        rows.append(np.concatenate([image[0].transpose(1, 2, 0), agree,
                                    relief_panel(true, lo, hi, true_m),
                                    relief_panel(depth * scale + shift, lo, hi, true_m)], 1))
    write_png(out, (np.concatenate(rows, 0) * 255 + 0.5).clip(0, 255).astype(np.uint8))
    return out


def table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table, one row per scored model."""
    keys = sorted({k for r in results.values() for k in r})
    lines = ["| model | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r.get(k, float('nan')):.4g}" for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--count", type=int, default=16, help="validation windows")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--baseline", action="store_true")
    p.add_argument("--out", type=Path, help="write the table (markdown) and a .json beside it")
    p.add_argument("--cache", type=Path, help="keep / reuse the rendered validation windows here")
    p.add_argument("--picture", nargs=2, type=Path, metavar=("IMAGE", "PNG"),
                   help="only draw the first model's predictions on IMAGE into PNG")
    p.add_argument("--crop", type=int, nargs=3, metavar=("X0", "Y0", "SIDE"),
                   help="square crop of the --picture image")
    p.add_argument("--plain-upsampling", action="store_true",
                   help="bring outputs to --size by plain bilinear interpolation (blends the "
                        "silhouette with the background) instead of from the model's own mask")
    p.add_argument("--capture", action="store_true",
                   help="also score each model as the add-on's capture runs it: face found on "
                        "the whole frame, then predicted on the face crop (CapturePredictor)")
    p.add_argument("--capture-window", type=int, default=0, metavar="S",
                   help="frames per window of the capture (consecutive windows share a frame, "
                        "as in the add-on; default 0: the whole clip is one window)")
    p.add_argument("--floor", type=int, action="append", default=[], metavar="SIDE",
                   help="also score the truth taken to SIDE x SIDE pixels and back: the best "
                        "any model of that input size can score (repeatable)")
    p.add_argument("--blurred", type=float, action="append", default=[], metavar="SIGMA",
                   help="also score the truth blurred by a Gaussian of SIGMA pixels inside the "
                        "face mask: how much of the shape a model's maps carry (repeatable)")
    p.add_argument("--val-picture", type=Path, metavar="PNG",
                   help="only draw the first model on the first frame of each of --count "
                        "validation windows: input | mask | true depth | predicted depth")
    a = p.parse_args(argv)
    if a.picture:
        print(picture(a.models[0], *a.picture, crop=a.crop))
        return
    windows = validation_windows(a.size, a.window, a.count, cache=a.cache)
    if a.val_picture:
        print(validation_picture(a.models[0], windows, a.val_picture))
        return
    results = {}
    if a.baseline:
        masks = np.concatenate([w["mask"].ravel() for w in windows]) > 0.5
        canon = np.concatenate([w["canonical"].reshape(-1, 3) for w in windows])[masks]
        depth = float(np.median(np.concatenate([w["depth"].ravel() for w in windows])[masks]))
        results["baseline (mean)"] = evaluate(Baseline(canon.mean(0), depth), windows)
    for side in a.floor:
        results[f"truth at {side} px"] = evaluate(ResolutionFloor(side, a.plain_upsampling),
                                                  windows)
    for sigma in a.blurred:
        results[f"truth blurred, sigma {sigma:g} px"] = evaluate(BlurredTruth(sigma), windows)
    for path in a.models:
        pred = OnnxPredictor(path, a.threads, a.plain_upsampling)
        r = evaluate(pred, windows, pred.desc.metric)
        r["fps"] = pred.frames / max(pred.seconds, 1e-9)
        results[path.name] = r
        if a.capture:
            pred = CapturePredictor(path, a.threads, a.plain_upsampling, a.capture_window)
            r = evaluate(pred, windows, pred.desc.metric)
            r["fps"] = pred.frames / max(pred.seconds, 1e-9)
            r["no_face"] = pred.no_face / max(len(windows), 1)
            results[f"{path.name}, as captured"] = r
    text = table(results)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
        a.out.with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
