# SPDX-License-Identifier: GPL-3.0-or-later
"""Clips: S frames of one identity with smooth, plausible motion.

Head turns and nods (random keyframes, Catmull-Rom interpolation, within yaw +-90, pitch +-45,
roll +-30 degrees), the torso following part of the yaw, small drifts of the head position,
camera shake, expressions ramping on and off between keyframed expressions, talking-like jaw and
lip motion, blinks as short events, gaze saccades. A clip of S = 1 is a single random frame.

`Variety` adds clip kinds the default mix lacks, each a share of the clips (0 by default; its
draws come from their own random stream, so a clip that is not picked is the very clip it was
without them): greyscale footage (monochrome and infrared head-mounted cameras, black-and-white
film) and faceless clips, the camera aimed past the head at the body and the background, whose
truth mask is empty (they teach the mask to answer "no face" to face-coloured, textured things).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .arkit import INDEX
from .expressions import gaze_vector, sample_expression, sanitize
from .geometry import rotation_xyz
from .sampling import (sample_background, sample_camera, sample_effects, sample_identity,
                       sample_lighting, sample_look, sample_pose, sample_props)
from .scene import Frame, Prop

import torch


@dataclass(frozen=True)
class Variety:
    grey: float = 0.0  # share of clips rendered in greyscale
    faceless: float = 0.0  # share of clips with the head out of the frame

    def __post_init__(self):
        for name in ("grey", "faceless"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Variety.{name} is a share of clips, in [0, 1]; "
                                 f"got {getattr(self, name)}")


def aim_past_head(rng: np.random.Generator, cam: dict, height: int, width: int) -> np.ndarray:
    """The head position (camera frame) moved so its centre lies (0.75-1.5) face heights beyond
    the top edge (the camera on the chest; 60 %) or a side edge (the background beside the person),
    at the same distance: the head is out of the frame and the torso and the scene stay."""
    k = cam["intrinsics"].astype(np.float64)
    distance = float(cam["position"][2])
    face = cam["face_fraction"] * height
    beyond = rng.uniform(0.75, 1.5) * face
    u = width * (0.5 + rng.uniform(-0.25, 0.25))
    v = height * (0.5 + rng.uniform(-0.25, 0.25))
    side = rng.choice(3, p=[0.6, 0.2, 0.2])  # 0: above, 1: left, 2: right
    if side == 0:
        v = -beyond
    else:
        u = -beyond if side == 1 else width + beyond
    return (distance * np.linalg.solve(k, [u, v, 1.0])).astype(np.float32)


def _keyframes(rng: np.random.Generator, duration: float, spacing: tuple[float, float],
               dims: int, scale) -> tuple[np.ndarray, np.ndarray]:
    """Random keyframe times covering [0, duration] (one before, two after) and values."""
    times = [-rng.uniform(*spacing)]
    while times[-1] < duration + spacing[1]:
        times.append(times[-1] + rng.uniform(*spacing))
    times.append(times[-1] + rng.uniform(*spacing))
    return np.array(times), rng.normal(0, 1, (len(times), dims)) * np.asarray(scale)


def catmull_rom(times: np.ndarray, values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Smooth (C1) interpolation of keyframes (K,), (K, D) at times t (T,) -> (T, D)."""
    i = np.clip(np.searchsorted(times, t) - 1, 1, len(times) - 3)
    t0, t1 = times[i], times[i + 1]
    u = ((t - t0) / (t1 - t0))[:, None]
    p0, p1, p2, p3 = values[i - 1], values[i], values[i + 1], values[i + 2]
    m1 = (p2 - p0) / (times[i + 1] - times[i - 1])[:, None] * (t1 - t0)[:, None]
    m2 = (p3 - p1) / (times[i + 2] - times[i])[:, None] * (t1 - t0)[:, None]
    u2, u3 = u * u, u * u * u
    return ((2 * u3 - 3 * u2 + 1) * p1 + (u3 - 2 * u2 + u) * m1 + (-2 * u3 + 3 * u2) * p2
            + (u3 - u2) * m2)


