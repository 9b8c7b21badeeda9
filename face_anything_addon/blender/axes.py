# SPDX-License-Identifier: GPL-3.0-or-later
"""The one conversion between OpenCV camera space and Blender camera space.

OpenCV (the capture's convention): x right, y down, z forward (into the scene).
Blender (a camera object's local space): x right, y up, z backward (the camera looks down -z).
The two differ by a half turn about x: (x, y, z)_blender = (x, -y, -z)_opencv, and the same matrix
takes Blender back to OpenCV. Nothing else in the add-on flips axes.
"""
from __future__ import annotations

import numpy as np

# diag(1, -1, -1): a proper rotation (det +1), its own inverse.
CV_TO_BLENDER = np.diag([1.0, -1.0, -1.0])
_SIGNS = np.array([1.0, -1.0, -1.0], np.float32)


def points_to_blender(points: np.ndarray) -> np.ndarray:
    """(..., 3) OpenCV camera-space points -> Blender camera-space points (float32)."""
    return np.asarray(points, np.float32) * _SIGNS


def points_to_opencv(points: np.ndarray) -> np.ndarray:
    """(..., 3) Blender camera-space points -> OpenCV camera-space points (float32)."""
    return np.asarray(points, np.float32) * _SIGNS


def transforms_to_blender(matrices: np.ndarray) -> np.ndarray:
    """(..., 4, 4) camera-from-X transforms in OpenCV camera space -> the same transforms into
    Blender camera space (the X side is left as it is): C @ M with C = diag(1, -1, -1, 1)."""
    out = np.array(matrices, np.float64, copy=True)
    out[..., 1:3, :] *= -1.0
    return out
