# SPDX-License-Identifier: GPL-3.0-or-later
"""Scoring a model as the add-on's capture runs it (`training.evaluate.CapturePredictor`): the
face is found on the whole frame, predicted on its crop, and the maps come back to the right
frame pixels. Checked with the pointwise test model of `tests/contract_models.py`, whose canonical
output is its normalised input: any misplaced crop shows as wrong values."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from face_anything_addon.core.preprocess import Crop  # noqa: E402
from tests.contract_models import make_model  # noqa: E402
from training.evaluate import (  # noqa: E402
    CapturePredictor, from_crops, track_errors, validation_picture)
from training.png import read_png  # noqa: E402

SIZE = 64
FACE = (22, 18, 44, 42)  # x0, y0, x1, y1: the bright "face" of the test frames


def frames(shift: int = 0) -> np.ndarray:
    """(S=2, 3, 64, 64): a dark frame with a bright square whose red rises to the right and green
    downwards (unique per pixel); the second frame's square moved by `shift` pixels right."""
    out = np.full((2, 3, SIZE, SIZE), 0.1, np.float32)
    for i, dx in enumerate((0, shift)):
        x0, y0, x1, y1 = FACE
        ys, xs = np.mgrid[y0:y1, x0 + dx:x1 + dx] + 0.5
        out[i, 0, y0:y1, x0 + dx:x1 + dx] = 0.6 + 0.01 * (xs - x0 - dx)
        out[i, 1, y0:y1, x0 + dx:x1 + dx] = 0.6 + 0.01 * (ys - y0)
        out[i, 2, y0:y1, x0 + dx:x1 + dx] = 0.8
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model") / "pointwise.onnx", mask=True)


def test_capture_maps_land_on_the_frame_pixels_they_came_from(model):
    images = frames(shift=4)
    pred = CapturePredictor(model, threads=1)
    out = pred(images)
    assert pred.no_face == 0 and pred.frames == 2
    assert out["canonical"].shape == (2, SIZE, SIZE, 3) and out["mask"].shape == (2, SIZE, SIZE)
    expected = (images.transpose(0, 2, 3, 1) - 0.5) / 0.25  # the test model's canonical output
    for i, dx in enumerate((0, 4)):
        x0, y0, x1, y1 = FACE
        inner = (slice(y0 + 3, y1 - 3), slice(x0 + dx + 3, x1 + dx - 3))
        np.testing.assert_allclose(out["canonical"][i][inner], expected[i][inner], atol=0.02)
        assert (out["mask"][i][inner] > 0.5).all()
        crop = out["native"]["offset"][i], out["native"]["scale"][i]
        assert crop[0][0] < x0 + dx and crop[0][1] < y0  # the crop holds the face
    # the crop, grown by 35 %, stops short of the frame's corners: nothing predicted there
    assert out["mask"][:, 0, 0].max() == 0.0 and out["mask"][:, -1, -1].max() == 0.0
    assert pred.seconds > 0


def test_capture_inversion_finds_points_in_frame_pixels(model):
    """Targets are the canonical values at known frame pixels; the inversion runs on the crop's
    native maps and gives their places back in frame pixels, the moved frame included."""
    images = frames(shift=3)
    out = CapturePredictor(model, threads=1)(images)
    native = out["native"]
    px = np.array([[27.5, 24.5], [33.5, 30.5], [38.5, 36.5]], np.float32)
    true_xy = np.stack([px, px + (3, 0)])
    targets = (images[0][:, px[:, 1].astype(int), px[:, 0].astype(int)].T - 0.5) / 0.25
    found, err = track_errors(native["canonical"], native["weight"], targets, true_xy,
                              np.ones((2, 3), bool), native["scale"], native["offset"])
    assert np.isfinite(err).all()
    assert err.max() < 0.5, err


