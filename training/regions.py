# SPDX-License-Identifier: GPL-3.0-or-later
"""Named regions of the template (and of the rendered bust), one per vertex.

Rules, later ones overriding earlier ones (masks are the MPFB2 UV masks sampled at the vertices):
head (all other skin) < neck (skin off the face mask, below the jaw angle) < face (face mask
>= 0.5) < eyelids (eyelids mask >= 0.5) < lips (lips mask >= 0.5) < ears (ears mask >= 0.5)
< mouth_inside (inside-mouth mask >= 0.5) < eye_socket (hidden lining behind the eyeball: ambient
occlusion < 0.15 within eyeball radius + 8 mm of its centre) < nostrils (ambient occlusion < 0.3
within 2.5 cm of the nose tip, above the upper lip) < eyeball_l / eyeball_r / teeth_upper /
teeth_lower / tongue (the helper meshes). Rendered vertices outside the template are "body".
"""
from __future__ import annotations

import numpy as np

REGIONS = ("head", "neck", "face", "eyelids", "lips", "ears", "mouth_inside", "eye_socket",
           "nostrils", "eyeball_l", "eyeball_r", "teeth_upper", "teeth_lower", "tongue", "body")
PART_REGION = {"eye_l": "eyeball_l", "eye_r": "eyeball_r", "teeth_upper": "teeth_upper",
               "teeth_lower": "teeth_lower", "tongue": "tongue"}


def assign_regions(model) -> tuple[list[str], np.ndarray]:
    """(region names, (Vr,) int16 region of every rendered vertex)."""
    from .head_model import PARTS

    v = model.neutral
    n, vt = model.vertex_count, model.template_vertex_count
    skin = model.vertex_part == 0
    lm = model.landmarks()
    r = np.full(n, REGIONS.index("head"), np.int16)

    def put(name: str, where: np.ndarray) -> None:
        r[where] = REGIONS.index(name)

    face = model.uv_mask("face") >= 0.5
    put("neck", skin & ~face & (v[:, 1] < v[lm["jaw_angle_l"], 1]))
    put("face", skin & face)
    put("eyelids", skin & (model.uv_mask("eyelids") >= 0.5))
    put("lips", skin & (model.uv_mask("lips") >= 0.5))
    put("ears", skin & (model.uv_mask("ears") >= 0.5))
    put("mouth_inside", skin & (model.uv_mask("inside-mouth") >= 0.5))
    for centre in model.eye_centres:
        near = np.linalg.norm(v - centre, axis=1) < model.eye_radius + 0.008
        put("eye_socket", skin & near & (model.ao < 0.15))
    tip = v[lm["nose_tip"]]
    nose = (np.linalg.norm(v - tip, axis=1) < 0.025) & (v[:, 1] > v[lm["upper_lip_top"], 1])
    put("nostrils", skin & nose & (model.ao < 0.3) & (r != REGIONS.index("mouth_inside")))
    for part, region in PART_REGION.items():
        put(region, model.vertex_part == PARTS.index(part))
    r[vt:] = REGIONS.index("body")
    return list(REGIONS), r
