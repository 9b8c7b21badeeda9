# SPDX-License-Identifier: GPL-3.0-or-later
"""Random scene parameters: identity shape, look, lighting, camera, pose, props, background,
effects. Every function takes a numpy Generator, so a seed fixes everything."""
from __future__ import annotations

import math

import numpy as np

from .background import KINDS as BACKGROUND_KINDS
from .scene import Background, Effects, Identity, Lighting, Look, Prop

# sRGB skin albedos from very light to very dark (a continuous scale is interpolated between)
SKIN_SRGB = np.array([[247, 226, 210], [238, 206, 180], [226, 186, 152], [205, 160, 122],
                      [178, 130, 94], [146, 101, 70], [112, 74, 52], [82, 54, 40],
                      [58, 40, 31]], np.float64) / 255
HAIR_SRGB = {"black": (25, 20, 18), "dark_brown": (55, 38, 28), "brown": (96, 66, 44),
             "light_brown": (150, 110, 72), "blond": (205, 170, 115), "red": (150, 66, 36),
             "grey": (150, 148, 145), "white": (225, 222, 215), "dyed_blue": (40, 70, 150),
             "dyed_pink": (210, 90, 150), "dyed_green": (50, 130, 80)}
IRIS_SRGB = {"dark_brown": (45, 25, 15), "brown": (95, 55, 25), "hazel": (125, 95, 45),
             "green": (80, 115, 60), "blue": (70, 115, 165), "grey": (120, 130, 140)}
FRONTAL_HEAD_HEIGHT = 0.24  # metres, chin to crown, to size faces in the image


def srgb_to_linear(c) -> np.ndarray:
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return srgb_to_linear(rgb)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return (v / np.linalg.norm(v)).astype(np.float32)


# ---- identity ---------------------------------------------------------------------------------
def sample_macro(rng: np.random.Generator) -> dict:
    age = rng.uniform(0.2, 0.5) if rng.random() < 0.12 else rng.uniform(0.42, 1.0)
    return dict(gender=float(rng.beta(0.7, 0.7)), age=float(age),
                muscle=float(rng.beta(2, 2)), weight=float(rng.beta(2, 2)),
                race=tuple(float(v) for v in rng.dirichlet([0.6, 0.6, 0.6])))


def sample_identity(model, seed: int) -> tuple[Identity, dict]:
    """Identity target weights: MakeHuman macro blend + sparse local and asymmetry modifiers."""
    rng = np.random.default_rng([seed, 1])
    macro = sample_macro(rng)
    w = model.macro_vector(**macro)
    index = model.target_index
    shared: dict[str, float] = {}
    head_shape_done = False
    for mod in model.modifiers:
        base = mod.name[2:] if mod.side else mod.name
        if mod.negative is None:  # single shapes (head-oval, chin-triangle, ...)
            if mod.name.startswith("head-") and (head_shape_done or rng.random() < 0.6):
                continue  # at most one head shape
            head_shape_done = head_shape_done or mod.name.startswith("head-")
            value = rng.uniform(0, 0.7)
        else:
            if base not in shared:
                sigma = 0.25 if base.startswith("asym") else 0.35
                unused = rng.random() < 0.45
                shared[base] = 0.0 if unused else float(np.clip(rng.normal(0, sigma), -1, 1))
            value = shared[base] + (rng.normal(0, 0.06) if mod.side else 0.0)
            value = float(np.clip(value, -1, 1))
        if value >= 0:
            w[index[mod.positive]] += value
        else:
            w[index[mod.negative]] += -value
    return Identity(seed=seed, weights=w.astype(np.float32)), macro


# ---- look -------------------------------------------------------------------------------------
def _colour(rng: np.random.Generator, hue=(0.0, 1.0), sat=(0.0, 0.8), val=(0.1, 0.9)):
    return _hsv(rng.uniform(*hue) % 1, rng.uniform(*sat), rng.uniform(*val))


def _maybe(rng: np.random.Generator, p: float, low: float, high: float) -> float:
    """U(low, high) with probability p, else 0."""
    return float(rng.uniform(low, high)) if rng.random() < p else 0.0


