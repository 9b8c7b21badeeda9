# SPDX-License-Identifier: GPL-3.0-or-later
"""Plausible ARKit expression weights: archetypes mixed sparsely, both sides, blinks, gaze.

An expression is a (52,) weight vector in ARKit order. `sample_expression` mixes one or two
archetypes (smile, surprise, ...) with random intensities and small asymmetry, adds a few sparse
extra units, a gaze direction and occasionally a blink, and keeps the combination sane
(mouthClose never exceeds jawOpen; weights in [0, 1]).
"""
from __future__ import annotations

import numpy as np

from .arkit import ARKIT_NAMES, INDEX, mirror_name

ARCHETYPES: dict[str, dict[str, float]] = {
    "neutral": {},
    "smile": {"mouthSmileLeft": 0.8, "mouthSmileRight": 0.8, "cheekSquintLeft": 0.4,
              "cheekSquintRight": 0.4, "eyeSquintLeft": 0.2, "eyeSquintRight": 0.2},
    "laugh": {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "jawOpen": 0.45,
              "cheekSquintLeft": 0.7, "cheekSquintRight": 0.7, "eyeSquintLeft": 0.5,
              "eyeSquintRight": 0.5, "mouthUpperUpLeft": 0.3, "mouthUpperUpRight": 0.3},
    "surprise": {"browInnerUp": 0.9, "browOuterUpLeft": 0.8, "browOuterUpRight": 0.8,
                 "eyeWideLeft": 0.7, "eyeWideRight": 0.7, "jawOpen": 0.5, "mouthFunnel": 0.2},
    "anger": {"browDownLeft": 0.9, "browDownRight": 0.9, "eyeSquintLeft": 0.5,
              "eyeSquintRight": 0.5, "noseSneerLeft": 0.4, "noseSneerRight": 0.4,
              "mouthPressLeft": 0.5, "mouthPressRight": 0.5, "jawForward": 0.2},
    "sad": {"browInnerUp": 0.8, "mouthFrownLeft": 0.7, "mouthFrownRight": 0.7,
            "mouthShrugLower": 0.4, "mouthLowerDownLeft": 0.1, "mouthLowerDownRight": 0.1},
    "disgust": {"noseSneerLeft": 0.8, "noseSneerRight": 0.8, "mouthUpperUpLeft": 0.6,
                "mouthUpperUpRight": 0.6, "browDownLeft": 0.4, "browDownRight": 0.4,
                "cheekSquintLeft": 0.3, "cheekSquintRight": 0.3},
    "fear": {"browInnerUp": 0.9, "eyeWideLeft": 0.8, "eyeWideRight": 0.8,
             "mouthStretchLeft": 0.6, "mouthStretchRight": 0.6, "jawOpen": 0.25},
    "pucker": {"mouthPucker": 0.9, "mouthFunnel": 0.3},
    "kiss": {"mouthPucker": 1.0, "mouthFunnel": 0.5, "jawOpen": 0.05},
    "o_mouth": {"jawOpen": 0.5, "mouthFunnel": 0.8},
    "wide_open": {"jawOpen": 0.95, "mouthStretchLeft": 0.3, "mouthStretchRight": 0.3},
    "tongue": {"jawOpen": 0.45, "tongueOut": 0.9},
    "cheek_puff": {"cheekPuff": 0.9, "mouthClose": 0.0, "mouthPucker": 0.2},
    "lip_roll": {"mouthRollLower": 0.8, "mouthRollUpper": 0.7},
    "press": {"mouthPressLeft": 0.8, "mouthPressRight": 0.8, "mouthShrugUpper": 0.3},
    "smirk": {"mouthSmileLeft": 0.8, "mouthLeft": 0.3, "cheekSquintLeft": 0.3},
    "jaw_side": {"jawLeft": 0.8, "mouthLeft": 0.4},
    "grimace": {"mouthStretchLeft": 0.8, "mouthStretchRight": 0.8, "mouthLowerDownLeft": 0.6,
                "mouthLowerDownRight": 0.6, "mouthUpperUpLeft": 0.5, "mouthUpperUpRight": 0.5,
                "eyeSquintLeft": 0.4, "eyeSquintRight": 0.4},
    "wink": {"eyeBlinkLeft": 1.0, "cheekSquintLeft": 0.4, "mouthSmileLeft": 0.4},
    "squint": {"eyeSquintLeft": 0.9, "eyeSquintRight": 0.9, "browDownLeft": 0.3,
               "browDownRight": 0.3},
    "brows_up": {"browInnerUp": 0.8, "browOuterUpLeft": 0.9, "browOuterUpRight": 0.9},
    "dimple": {"mouthDimpleLeft": 0.8, "mouthDimpleRight": 0.8, "mouthSmileLeft": 0.2,
               "mouthSmileRight": 0.2},
    "talk_a": {"jawOpen": 0.35, "mouthLowerDownLeft": 0.3, "mouthLowerDownRight": 0.3},
    "talk_e": {"jawOpen": 0.2, "mouthStretchLeft": 0.4, "mouthStretchRight": 0.4,
               "mouthUpperUpLeft": 0.2, "mouthUpperUpRight": 0.2},
    "talk_m": {"mouthClose": 0.0, "mouthPressLeft": 0.5, "mouthPressRight": 0.5,
               "mouthRollLower": 0.2},
    "talk_f": {"mouthRollLower": 0.6, "mouthUpperUpLeft": 0.2, "mouthUpperUpRight": 0.2,
               "jawOpen": 0.08},
}
ARCHETYPE_NAMES = tuple(ARCHETYPES)
# sampling weights: neutral-ish and everyday expressions are common
_PROB = np.array([4.0 if n == "neutral" else 2.0 if n in ("smile", "talk_a", "talk_e")
                  else 1.0 for n in ARCHETYPE_NAMES])