def test_from_crops_is_exact_for_a_linear_map_and_empty_outside():
    """A map linear in frame coordinates, given over two different crops, comes back as the
    same linear map inside each crop; outside a crop the mask is 0."""
    crops = [Crop(10.0, 8.0, 28.0, 28.0, 14, 14), Crop(20.0, 16.0, 35.0, 35.0, 14, 14)]
    native = {k: np.zeros((2, 14, 14), np.float32) for k in ("depth", "depth_conf",
                                                            "canonical_conf")}
    native["mask"] = np.ones((2, 14, 14), np.float32)
    native["canonical"] = np.zeros((2, 14, 14, 3), np.float32)
    for i, c in enumerate(crops):
        centres = np.stack(np.meshgrid(np.arange(14) + 0.5, np.arange(14) + 0.5), -1)
        uv = c.to_footage(centres)
        native["depth"][i] = 1 + 0.01 * uv[..., 0] + 0.02 * uv[..., 1]
    out = from_crops(native, crops, (SIZE, SIZE))
    v, u = np.mgrid[:SIZE, :SIZE] + 0.5
    for i, c in enumerate(crops):
        x0, y0, x1, y1 = c.box
        inside = (u > x0 + c.width / 14) & (u < x1 - c.width / 14) & \
                 (v > y0 + c.height / 14) & (v < y1 - c.height / 14)
        np.testing.assert_allclose(out["depth"][i][inside], (1 + 0.01 * u + 0.02 * v)[inside],
                                   atol=1e-4)
        outside = (u < x0 - 1) | (u > x1 + 1) | (v < y0 - 1) | (v > y1 + 1)
        assert (out["mask"][i][outside] == 0).all() and (out["mask"][i][inside] > 0.99).all()
    np.testing.assert_allclose(out["native"]["scale"][1], [2.5, 2.5])
    np.testing.assert_allclose(out["native"]["offset"][1], [20.0, 16.0])


def test_the_validation_picture_draws_input_mask_and_both_depths(model, tmp_path):
    """One row per window (its first frame): input | mask agreement | true | predicted depth."""
    x0, y0, x1, y1 = FACE
    mask = np.zeros((2, SIZE, SIZE), np.float32)
    mask[:, y0:y1, x0:x1] = 1
    ys = np.mgrid[:SIZE, :SIZE][0].astype(np.float32)
    depth = np.broadcast_to(0.6 + 0.002 * ys, (2, SIZE, SIZE)).copy()  # nearer at the top
    win = {"images": frames(), "mask": mask, "depth": depth}
    png = read_png(validation_picture(model, [win, win], tmp_path / "val.png"))
    assert png.shape == (2 * SIZE, 4 * SIZE, 3)
    row = png[:SIZE].astype(int)
    np.testing.assert_allclose(row[:, :SIZE], np.round(frames()[0].transpose(1, 2, 0) * 255),
                               atol=1)
    truth = row[:, 2 * SIZE:3 * SIZE, 0]
    assert truth[~(mask[0] > 0)].max() == 0  # only the face is drawn
    assert truth[y0 + 2, x0 + 5] > truth[y1 - 3, x0 + 5]  # the nearer top is brighter
    agree = row[:, SIZE:2 * SIZE]
    assert (agree[y0 + 5, x0 + 5] > 0).any()  # the test model's mask covers the bright face


def test_the_capture_window_sets_the_frames_the_network_sees_together(tmp_path):
    """`--capture-window 1` scores the add-on's default (each frame alone); the default scores
    the whole clip as one window. The drift model's depth is the plain model's times
    exp(0.5 x the mean of its window's input): one factor per frame alone, one for both frames
    together (the second frame's background is brighter, so their means differ)."""
    images = frames(shift=0)
    images[1][images[1] < 0.2] = 0.3
    plain = make_model(tmp_path / "plain.onnx", mask=True)
    drift = make_model(tmp_path / "drift.onnx", mask=True, window_drift=0.5)
    ref = CapturePredictor(plain, threads=1)(images)["depth"]
    face = ref > 0
    for window, same in ((1, False), (0, True)):
        ratio = CapturePredictor(drift, threads=1, window=window)(images)["depth"] / \
            np.where(face, ref, 1.0)
        factors = [np.median(ratio[i][face[i]]) for i in range(2)]
        for i in range(2):
            np.testing.assert_allclose(ratio[i][face[i]], factors[i], rtol=1e-4)
        assert np.isclose(factors[0], factors[1], rtol=1e-4) == same, factors
