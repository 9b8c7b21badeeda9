# SPDX-License-Identifier: GPL-3.0-or-later
"""The geometry core's building blocks against plain reference implementations: bilinear
sampling and its Jacobian, support, the inversion's warm and cold paths (including a steep,
8-bit quantised map like a tiny test model's), the fill against a dense solve, the spike test,
batched pose fits, markers, and the solver's warm start across a gap in the footage."""
import numpy as np
import pytest

from face_anything_addon.core.inversion import CanonicalMap, InversionSettings, invert
from face_anything_addon.core.mesh_fill import (
    MeshFiller, robust_similarity_fit, robust_similarity_fit_soa, similarity_fit)
from face_anything_addon.core.solve import (
    CaptureSolver, Markers, SolveSettings, bilinear, closest_surface_point, project)
from tests.synthetic_maps import (
    camera, face_mesh, posed, prediction, render, rotation, synthetic_template)

SIZE = (160, 160)
K = camera(SIZE, 330.0)
MESH = face_mesh(31)
SCALE = float(np.abs(MESH.rest).max())


def reference_bilinear(image, p):
    """The plain definition: pixel centres at integer + 0.5, clamped at the border."""
    h, w = image.shape[:2]
    x = np.clip(p[:, 0] - 0.5, 0, w - 1 - 1e-6)
    y = np.clip(p[:, 1] - 0.5, 0, h - 1 - 1e-6)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image.reshape(h, w, -1)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).squeeze()


def test_sampling_matches_the_definition_and_its_derivatives():
    rng = np.random.default_rng(0)
    canonical = rng.normal(size=(40, 50, 3)).astype(np.float32)
    cmap = CanonicalMap(canonical, np.ones((40, 50)))
    p = rng.uniform([0.5, 0.5], [49.5, 39.5], (500, 2))
    value, du, dv = cmap.sample(p)
    np.testing.assert_allclose(value, reference_bilinear(canonical, p), atol=1e-5)
    inner = np.all((p % 1 > 0.51) & (p % 1 < 0.99), axis=1)  # away from pixel-centre lines
    eps = 1e-3
    np.testing.assert_allclose(du[inner], (reference_bilinear(canonical, p + [eps, 0]) -
                                           reference_bilinear(canonical, p - [eps, 0]))[inner]
                               / (2 * eps), atol=2e-3)
    np.testing.assert_allclose(dv[inner], (reference_bilinear(canonical, p + [0, eps]) -
                                           reference_bilinear(canonical, p - [0, eps]))[inner]
                               / (2 * eps), atol=2e-3)
    depth = rng.uniform(1, 2, (40, 50)).astype(np.float32)
    z, spread = bilinear(depth, p)
    np.testing.assert_allclose(z, reference_bilinear(depth, p), rtol=1e-5)
    assert (spread >= 0).all()


def test_support_needs_all_four_neighbours_and_rejects_nan():
    weight = np.ones((10, 10))
    weight[4, 4] = 0.0
    cmap = CanonicalMap(np.zeros((10, 10, 3)), weight)
    p = np.array([[4.0, 4.0], [5.0, 5.0], [8.0, 8.0], [np.nan, 2.0], [-1.0, 3.0], [9.5, 9.5]])
    np.testing.assert_array_equal(cmap.supported(p), [False, False, True, False, False, True])
    np.testing.assert_array_equal(cmap.valid, weight >= 0.5)


@pytest.fixture(scope="module")
def frames():
    return [render(MESH, posed(MESH, amount=i / 4, yaw=0.2 * np.sin(i / 3)), K, SIZE)
            for i in range(4)]


def test_warm_and_cold_starts_agree_on_exact_maps(frames):
    f = frames[1]
    cmap = CanonicalMap(f.canonical_metric / SCALE, f.weight)
    targets = MESH.rest / SCALE
    cold, _, ok_cold = invert(cmap, targets)
    rng = np.random.default_rng(1)
    warm_start = f.uv + rng.uniform(-3, 3, f.uv.shape)  # a few pixels off
    warm, _, ok_warm = invert(cmap, targets, warm_start.astype(np.float32))
    both = ok_cold & ok_warm & f.visible
    assert both.sum() > 0.85 * f.visible.sum()
    assert np.median(np.linalg.norm(warm[both] - cold[both], axis=1)) < 0.01
    assert np.median(np.linalg.norm(warm[both] - f.uv[both], axis=1)) < 0.05


def test_steep_quantised_map_cold_and_from_pixels_away():
    """A disc whose canonical map is an 8-bit colour gradient (like a tiny test model's: steep,
    about 0.04 canonical units per pixel, in steps of 0.011): found from a cold start, and from
    warm starts several pixels off (the early stop rules must not give up on targets that are
    still travelling)."""
    h = w = 84
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    u, v = (xx - 40) / 22, (yy - 36) / 22
    inside = u ** 2 + v ** 2 < 1
    rgb = np.full((h, w, 3), 0.05)
    rgb[inside] = np.stack([0.65 + 0.3 * u, 0.65 + 0.3 * v, np.full_like(u, 0.75)], 2)[inside]
    canonical = ((np.round(rgb * 255) / 255 - 0.65) / 0.35).astype(np.float32)
    cmap = CanonicalMap(canonical, inside.astype(np.float32))
    gx, gy = np.meshgrid(np.arange(24.5, 57, 2.0), np.arange(20.5, 53, 2.0))
    p = np.stack([gx.ravel(), gy.ravel()], 1)
    p = p[cmap.supported(p)]
    targets = cmap.value(p)
    found, _, ok = invert(cmap, targets)
    assert ok.mean() > 0.97 and np.median(np.linalg.norm(found[ok] - p[ok], axis=1)) < 0.01
    angle = np.random.default_rng(6).uniform(0, 2 * np.pi, len(p))
    for offset, share in ((4, 0.95), (6, 0.88)):
        start = p + offset * np.stack([np.cos(angle), np.sin(angle)], 1)
        found, _, ok = invert(cmap, targets, start.astype(np.float32), InversionSettings())
        good = ok & (np.linalg.norm(found - p, axis=1) < 0.5)
        assert good.mean() > share, (offset, good.mean())


