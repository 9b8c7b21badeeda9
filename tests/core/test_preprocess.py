# SPDX-License-Identifier: GPL-3.0-or-later
"""Crop, resize and intrinsics: exact to the sub-pixel, bounded in memory."""
import tracemalloc

import numpy as np
import pytest

from face_anything_addon.core.preprocess import (
    Crop, crop_for_box, full_frame_crop, model_input_size, normalise, resample)


def gaussian_dot(width, height, centre, sigma=5.0):
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    dot = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma ** 2))
    return np.repeat(dot.astype(np.float32)[..., None], 3, axis=2)


def centroid(image):
    g = image[..., 0]
    yy, xx = np.mgrid[0:g.shape[0], 0:g.shape[1]] + 0.5
    return np.array([(g * xx).sum() / g.sum(), (g * yy).sum() / g.sum()])


@pytest.mark.parametrize("size,expected", [((1920, 1080), (504, 280)), ((1080, 1920), (280, 504)),
                                           ((640, 640), (504, 504)), ((8, 4000), (14, 504))])
def test_model_input_size_keeps_aspect_in_patch_multiples(size, expected):
    assert model_input_size(*size, 504, 14) == expected


@pytest.mark.parametrize("crop", [
    crop_for_box((800, 300, 1250, 800), 252, 280),  # face crop, upscaled a little
    full_frame_crop(1920, 1080, 504, 14),  # whole frame, downscaled 3.8x
    Crop(900.25, 401.5, 200.0, 150.0, 448, 336),  # sub-pixel origin, 2.24x upscale
])
def test_a_known_point_round_trips_through_crop_and_resize(crop):
    point = np.array([1012.3, 517.8])
    resized = resample(gaussian_dot(1920, 1080, point, sigma=6.0), crop)
    seen = centroid(resized)  # where the dot lands in the model input
    np.testing.assert_allclose(seen, crop.to_input(point), atol=0.02)
    np.testing.assert_allclose(crop.to_footage(seen), point, atol=0.02 * 1920 / crop.out_w)


def test_intrinsics_map_back_to_footage_pixels():
    crop = crop_for_box((700, 200, 1300, 900), 392, 448)
    k_input = np.array([[500.0, 0, 190.0], [0, 510.0, 230.0], [0, 0, 1]])
    k_footage = crop.to_footage_intrinsics(k_input)
    points = np.array([[0.1, -0.05, 0.6], [-0.08, 0.12, 0.55], [0.0, 0.0, 1.0]])

    def project(k, x):
        p = x @ k.T
        return p[:, :2] / p[:, 2:]

    np.testing.assert_allclose(project(k_footage, points), crop.to_footage(project(k_input, points)),
                               atol=1e-9)
    sx, sy = crop.scale
    assert k_footage[0, 0] == pytest.approx(500 / sx) and k_footage[1, 1] == pytest.approx(510 / sy)


def test_crop_for_box_keeps_centre_and_reaches_aspect():
    c = crop_for_box((100, 100, 300, 200), 280, 280)
    assert (c.width, c.height) == (200, 200)
    assert c.x0 + c.width / 2 == 200 and c.y0 + c.height / 2 == 150


def test_constant_stays_constant_even_past_the_frame_edge():
    image = np.full((100, 160, 3), 0.25, np.float32)
    out = resample(image, Crop(-40, -30, 240, 180, 56, 42))  # crop reaches outside the frame
    np.testing.assert_allclose(out, 0.25, atol=1e-6)


def test_normalise_layout_and_values():
    image = np.zeros((2, 3, 3), np.float32)
    image[..., 0] = 1.0
    image[0, 0, 1] = 2.0  # HDR value clipped to 1
    x = normalise(image, (0.5, 0.5, 0.5), (0.25, 0.5, 0.25))
    assert x.shape == (3, 2, 3) and x.dtype == np.float32
    assert x[0, 0, 0] == 2.0 and x[1, 0, 0] == 1.0 and x[1, 1, 1] == -1.0


def test_8k_frame_costs_only_its_crop():
    frame = np.zeros((4320, 7680, 3), np.float32)  # 398 MB, the reader's
    tracemalloc.start()
    out = resample(frame, crop_for_box((3500, 1800, 4300, 2700), 448, 504))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.shape == (504, 448, 3)
    assert peak < 40e6, f"{peak / 1e6:.0f} MB"
