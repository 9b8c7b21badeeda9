# SPDX-License-Identifier: GPL-3.0-or-later
"""What one rendered frame is made of: plain numbers, sampled by `training.sampling`.

A clip shares one `Identity`, `Look`, `Lighting`, `Background` and `Effects`; each `Frame` adds
its pose, expression, camera and props. Angles are radians; positions metres.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Identity:
    seed: int  # identity seed (the split is decided by it)
    weights: np.ndarray  # (T,) float32 identity target weights (macro + local modifiers)


@dataclass
class Look:
    """Per-identity appearance (linear-RGB albedos in [0, 1])."""

    seed: int
    skin: np.ndarray  # (3,)
    blotch: float  # amplitude of low-frequency tone variation
    redness: float  # cheeks, nose, ears
    freckles: float
    lips: np.ndarray  # (3,)
    lip_gloss: float
    hair: np.ndarray  # (3,)
    hair_amount: float  # 0 bald .. 1 full scalp hair
    hairline: float  # shifts the front hairline (face-mask threshold), -1 .. 1
    nape: float  # head-local y where scalp hair stops at the back
    brow: np.ndarray  # (3,)
    brow_density: float
    brow_thickness: float  # metres
    brow_lift: float  # metres
    brow_arch: float  # metres
    beard: float  # 0 none .. 1 dense
    beard_colour: np.ndarray  # (3,)
    eyeshadow: np.ndarray  # (4,) rgb + amount
    eyeliner: float
    blush: np.ndarray  # (4,) rgb + amount
    iris: np.ndarray  # (3,)
    pupil: float  # pupil radius as a fraction of the iris radius
    sclera: np.ndarray  # (3,)
    teeth: np.ndarray  # (3,)
    cloth: np.ndarray  # (3,)
    cloth2: np.ndarray  # (3,)
    cloth_pattern: int  # 0 plain, 1 stripes, 2 checks, 3 noise
    collar: float  # head-local y of the neckline
    specular: float
    shininess: float


@dataclass
class Lighting:
    sh: np.ndarray  # (9, 3) irradiance SH coefficients (camera frame, linear RGB)
    directions: np.ndarray  # (L, 3) unit vectors towards the lights, camera frame
    colours: np.ndarray  # (L, 3) linear RGB intensities
    shadow_softness: float  # PCF radius in shadow-map pixels


@dataclass
class Prop:
    """An occluder or background object; its mesh is built by `training.props`."""

    kind: str  # "hair_strands", "fringe", "hat", "glasses", "hand", "microphone", "box", ...
    attach: str  # "head" (moves with the head), "torso" or "camera"
    params: dict = field(default_factory=dict)
    transform: np.ndarray = field(default_factory=lambda: np.eye(4, dtype=np.float32))
    colour: np.ndarray = field(default_factory=lambda: np.full(3, 0.5, np.float32))


@dataclass
class Background:
    kind: str  # "gradient", "noise", "stripes", "checker", "blobs", "bokeh", "room"
    colours: np.ndarray  # (4, 3)
    params: np.ndarray  # (8,) kind-specific numbers
    seed: int


@dataclass
class Effects:
    exposure: float  # multiplies linear radiance
    white_balance: np.ndarray  # (3,) channel gains
    contrast: float
    saturation: float
    vignette: float
    defocus: float  # disk blur radius, pixels
    motion: np.ndarray  # (2,) motion blur vector, pixels
    shot_noise: float
    read_noise: float
    jpeg_quality: int  # 0: no JPEG artefacts
    seed: int


@dataclass
class Frame:
    identity: Identity
    look: Look
    lighting: Lighting
    background: Background
    effects: Effects
    expression: np.ndarray  # (52,) ARKit weights in [0, 1]
    head_rotation: np.ndarray  # (3,) pitch, yaw, roll of the head (head-local euler)
    torso_rotation: np.ndarray  # (3,)
    position: np.ndarray  # (3,) camera-frame position of the head-local origin
    intrinsics: np.ndarray  # (3, 3) pixels of the output image, pixel centres at +0.5
    camera_rotation: np.ndarray  # (3, 3) camera shake: applied to all world points
    props: list[Prop] = field(default_factory=list)
    noise_seed: int = 0
