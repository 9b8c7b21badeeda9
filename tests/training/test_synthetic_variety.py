# SPDX-License-Identifier: GPL-3.0-or-later
"""`training.sequences.Variety`: greyscale and faceless clips, and that clips not picked for
them (and runs without them) are exactly the clips they always were."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_fixtures import clip, head_model, one_thread, renderer  # noqa: E402,F401

from training.sequences import Variety  # noqa: E402

SIZE = 64


def _same_frames(a, b) -> None:
    assert len(a) == len(b)
    for fa, fb in zip(a, b):
        for name in ("position", "intrinsics", "head_rotation", "expression"):
            np.testing.assert_array_equal(getattr(fa, name), getattr(fb, name))
        assert fa.effects.saturation == fb.effects.saturation


def test_no_variety_and_zero_shares_give_the_same_clips(head_model):
    for seed in (5, 6, 7):
        plain = clip(head_model, 21, seed, 2, SIZE)
        _same_frames(plain, clip(head_model, 21, seed, 2, SIZE, variety=Variety()))


def test_greyscale_clips_have_equal_channels(renderer, head_model):
    frames = clip(head_model, 22, 9, 2, SIZE, variety=Variety(grey=1.0))
    colour = clip(head_model, 22, 9, 2, SIZE)
    assert all(f.effects.saturation == 0.0 for f in frames)
    assert colour[0].effects.saturation > 0
    with torch.no_grad():
        grey = renderer.render(frames, SIZE, SIZE)["rgb"].int()
        rgb = renderer.render(colour, SIZE, SIZE)["rgb"].int()
    # JPEG's chroma rounding may leave a level or two between the channels
    assert (grey[:, 0] - grey[:, 1]).abs().max() <= 3
    assert (grey[:, 1] - grey[:, 2]).abs().max() <= 3
    assert (rgb[:, 0] - rgb[:, 2]).abs().max() > 10
    np.testing.assert_array_equal(frames[0].position, colour[0].position)  # only the colour


@pytest.mark.parametrize("seed", [3, 4, 8])
def test_faceless_clips_show_no_face(renderer, head_model, seed):
    frames = clip(head_model, 23, seed, 2, SIZE, variety=Variety(faceless=1.0))
    with torch.no_grad():
        out = renderer.render(frames, SIZE, SIZE)
    assert float(out["mask"].sum()) == 0.0
    assert not bool(out["vertex_visible"].any())
    assert float(out["rgb"].float().std()) > 1.0  # a real picture: background, maybe the torso
    # the head was only moved: the same clip without the option shows it
    with torch.no_grad():
        face = renderer.render(clip(head_model, 23, seed, 2, SIZE), SIZE, SIZE)
    assert float(face["mask"].sum()) > 20


def test_shares_are_checked():
    with pytest.raises(ValueError, match="grey"):
        Variety(grey=1.5)
    with pytest.raises(ValueError, match="faceless"):
        Variety(faceless=-0.1)


def test_training_options_bind_the_variety():
    from training.train import engine_source, engine_variety, parse_args

    assert engine_variety(parse_args([])) is None
    source = engine_variety(parse_args(["--grey-share", "0.1", "--faceless-share", "0.2"]))
    assert source.func is engine_source
    assert source.keywords["variety"] == Variety(grey=0.1, faceless=0.2)
    with pytest.raises(SystemExit, match="--source engine"):
        engine_variety(parse_args(["--grey-share", "0.1", "--source", "dataset"]))
    with pytest.raises(SystemExit, match="in \\[0, 1\\]"):
        engine_variety(parse_args(["--faceless-share", "2"]))
