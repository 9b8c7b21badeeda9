# SPDX-License-Identifier: GPL-3.0-or-later
"""Crop, resize and intrinsics: exact to the sub-pixel, bounded in memory; the fast resampling
(area average, then triangle) against the reference triangle filter; reduced frames."""
import time
import tracemalloc

import numpy as np
import pytest

from face_anything_addon.core.frames import Frame, reduced_size
from face_anything_addon.core.preprocess import (
    Crop, crop_for_box, full_frame_crop, model_input_size, normalise, normalise_planar, prepare,
    read_region, resample, resample_planar)


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


def footage_like(width=1920, height=1080, seed=0):
    """Smooth shading, a hard-edged disc and mild noise: like camera footage."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    rgb = np.stack([0.5 + 0.4 * np.sin(xx / 97) * np.cos(yy / 131),
                    0.5 + 0.4 * np.sin((xx + yy) / 173),
                    0.5 + 0.3 * np.cos(np.hypot(xx - width / 2, yy - height / 2) / 60)], 2)
    disc = np.hypot(xx - 0.52 * width, yy - 0.46 * height) < 0.28 * height
    rgb[disc] = rgb[disc] * 0.5 + 0.4
    rgb += np.random.default_rng(seed).normal(0, 0.02, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 1).astype(np.float32)


CROPS = [
    crop_for_box((800, 300, 1250, 800), 252, 280),  # face crop, downscaled 1.8x
    crop_for_box((610, 190, 1310, 890), 140, 140),  # face crop for a 140-pixel model, 5x
    full_frame_crop(1920, 1080, 504, 14),  # whole frame, downscaled 3.8x
    full_frame_crop(1920, 1080, 140, 14),  # whole frame, downscaled 13.7x
    Crop(-340.3, -200.7, 1000.0, 800.0, 140, 112),  # reaching past the top-left corner, 7x
    Crop(900.25, 401.5, 200.0, 150.0, 448, 336),  # sub-pixel origin, 2.24x upscale
]


@pytest.mark.parametrize("reduce", [True, False])
@pytest.mark.parametrize("crop", CROPS)
def test_a_known_point_round_trips_through_crop_and_resize(crop, reduce):
    point = np.array([1012.3, 517.8]) if crop.x0 >= 0 else np.array([213.4, 176.9])
    sigma = 6.0 if crop.width < 300 else 12.0  # the dot well inside the crop, and 1 px or more
    resized = resample(gaussian_dot(1920, 1080, point, sigma), crop, reduce)  # in the input
    seen = centroid(resized)  # where the dot lands in the model input
    np.testing.assert_allclose(seen, crop.to_input(point), atol=0.02)
    np.testing.assert_allclose(crop.to_footage(seen), point, atol=0.02 * crop.width / crop.out_w)


@pytest.mark.parametrize("crop", CROPS)
def test_fast_resample_stays_within_a_quarter_level_of_the_reference_on_footage(crop):
    """The area average + triangle path against the single triangle filter (`reduce=False`, the
    resampling before the area average existed) on footage-like content: mean difference below
    0.002 (half an 8-bit level), at most 0.04 at hard edges."""
    image = footage_like()
    fast, reference = resample(image, crop), resample(image, crop, reduce=False)
    difference = np.abs(fast - reference)
    assert difference.mean() < 0.002 and difference.max() < 0.04, (difference.mean(),
                                                                   difference.max())


@pytest.mark.parametrize("step", [2.5, 3.81, 5.0, 7.7, 13.7])
def test_fast_resample_is_as_anti_aliased_as_the_reference(step):
    """Sines along x: below the output's Nyquist frequency kept as the reference keeps them
    (within 0.05), above it (where they would alias) suppressed at least as well (+ 0.02)."""
    width = 1920
    out_w = int(round(width / step))
    crop = Crop(0.0, 0.0, float(width), 16.0, out_w, 4)
    x = np.arange(width) + 0.5

    def amplitude(relative_frequency, reduce):
        nu = relative_frequency * out_w / (2 * width)  # cycles per input pixel
        line = 0.5 + 0.5 * np.sin(2 * np.pi * nu * x + 0.3)
        image = np.repeat(line[None, :, None], 16, 0).astype(np.float32)
        out = resample(image, crop, reduce)[2, 8:-8, 0] - 0.5
        return np.sqrt(2) * out.std() / 0.5

    for f in (0.25, 0.5):
        assert abs(amplitude(f, True) - amplitude(f, False)) < 0.05, f
    worst = max(amplitude(f, True) for f in (1.3, 1.5, 1.7, 2.2, 2.6))
    reference = max(amplitude(f, False) for f in (1.3, 1.5, 1.7, 2.2, 2.6))
    assert worst < reference + 0.02, (worst, reference)


def test_prepare_is_resample_then_normalise_into_the_callers_buffer():
    image = footage_like(640, 360) * 1.2  # some values above 1: clipped
    crop = crop_for_box((200, 60, 440, 300), 112, 112)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    slot = np.empty((2, 3, 112, 112), np.float32)[1]
    out = prepare(image, crop, mean, std, out=slot)
    assert out is slot
    expected = normalise(resample(image, crop), mean, std)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(normalise_planar(resample_planar(image, crop), mean, std), expected,
                               atol=1e-6)


def test_reduced_size():
    assert reduced_size(7680, 4320, 2048) == (2048, 1152)
    assert reduced_size(4320, 7680, 2048) == (1152, 2048)
    assert reduced_size(1920, 1080, 2048) == (1920, 1080)
    assert reduced_size(3000, 20, 1000) == (1000, 7)
    assert reduced_size(5000, 1, 100) == (100, 1)
    assert reduced_size(7680, 4320, 0) == (7680, 4320)


def area_reduced_dot(footage_size, image_size, point, sigma):
    """The dot image as a reader gives it for a frame reduced from footage_size to image_size:
    each reduced pixel the mean of the footage over the area it covers (computed exactly per
    axis from the Gaussian's integral)."""
    from math import erf, sqrt

    def axis(n_image, n_footage, centre):
        edges = np.arange(n_image + 1) * (n_footage / n_image)  # pixel borders, footage pixels
        cdf = np.array([0.5 * (1 + erf((e - centre) / (sqrt(2) * sigma))) for e in edges])
        return np.diff(cdf) / np.diff(edges)

    gx = axis(image_size[0], footage_size[0], point[0])
    gy = axis(image_size[1], footage_size[1], point[1])
    dot = (gy[:, None] * gx[None, :]).astype(np.float32)
    return np.repeat(dot[..., None], 3, axis=2)


@pytest.mark.parametrize("image_size", [(2048, 1152), (1000, 563), (640, 360)])
def test_a_known_point_round_trips_through_a_reduced_frame(image_size):
    """Footage 7680 x 4320 decoded at a reduced size: the crop, and so the point mapped back, is
    in footage pixels, exactly as for a full-size frame."""
    footage = (7680, 4320)
    point = np.array([3912.7, 2011.4])
    frame = Frame(7, area_reduced_dot(footage, image_size, point, sigma=40.0), footage)
    assert frame.size == footage and frame.image_size == image_size
    for crop in (crop_for_box((3500, 1700, 4400, 2600), 252, 252),
                 full_frame_crop(*footage, 504, 14)):
        seen = centroid(resample(frame.image, crop.scaled(*frame.scale)))
        np.testing.assert_allclose(crop.to_footage(seen), point,
                                   atol=0.02 * crop.width / crop.out_w)


def test_frame_footage_size_is_checked():
    image = np.zeros((10, 20, 3), np.float32)
    assert Frame(1, image).size == (20, 10) and Frame(1, image).scale == (1.0, 1.0)
    f = Frame(1, image, (80, 40))
    assert f.size == (80, 40) and f.scale == (0.25, 0.25) and f.image_size == (20, 10)
    with pytest.raises(ValueError, match="cannot be a reduced copy"):
        Frame(1, image, (10, 40))


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


@pytest.mark.parametrize("crop", [crop_for_box((3500, 1800, 4300, 2700), 448, 504),
                                  crop_for_box((1500, 600, 4300, 3700), 448, 504)])
def test_8k_frame_costs_only_its_crop(crop):
    frame = np.zeros((4320, 7680, 3), np.float32)  # 398 MB, as if read at full size
    tracemalloc.start()
    out = resample(frame, crop)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.shape == (504, 448, 3)
    assert peak < 40e6, f"{peak / 1e6:.0f} MB"


@pytest.mark.parametrize("crop,reduce", [
    (crop_for_box((100, 60, 260, 220), 56, 56), True),  # inside, area reduction by 1
    (crop_for_box((37.3, 21.9, 301.7, 251.2), 42, 42), True),  # inside, reduced by 4
    (crop_for_box((37.3, 21.9, 301.7, 251.2), 42, 42), False),  # the reference filter
    (crop_for_box((-40, -25, 90, 70), 28, 28), True),  # over the upper left edges
    (crop_for_box((250, 180, 420, 300), 42, 28), True),  # over the lower right edges
    (crop_for_box((-50, -50, 450, 350), 28, 28), True),  # larger than the frame
    (crop_for_box((500, 20, 600, 120), 28, 28), True),  # wholly right of the frame
    (Crop(3.0, 4.0, 9.0, 7.0, 28, 28), True)])  # enlarged
def test_a_crop_resampled_from_the_part_it_reads_is_the_crop(crop, reduce):
    """read_region: the pixels a crop's resampling reads, so that a source that makes pixels
    (lens undistortion) makes only those; resampling them gives what the whole image gives."""
    image = footage_like(331, 283)  # odd sizes: the area grid does not divide them
    h, w = image.shape[:2]
    x0, y0, x1, y1 = read_region(crop, h, w, reduce)
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    part = image[y0:y1, x0:x1]
    np.testing.assert_allclose(resample(part, crop.shifted(-x0, -y0), reduce),
                               resample(image, crop, reduce), atol=1e-5)
    if crop.width < 200 and 0 <= crop.x0 and crop.x0 + crop.width <= w:
        assert part.size < image.size / 2  # a face crop reads its part of the frame only


def test_fast_resample_cost_at_1080p():
    """Reported, not asserted (shared machine): ms per 1080p frame, fast vs reference."""
    image = footage_like()
    for name, crop in (("face 700 px -> 504", crop_for_box((610, 190, 1310, 890), 504, 504)),
                       ("frame -> 504", full_frame_crop(1920, 1080, 504, 14)),
                       ("frame -> 140", full_frame_crop(1920, 1080, 140, 14))):
        times = {}
        for reduce in (True, False):
            t = []
            for _ in range(5):
                t0 = time.thread_time()
                resample_planar(image, crop, reduce)
                t.append(time.thread_time() - t0)
            times[reduce] = 1000 * min(t)
        print(f"{name}: {times[True]:.1f} ms (reference {times[False]:.1f} ms)")