def test_fill_matches_a_dense_solve():
    filler = MeshFiller(MESH.faces, len(MESH.rest))
    rng = np.random.default_rng(2)
    values = rng.normal(size=(len(MESH.rest), 3))
    known = rng.random(len(MESH.rest)) > 0.4
    out = filler.fill(known, values, tolerance=1e-10, max_iterations=2000)
    np.testing.assert_array_equal(out[known], values[known])
    # dense reference: the graph Laplacian's unknown block against the known values
    v = len(MESH.rest)
    lap = np.zeros((v, v))
    for a, b in filler.edges:
        lap[a, b] = lap[b, a] = -1.0
    lap[np.diag_indices(v)] = -lap.sum(1)
    free = ~known
    reference = np.linalg.solve(lap[np.ix_(free, free)], -lap[np.ix_(free, known)] @ values[known])
    np.testing.assert_allclose(out[free], reference, atol=1e-6)
    # the channel-first form and a warm start land on the same field
    guess = out.T + rng.normal(scale=0.1, size=out.T.shape)
    again = filler.fill_soa(known, values.T, guess, tolerance=1e-10, max_iterations=2000)
    np.testing.assert_allclose(again.T, out, atol=1e-6)


def test_spike_test_and_neighbour_sums():
    filler = MeshFiller(MESH.faces, len(MESH.rest))
    x = np.random.default_rng(3).normal(size=(len(MESH.rest), 3))
    sums = np.zeros_like(x)
    for a, b in filler.edges:
        sums[a] += x[b]
        sums[b] += x[a]
    np.testing.assert_allclose(filler.neighbour_sum(x), sums, atol=1e-12)
    smooth = MESH.rest * 0.1
    known = np.ones(len(smooth), bool)
    known[::11] = False
    spiked = smooth.copy()
    spiked[200] += [0, 0, 0.02]
    spiked[400] += [0.03, 0, 0]
    assert sorted(np.flatnonzero(filler.outliers(known, spiked, floor=0.004))) == [200, 400]
    assert not filler.outliers(known, smooth, floor=0.004).any()


def test_pose_fits_recover_a_similarity_and_batches_match_single_fits():
    rng = np.random.default_rng(4)
    src = rng.normal(size=(500, 3)) * 0.05
    truth = np.eye(4)
    truth[:3, :3] = 1.3 * rotation(0.3, -0.2, 0.1)
    truth[:3, 3] = [0.02, -0.01, 0.5]
    dst = src @ truth[:3, :3].T + truth[:3, 3]
    np.testing.assert_allclose(similarity_fit(src, dst), truth, atol=1e-12)
    noisy = dst + rng.normal(scale=1e-4, size=dst.shape)
    noisy[:25] += 0.05  # outliers: the robust fit does not tilt
    np.testing.assert_allclose(robust_similarity_fit(src, noisy, np.ones(500)), truth, atol=2e-3)
    frames = np.stack([noisy, dst, dst[:, ::-1]]).transpose(0, 2, 1)
    weights = rng.uniform(0.5, 1.0, (3, 500))
    batch = robust_similarity_fit_soa(src.T, frames, weights)
    for m, x, w in zip(batch, frames, weights):
        np.testing.assert_allclose(m, robust_similarity_fit(src, x.T, w), atol=1e-10)


def test_marker_positions_are_barycentric_sums():
    t = synthetic_template(MESH, {"a": 5})
    tri, bary = closest_surface_point(t, t.canonical[t.faces[40]].mean(0))
    m = Markers(["a", "p"], np.array([[5, 5, 5], tri]), np.array([[1.0, 0, 0], bary]))
    x = np.random.default_rng(5).normal(size=(2, len(MESH.rest), 3))
    out = m.positions(x)
    np.testing.assert_allclose(out[:, 0], x[:, 5])
    np.testing.assert_allclose(out[:, 1], np.einsum("nkc,k->nc", x[:, tri], bary))


def test_solver_tracks_across_a_gap_without_extrapolating_over_it(frames):
    solver = CaptureSolver(synthetic_template(MESH), SolveSettings())
    numbers = [1, 2, 3, 9]  # the last one comes after a jump in the footage
    for n, f in zip(numbers, frames):
        solver.add(prediction(f, n, SCALE))
    cap = solver.finish(camera=K, footage_name="gap", footage_size=SIZE, fps=25,
                        model=type("M", (), {"depth_units": "metric"})(), settings={})
    for i, f in enumerate(frames):
        vis = cap.visibility[i]
        assert vis[f.visible].mean() > 0.85
        err = np.linalg.norm(project(K, cap.positions[i]) - f.uv, axis=1)
        assert np.median(err[vis]) < 0.05
        assert 1000 * np.median(np.linalg.norm(cap.positions[i] - f.points, axis=1)[~vis]) < 3