def _skin_tone(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(linear albedo, tone in [0, 1] from very light to very dark)."""
    tone = rng.uniform(0, 1)
    pos = tone * (len(SKIN_SRGB) - 1)
    i = min(int(pos), len(SKIN_SRGB) - 2)
    srgb = SKIN_SRGB[i] * (1 - (pos - i)) + SKIN_SRGB[i + 1] * (pos - i)
    undertone = rng.normal(0, 0.04)
    srgb = srgb * np.array([1 + undertone, 1, 1 - undertone]) * rng.uniform(0.93, 1.05)
    return srgb_to_linear(np.clip(srgb, 0, 1)), float(tone)


def _hair_colour(rng: np.random.Generator, age: float, dark: bool) -> str:
    if age > 0.8 and rng.random() < 0.7:
        return str(rng.choice(["grey", "white"]))
    if rng.random() < 0.04:
        return str(rng.choice(["dyed_blue", "dyed_pink", "dyed_green"]))
    if dark:
        return str(rng.choice(["black", "dark_brown"], p=[0.7, 0.3]))
    return str(rng.choice(["black", "dark_brown", "brown", "light_brown", "blond", "red"],
                          p=[0.15, 0.3, 0.25, 0.12, 0.13, 0.05]))


def sample_look(seed: int, macro: dict) -> Look:
    """The identity's appearance; correlated with its macro values (age, gender) where people
    are (grey hair, beards, make-up, receding hairlines) but never deterministic."""
    rng = np.random.default_rng([seed, 2])
    male, age = macro["gender"], macro["age"]
    skin, tone = _skin_tone(rng)
    dark = tone > 0.55
    hair_name = _hair_colour(rng, age, dark)
    hair = srgb_to_linear(np.array(HAIR_SRGB[hair_name]) / 255 * rng.uniform(0.85, 1.15))
    older_man = male * max(age - 0.5, 0)
    bald = rng.random() < 0.05 + 0.5 * older_man
    hair_amount = 0.0 if bald else (rng.uniform(0.3, 0.6) if rng.random() < 0.1 else 1.0)
    brow = hair * (0.8 if hair_name not in ("grey", "white") else 0.5)
    if hair_name in ("blond", "white", "dyed_blue", "dyed_pink", "dyed_green"):
        brow = srgb_to_linear(np.array(HAIR_SRGB["light_brown"]) / 255 * 0.8)
    beard = _maybe(rng, 0.45 if (male > 0.6 and age > 0.42) else 0.0, 0.2, 1.0)
    makeup = (1 - male) * 0.5 + 0.05
    eyeshadow = np.append(_colour(rng, sat=(0.2, 0.7), val=(0.3, 0.8)),
                          _maybe(rng, makeup * 0.5, 0.2, 0.7))
    blush = np.append(_colour(rng, hue=(0.93, 1.03), sat=(0.3, 0.6), val=(0.6, 0.9)),
                      _maybe(rng, makeup * 0.4, 0.1, 0.35))
    if rng.random() < makeup * 0.3:  # lipstick
        hue = rng.choice([0.98, 0.0, 0.02, 0.9, 0.05])
        lips = _colour(rng, hue=(hue, hue), sat=(0.5, 0.9), val=(0.35, 0.8))
    else:
        lips = skin * np.array([0.95, 0.62, 0.64]) * rng.uniform(0.75, 0.95)
    if dark:
        iris_name = rng.choice(["dark_brown", "brown"], p=[0.7, 0.3])
    else:
        iris_name = rng.choice(list(IRIS_SRGB), p=[0.25, 0.25, 0.12, 0.1, 0.2, 0.08])
    iris = srgb_to_linear(np.array(IRIS_SRGB[iris_name]) / 255 * rng.uniform(0.8, 1.2))
    cloth, cloth2 = _colour(rng), _colour(rng)
    return Look(
        seed=int(seed), skin=skin, blotch=float(rng.uniform(0.02, 0.12)),
        redness=float(rng.uniform(0, 0.5) * (1.2 - tone)), freckles=_maybe(rng, 0.15, 0, 1),
        lips=lips.astype(np.float32), lip_gloss=float(rng.uniform(0, 1)), hair=hair,
        hair_amount=float(hair_amount),
        hairline=float(rng.uniform(-0.5, 0.6) + 0.4 * older_man),
        nape=float(rng.uniform(-0.12, -0.05)), brow=brow.astype(np.float32),
        brow_density=float(rng.uniform(0.7, 1.0)),
        brow_thickness=float(rng.uniform(0.007, 0.014)),
        brow_lift=float(rng.uniform(-0.001, 0.005)), brow_arch=float(rng.uniform(0, 0.005)),
        beard=beard, beard_colour=(hair * 0.9).astype(np.float32),
        eyeshadow=eyeshadow.astype(np.float32), eyeliner=_maybe(rng, makeup * 0.5, 0, 1),
        blush=blush.astype(np.float32), iris=iris, pupil=float(rng.uniform(0.3, 0.55)),
        sclera=srgb_to_linear(np.array([0.92, 0.89, 0.85]) * rng.uniform(0.85, 1.0)),
        teeth=srgb_to_linear(np.array([0.93, 0.88, 0.78]) * rng.uniform(0.8, 1.0)),
        cloth=cloth, cloth2=cloth2, cloth_pattern=int(rng.choice(4, p=[0.5, 0.2, 0.15, 0.15])),
        collar=float(rng.uniform(-0.21, -0.15)), specular=float(rng.uniform(0.015, 0.07)),
        shininess=float(rng.uniform(8, 30)))


# ---- lighting ---------------------------------------------------------------------------------
def _temperature(rng: np.random.Generator) -> np.ndarray:
    t = rng.uniform(-1, 1)  # -1 warm .. 1 cool
    return np.array([1 - 0.25 * t, 1.0, 1 + 0.3 * t], np.float32) + rng.normal(0, 0.03, 3)


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """SH environment (camera frame) plus a key light (shadowed) and 0-2 fill / rim lights."""
    amb = _temperature(rng) * rng.uniform(0.15, 0.7)
    sh = np.zeros((9, 3), np.float32)
    sh[0] = amb / 0.886227
    up = _unit([rng.normal(0, 0.3), -1.0, rng.normal(0, 0.3)])  # camera y points down
    sh[1:4] = (np.array([up[1], up[2], up[0]])[:, None] * amb[None] * rng.uniform(0.1, 0.6))
    sh[4:] = rng.normal(0, 0.08, (5, 3)) * amb[None]
    key = _unit([rng.uniform(-1, 1), rng.uniform(-1.0, 0.35), rng.uniform(-1.0, 0.25)])
    dirs, cols = [key], [_temperature(rng) * rng.uniform(0.4, 3.0)]
    for _ in range(rng.integers(0, 3)):
        dirs.append(_unit(rng.normal(0, 1, 3)))
        cols.append(_temperature(rng) * rng.uniform(0.1, 1.2))
    return Lighting(sh=sh, directions=np.array(dirs, np.float32),
                    colours=np.array(cols, np.float32),
                    shadow_softness=float(rng.uniform(0.5, 3.0)))


# ---- camera and pose ----------------------------------------------------------------------------
def sample_camera(rng: np.random.Generator, height: int, width: int) -> dict:
    """Focal length (35 mm equivalent, 18-200 mm, on the 36 mm side = the image width), principal
    point, face size and where the face sits in the image."""
    f_mm = float(math.exp(rng.uniform(math.log(18), math.log(200))))
    fx = f_mm / 36.0 * width
    k = np.array([[fx, 0, width / 2 + rng.normal(0, 0.015 * width)],
                  [0, fx, height / 2 + rng.normal(0, 0.015 * height)], [0, 0, 1]], np.float32)
    if rng.random() < 0.25:  # anything from the whole upper body to an extreme close-up
        frac = float(math.exp(rng.uniform(math.log(0.1), math.log(1.6))))
    else:
        frac = float(np.clip(math.exp(rng.normal(math.log(0.55), 0.35)), 0.1, 1.6))
    distance = max(fx * FRONTAL_HEAD_HEIGHT / (frac * height), 0.15)
    u = width * (0.5 + rng.uniform(-0.22, 0.22))
    v = height * (0.45 + rng.uniform(-0.18, 0.18))
    position = distance * np.linalg.solve(k.astype(np.float64), [u, v, 1.0])
    return dict(intrinsics=k, position=position.astype(np.float32), f_mm=f_mm,
                face_fraction=frac)


def sample_pose(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(head, torso) rotations (pitch, yaw, roll) in radians: head yaw up to +-90, pitch +-45,
    roll +-30 degrees; the torso follows part of the yaw."""
    if rng.random() < 0.3:
        yaw = rng.uniform(-90, 90)
    else:
        yaw = float(np.clip(rng.normal(0, 35), -90, 90))
    pitch = float(np.clip(rng.normal(0, 15), -45, 45))
    roll = float(np.clip(rng.normal(0, 10), -30, 30))
    head = np.radians([pitch, yaw, roll]).astype(np.float32)
    torso = np.radians([pitch * 0.15, yaw * rng.uniform(0.2, 0.7) + rng.normal(0, 8),
                        roll * 0.3]).astype(np.float32)
    return head, torso


# ---- props, background, effects -----------------------------------------------------------------
HAND_TARGETS = ("chin", "mouth_corner_l", "mouth_corner_r", "jaw_mid_l", "jaw_mid_r", "nose_tip",
                "eye_outer_l", "lower_lip_bottom")


def _hair_props(rng, look: Look) -> list[Prop]:
    modes = rng.choice(["fringe", "sides", "long"], size=rng.integers(1, 3), replace=False)
    return [Prop("hair", "head", dict(
        mode=str(mode), count=int(rng.integers(12, 40)), length=float(rng.uniform(0.04, 0.2)),
        width=float(rng.uniform(0.006, 0.016)), offset=float(rng.uniform(0.003, 0.012)),
        seed=int(rng.integers(1 << 30))), colour=look.hair.copy()) for mode in modes]


def _glasses(rng) -> Prop:
    sun = bool(rng.random() < 0.25)
    dark = rng.random() < 0.5
    colour = srgb_to_linear([0.05] * 3) if dark else _colour(rng, val=(0.05, 0.7))
    return Prop("glasses", "head", dict(
        half_w=float(rng.uniform(0.021, 0.028)), half_h=float(rng.uniform(0.014, 0.021)),
        roundness=float(rng.uniform(0.3, 1.0)), thickness=float(rng.uniform(0.0025, 0.006)),
        lift=float(rng.uniform(-0.004, 0.004)), sunglasses=sun,
        lens=_colour(rng, sat=(0, 0.6), val=(0.02, 0.2)).tolist()), colour=colour)


def _room(rng, camera: dict) -> list[Prop]:
    props = [Prop("wall", "world", dict(distance=float(rng.uniform(0.3, 2.5)),
                                        tilt=[float(v) for v in rng.uniform(-0.4, 0.4, 2)],
                                        scale=float(rng.uniform(2, 30)),
                                        seed=int(rng.integers(1 << 30))),
                  colour=_colour(rng, sat=(0, 0.6), val=(0.2, 0.9)))]
    for _ in range(rng.integers(0, 4)):
        centre = camera["position"] + np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.4, 0.5),
                                                rng.uniform(0.25, 1.5)])
        props.append(Prop("box", "world", dict(centre=centre.tolist(),
                                               size=rng.uniform(0.05, 0.4, 3).tolist(),
                                               angles=rng.uniform(-1, 1, 3).tolist()),
                          colour=_colour(rng)))
    return props