def _expression_track(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """(T, 52): keyframed expressions with smooth ramps, talking, blinks, saccades."""
    duration = float(t[-1]) if len(t) > 1 else 0.0
    times = [-rng.uniform(0.3, 1.5)]
    while times[-1] < duration + 2:
        times.append(times[-1] + rng.uniform(0.4, 2.0))
    keys = np.stack([sample_expression(rng) for _ in times])
    gaze_idx = [INDEX[n] for n in INDEX if n.startswith(("eyeLook", "eyeBlink"))]
    keys[:, gaze_idx] = 0  # gaze and blinks get their own tracks
    k = np.clip(np.searchsorted(times, t) - 1, 0, len(times) - 2)
    u = (t - np.array(times)[k]) / (np.array(times)[k + 1] - np.array(times)[k])
    hold = rng.uniform(0.0, 0.6)  # part of each interval spent holding the expression
    ramp = np.clip((u - hold) / max(1 - hold, 1e-3), 0, 1)
    ramp = ramp * ramp * (3 - 2 * ramp)
    expr = keys[k] * (1 - ramp[:, None]) + keys[k + 1] * ramp[:, None]
    if rng.random() < 0.5:  # talking
        f = rng.uniform(2.5, 5.0)
        phase = rng.uniform(0, 2 * math.pi)
        amp = rng.uniform(0.15, 0.45) * (0.6 + 0.4 * np.sin(2 * math.pi * 0.7 * t + phase * 0.3))
        syll = 0.5 - 0.5 * np.cos(2 * math.pi * f * t + phase)
        expr[:, INDEX["jawOpen"]] += amp * syll
        for name, fr in (("mouthFunnel", 1.3), ("mouthPucker", 0.7), ("mouthStretchLeft", 1.1),
                         ("mouthStretchRight", 1.1), ("mouthLowerDownLeft", 0.9),
                         ("mouthLowerDownRight", 0.9), ("mouthUpperUpLeft", 1.7),
                         ("mouthUpperUpRight", 1.7)):
            expr[:, INDEX[name]] += rng.uniform(0, 0.3) * np.clip(
                np.sin(2 * math.pi * f * fr * t + rng.uniform(0, 6.3)), 0, 1)
    # gaze: saccades between fixations
    fix_t = [0.0 - rng.uniform(0, 1)]
    while fix_t[-1] < duration:
        fix_t.append(fix_t[-1] + rng.uniform(0.3, 2.0))
    fix = rng.normal(0, [0.35, 0.3], (len(fix_t), 2))
    j = np.clip(np.searchsorted(fix_t, t) - 1, 0, len(fix_t) - 1)
    prev = np.clip(j - 1, 0, None)
    since = t - np.array(fix_t)[j]
    move = np.clip(since / 0.05, 0, 1)[:, None]
    g = fix[prev] * (1 - move) + fix[j] * move
    for row, (h, v) in enumerate(g):
        expr[row] += gaze_vector(h, v)
    # blinks
    blink = np.zeros(len(t))
    bt = -rng.uniform(0, 3)
    while bt < duration + 1:
        dur = rng.uniform(0.1, 0.3)
        tau = (t - bt) / dur
        profile = np.clip(np.sin(math.pi * tau), 0, 1) ** 0.7
        blink = np.maximum(blink, np.where((tau > 0) & (tau < 1), profile, 0))
        bt += rng.exponential(3.0) + 0.3
    if len(t) == 1 and rng.random() < 0.08:
        blink[:] = rng.uniform(0.6, 1.0)
    for name in ("eyeBlinkLeft", "eyeBlinkRight"):
        expr[:, INDEX[name]] = np.maximum(expr[:, INDEX[name]], blink)
    return np.stack([sanitize(e) for e in expr])


def make_clip(model, identity_seed: int, clip_seed: int, frames: int, height: int, width: int,
              props: bool = True, effects: bool = True,
              variety: Variety | None = None) -> list[Frame]:
    """The frames of one clip (deterministic in identity_seed, clip_seed and variety)."""
    identity, macro = sample_identity(model, identity_seed)
    look = sample_look(identity_seed, macro)
    rng = np.random.default_rng([clip_seed, 3])
    lighting = sample_lighting(rng)
    background = sample_background(rng)
    fx = sample_effects(rng)
    if not effects:
        fx.defocus, fx.shot_noise, fx.read_noise, fx.jpeg_quality = 0, 0, 0, 0
        fx.motion = fx.motion * 0
    cam = sample_camera(rng, height, width)
    if variety is not None:
        extra = np.random.default_rng([clip_seed, 11])
        grey, faceless = extra.random(2)
        if grey < variety.grey:
            fx.saturation = 0.0
        if faceless < variety.faceless:
            cam = dict(cam, position=aim_past_head(extra, cam, height, width))
    head0, torso0 = sample_pose(rng)
    prop_list = [Prop("torso", "torso", {}, colour=look.cloth.copy())]
    prop_list += sample_props(rng, look, cam) if props else []
    fps = float(rng.choice([15, 24, 25, 30, 30, 60]))
    t = np.arange(frames) / fps
    duration = float(t[-1]) if frames > 1 else 0.0
    active = rng.uniform(0.2, 1.0)
    kt, kv = _keyframes(rng, duration, (0.4, 1.2), 3, np.radians([10, 25, 6]) * active)
    head = head0 + catmull_rom(kt, kv, t) - catmull_rom(kt, kv, np.zeros(1))
    head = np.clip(head, np.radians([-45, -90, -30]), np.radians([45, 90, 30]))
    torso = torso0 + 0.3 * (head - head0) * np.array([0.3, 1.0, 0.3])
    dt, dv = _keyframes(rng, duration, (0.5, 1.5), 3, np.array([0.015, 0.01, 0.02]) * active)
    drift = catmull_rom(dt, dv, t) - catmull_rom(dt, dv, np.zeros(1))
    shake_amp = np.radians(rng.uniform(0, 0.6)) if rng.random() < 0.6 else 0.0
    st, sv = _keyframes(rng, duration, (0.06, 0.2), 3, shake_amp)
    shake = catmull_rom(st, sv, t)
    shake_r = rotation_xyz(torch.as_tensor(shake, dtype=torch.float32)).numpy()
    expr = _expression_track(rng, t)
    noise = rng.integers(1 << 30, size=frames)
    out = []
    for i in range(frames):
        out.append(Frame(identity=identity, look=look, lighting=lighting, background=background,
                         effects=fx, expression=expr[i].astype(np.float32),
                         head_rotation=head[i].astype(np.float32),
                         torso_rotation=torso[i].astype(np.float32),
                         position=(cam["position"] + drift[i]).astype(np.float32),
                         intrinsics=cam["intrinsics"], camera_rotation=shake_r[i],
                         props=prop_list, noise_seed=int(noise[i])))
    return out
