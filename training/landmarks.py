# SPDX-License-Identifier: GPL-3.0-or-later
"""Named landmarks of the template, chosen by geometric rules on the neutral head (reproducible).

Every rule uses only the neutral mesh, its MPFB2 UV masks and its ARKit targets, so rebuilding
from the wheel selects the same vertices. Sides: `_l` is the subject's left (x > 0); each `_r`
landmark is the hm08 mirror image (`hm08.mirror`) of its `_l` twin, so pairs are symmetric.
Rules (all on template skin vertices, i.e. the body part of the head region):
- midline: |x| < 0.1 mm, in front (z > 0); "outer" skin: ambient occlusion > 0.3 (excludes the
  mouth's inside).
- nose_tip: the most forward skin vertex (max z). nose_bridge (sellion): the least forward
  midline vertex between eye height and 3 cm above. glabella: the most forward midline vertex
  0.5 - 4 cm above eye height. subnasale: the least forward outer midline vertex between the
  upper lip's top and the nose tip. nose_wing_l/r: the most lateral vertex moved by the
  `nose-flaring-incr` target (> 30 % of its peak).
- lips (MPFB2 lips mask >= 0.5, outer): mouth_corner_l/r: most lateral; upper_lip_top /
  lower_lip_bottom: highest / lowest midline; upper_lip_inner / lower_lip_inner: the lowest
  midline vertex that jawOpen leaves in place (< 5 mm) / the highest one it moves (> 2 cm);
  upper_lip_l/r and lower_lip_l/r: the highest / lowest lip vertex half-way to the corner.
- eyes: the visible lid margin = skin vertices next to the lid/lining UV seam (eyelids mask
  0.3-0.7) on the lid side (mask > 0.9). eye_inner/outer: least / most lateral margin vertex;
  eye_upper/lower: highest / lowest margin vertex within the middle third of the eye's width.
  pupil_l/r: the most forward vertex of each eyeball.
- brows: brow_inner: peak of |browInnerUp| on that side; brow_outer: peak of |browOuterUp*|;
  brow_mid: the most forward skin vertex within 3 mm (x) and 5 mm (y) of their midpoint.
- chin (gnathion): the midline vertex furthest along (0, -1, 1); chin_front (pogonion): the
  most forward midline vertex at least 1.2 cm below lower_lip_bottom.
- jaw (on the MPFB2 face mask >= 0.5, whose lower edge is the jaw line): jaw_angle (gonion):
  furthest along (1, -1, -1); jaw_mid: furthest along (1, -2, 1).
- ears (MPFB2 ears mask >= 0.5): ear_top / ear_bottom (lobe): highest / lowest; ear_front:
  most forward.
- head_top: the highest skin vertex on the midline.
"""
from __future__ import annotations

import numpy as np

SIDES = (("l", 1.0),)  # right-side landmarks are mirrored from the left ones


def _argext(values: np.ndarray, candidates: np.ndarray, largest: bool = True) -> int:
    if len(candidates) == 0:
        raise ValueError("landmark rule matched no vertex")
    k = np.argmax(values[candidates]) if largest else np.argmin(values[candidates])
    return int(candidates[k])


def _neighbours(faces: np.ndarray, n: int) -> list[set[int]]:
    nb: list[set[int]] = [set() for _ in range(n)]
    for a, b, c in faces.tolist():
        nb[a].update((b, c))
        nb[b].update((a, c))
        nb[c].update((a, b))
    return nb