def sample_props(rng: np.random.Generator, look: Look, camera: dict) -> list[Prop]:
    """Occluders and background objects of a clip (hair strands, hat, glasses, hand,
    microphone, wall and boxes), each with its own probability."""
    props: list[Prop] = []
    if look.hair_amount > 0.5 and rng.random() < 0.55:
        props += _hair_props(rng, look)
    if rng.random() < 0.12:
        brim = float(rng.uniform(0.04, 0.08)) if rng.random() < 0.5 else 0.0
        props.append(Prop("hat", "head", dict(rim=float(rng.uniform(0.03, 0.06)), brim=brim,
                                              seed=int(rng.integers(1 << 30))),
                          colour=_colour(rng, val=(0.1, 0.8))))
    if rng.random() < 0.2:
        props.append(_glasses(rng))
    if rng.random() < 0.12:
        props.append(Prop("hand", "head", dict(
            target=str(rng.choice(HAND_TARGETS)), gap=float(rng.uniform(0.0, 0.04)),
            angle=float(rng.uniform(-1.2, 1.2)), spread=float(rng.uniform(0, 0.15)),
            curl=float(rng.uniform(0, 1.2)), seed=int(rng.integers(1 << 30)))))
    if rng.random() < 0.08:
        style = "headset" if rng.random() < 0.35 else "handheld"
        props.append(Prop("microphone", "head" if style == "headset" else "torso", dict(
            style=style, distance=float(rng.uniform(0.05, 0.12)),
            drop=float(rng.uniform(0.0, 0.05)), seed=int(rng.integers(1 << 30))),
            colour=srgb_to_linear([rng.uniform(0.05, 0.6)] * 3)))
    if rng.random() < 0.3:
        props += _room(rng, camera)
    return props