_PROB /= _PROB.sum()
_LEFT = np.array([n.endswith("Left") for n in ARKIT_NAMES])
_RIGHT = np.array([n.endswith("Right") for n in ARKIT_NAMES])


def archetype_vector(name: str, mirrored: bool = False) -> np.ndarray:
    v = np.zeros(52, np.float32)
    for unit, w in ARCHETYPES[name].items():
        v[INDEX[mirror_name(unit) if mirrored else unit]] = w
    return v


def gaze_vector(horizontal: float, vertical: float) -> np.ndarray:
    """Eye-look weights for a gaze (horizontal > 0: towards the subject's left; vertical > 0: up),
    each in [-1, 1]; both eyes turn together."""
    v = np.zeros(52, np.float32)
    h, u = float(np.clip(horizontal, -1, 1)), float(np.clip(vertical, -1, 1))
    if h > 0:  # looking to the subject's left: left eye out, right eye in
        v[INDEX["eyeLookOutLeft"]] = v[INDEX["eyeLookInRight"]] = h
    else:
        v[INDEX["eyeLookInLeft"]] = v[INDEX["eyeLookOutRight"]] = -h
    if u > 0:
        v[INDEX["eyeLookUpLeft"]] = v[INDEX["eyeLookUpRight"]] = u
    else:
        v[INDEX["eyeLookDownLeft"]] = v[INDEX["eyeLookDownRight"]] = -u
    return v


def sanitize(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0, 1).astype(np.float32)
    jaw, close = INDEX["jawOpen"], INDEX["mouthClose"]
    v[close] = min(v[close], v[jaw])
    for a, b in (("eyeBlinkLeft", "eyeWideLeft"), ("eyeBlinkRight", "eyeWideRight")):
        if v[INDEX[a]] > 0.5:
            v[INDEX[b]] = 0
    return v


def sample_expression(rng: np.random.Generator) -> np.ndarray:
    """One expression: archetype mix + sparse extras + gaze + maybe a blink."""
    v = np.zeros(52, np.float32)
    count = rng.choice([1, 1, 1, 2, 2, 3])
    for name in rng.choice(ARCHETYPE_NAMES, size=count, p=_PROB):
        a = archetype_vector(name, mirrored=bool(rng.random() < 0.5))
        intensity = rng.uniform(0.2, 1.1)
        asym = rng.normal(0, 0.12)  # the two sides move by different amounts
        a = a * intensity * np.where(_LEFT, 1 + asym, np.where(_RIGHT, 1 - asym, 1.0))
        v = np.maximum(v, a)
    # sparse extra units
    for unit in rng.choice(52, size=rng.integers(0, 4), replace=False):
        if ARKIT_NAMES[unit].startswith("eyeLook") or ARKIT_NAMES[unit] == "tongueOut":
            continue
        v[unit] = max(v[unit], rng.uniform(0, 0.5))
    if rng.random() < 0.1:
        v[INDEX["jawOpen"]] = max(v[INDEX["jawOpen"]], rng.uniform(0.3, 1.0))
    v += gaze_vector(rng.normal(0, 0.35), rng.normal(0, 0.3))
    if rng.random() < 0.08:
        b = rng.uniform(0.6, 1.0)
        v[INDEX["eyeBlinkLeft"]] = max(v[INDEX["eyeBlinkLeft"]], b)
        v[INDEX["eyeBlinkRight"]] = max(v[INDEX["eyeBlinkRight"]], b)
    return sanitize(v)

