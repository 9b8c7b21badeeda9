# SPDX-License-Identifier: GPL-3.0-or-later
"""The expression fit's weights on the face object: one custom property per expression target
(for the bundled template the 52 ARKit blendshape names: jawOpen, eyeBlinkLeft, ...), in [0, 1],
keyed on every captured frame. A rig reads them with drivers, e.g. `var` = the face object's
`["jawOpen"]`."""
from __future__ import annotations

import bpy
import numpy as np

from . import animation

GROUP = "Expressions"


def key_expressions(ob: bpy.types.Object, frames: np.ndarray, names: list[str],
                    weights: np.ndarray) -> None:
    """Key `ob["<name>"]` to weights[:, k] at `frames` for each name (weights (N, K))."""
    weights = np.asarray(weights, np.float32)
    for k, name in enumerate(names):
        ob[name] = float(weights[0, k])
        ob.id_properties_ui(name).update(
            min=0.0, max=1.0, soft_min=0.0, soft_max=1.0,
            description=f"{name}: the weight of this expression target in the captured face")
        animation.key_property(ob, f'["{name}"]', frames, weights[:, k], group=GROUP)