def sample_background(rng: np.random.Generator) -> Background:
    kind = str(rng.choice(BACKGROUND_KINDS))
    colours = np.stack([_colour(rng, sat=(0, 0.9), val=(0.05, 1.0)) for _ in range(4)])
    return Background(kind, colours.astype(np.float32), rng.uniform(0, 1, 8).astype(np.float32),
                      int(rng.integers(1 << 30)))


def sample_effects(rng: np.random.Generator) -> Effects:
    motion = rng.normal(0, 1.5, 2) if rng.random() < 0.3 else np.zeros(2)
    return Effects(
        exposure=float(2 ** rng.uniform(-1.0, 1.0)),
        white_balance=np.clip(1 + rng.normal(0, 0.07, 3), 0.7, 1.3).astype(np.float32),
        contrast=float(rng.uniform(0.8, 1.25)), saturation=float(rng.uniform(0.6, 1.3)),
        vignette=float(rng.uniform(0, 0.5) if rng.random() < 0.5 else 0),
        defocus=float(rng.uniform(0, 1.8) if rng.random() < 0.35 else 0),
        motion=motion.astype(np.float32), shot_noise=float(rng.uniform(0, 0.01)),
        read_noise=float(rng.uniform(0, 0.02)),
        jpeg_quality=int(rng.integers(30, 96)) if rng.random() < 0.6 else 0,
        seed=int(rng.integers(1 << 30)))