def select_landmarks(model) -> dict[str, int]:
    """Landmark name -> template vertex index (see the module docstring for each rule)."""
    vt = model.template_vertex_count
    v = model.neutral[:vt].astype(np.float64)
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    skin = np.flatnonzero(model.vertex_part[:vt] == 0)
    outer = skin[model.ao[skin] > 0.3]
    mid = outer[(np.abs(x[outer]) < 1e-4) & (z[outer] > 0)]
    lips_mask = model.uv_mask("lips")[:vt]
    lids_mask = model.uv_mask("eyelids")[:vt]
    ears_mask = model.uv_mask("ears")[:vt]
    jaw = np.linalg.norm(model.expression("jawOpen")[:vt], axis=1)
    lm: dict[str, int] = {}

    # nose and midline profile
    lm["nose_tip"] = _argext(z, skin)
    lm["nose_bridge"] = _argext(z, mid[(y[mid] > 0) & (y[mid] < 0.03)], largest=False)
    lm["glabella"] = _argext(z, mid[(y[mid] > 0.005) & (y[mid] < 0.04)])
    lips = outer[lips_mask[outer] >= 0.5]
    lips_mid = lips[np.abs(x[lips]) < 1e-4]
    lm["upper_lip_top"] = _argext(y, lips_mid)
    lm["lower_lip_bottom"] = _argext(y, lips_mid, largest=False)
    lm["upper_lip_inner"] = _argext(y, lips_mid[jaw[lips_mid] < 0.005], largest=False)
    lm["lower_lip_inner"] = _argext(y, lips_mid[jaw[lips_mid] > 0.02])
    band = mid[(y[mid] > y[lm["upper_lip_top"]]) & (y[mid] < y[lm["nose_tip"]])]
    lm["subnasale"] = _argext(z, band, largest=False)
    flaring = model.target_deltas[model.target_index["nose/nose-flaring-incr"]][:vt]
    flare = np.linalg.norm(flaring.astype(np.float32), axis=1)
    wings = skin[flare[skin] > 0.3 * flare[skin].max()]
    for side, s in SIDES:
        lm[f"nose_wing_{side}"] = _argext(s * x, wings)

    # mouth
    for side, s in SIDES:
        lm[f"mouth_corner_{side}"] = _argext(s * x, lips)
    for side, s in SIDES:
        half = s * x[lm[f"mouth_corner_{side}"]] / 2
        near = lips[np.abs(s * x[lips] - half) < 0.002]
        lm[f"upper_lip_{side}"] = _argext(y, near)
        lm[f"lower_lip_{side}"] = _argext(y, near, largest=False)

    # eyes
    nb = _neighbours(model.faces[:model.template_face_count], vt)
    seam = set(skin[(lids_mask[skin] > 0.3) & (lids_mask[skin] < 0.7)].tolist())
    margin = np.array(sorted(i for i in skin.tolist()
                             if lids_mask[i] > 0.9 and nb[i] & seam), np.int64)
    for (side, s), centre in zip(SIDES, model.eye_centres[:1]):
        m = margin[(s * x[margin] > 0) & (np.linalg.norm(v[margin] - centre, axis=1) < 0.03)]
        inner, outer_c = _argext(s * x, m, largest=False), _argext(s * x, m)
        lm[f"eye_inner_{side}"], lm[f"eye_outer_{side}"] = inner, outer_c
        lo, hi = sorted((x[inner], x[outer_c]))
        third = (hi - lo) / 3
        middle = m[(x[m] > lo + third) & (x[m] < hi - third)]
        lm[f"eye_upper_{side}"] = _argext(y, middle)
        lm[f"eye_lower_{side}"] = _argext(y, middle, largest=False)
        eye = np.flatnonzero(model.vertex_part[:vt] == (1 if side == "l" else 2))
        lm[f"pupil_{side}"] = _argext(z, eye)

    # brows
    inner_up = np.linalg.norm(model.expression("browInnerUp")[:vt], axis=1)
    for side, s in SIDES:
        half = skin[s * x[skin] > 0]
        outer_up = np.linalg.norm(
            model.expression("browOuterUp" + ("Left" if side == "l" else "Right"))[:vt], axis=1)
        a, b = _argext(inner_up, half), _argext(outer_up, half)
        lm[f"brow_inner_{side}"], lm[f"brow_outer_{side}"] = a, b
        mx, my = (x[a] + x[b]) / 2, (y[a] + y[b]) / 2
        near = half[(np.abs(x[half] - mx) < 0.003) & (np.abs(y[half] - my) < 0.005)]
        lm[f"brow_mid_{side}"] = _argext(z, near)

    # chin and jaw
    lm["chin"] = _argext(z - y, mid)
    lm["chin_front"] = _argext(z, mid[y[mid] < y[lm["lower_lip_bottom"]] - 0.012])
    ears = skin[ears_mask[skin] >= 0.5]
    for side, s in SIDES:
        ear = ears[s * x[ears] > 0]
        lm[f"ear_top_{side}"] = _argext(y, ear)
        lm[f"ear_bottom_{side}"] = _argext(y, ear, largest=False)
        lm[f"ear_front_{side}"] = _argext(z, ear)
    face = outer[model.uv_mask("face")[outer] >= 0.5]
    for side, s in SIDES:
        cand = face[s * x[face] > 0]
        lm[f"jaw_angle_{side}"] = _argext(s * x - y - z, cand)
        lm[f"jaw_mid_{side}"] = _argext(s * x - 2 * y + z, cand)
    lm["head_top"] = _argext(y, skin[np.abs(x[skin]) < 1e-4])
    ordered: dict[str, int] = {}
    for name, vid in lm.items():  # each right landmark right after its left twin
        ordered[name] = vid
        if name.endswith("_l"):
            twin = int(model.mirror[vid])
            if not 0 <= twin < vt:
                raise ValueError(f"the mirror image of {name} is not a template vertex")
            ordered[name[:-2] + "_r"] = twin
    return ordered
