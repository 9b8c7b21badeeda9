# SPDX-License-Identifier: GPL-3.0-or-later
"""The capture solve against exact ground truth: rasterised known meshes through known cameras."""
import numpy as np
import pytest

from face_anything_addon.core.inversion import CanonicalMap, invert
from face_anything_addon.core.mesh_fill import MeshFiller
from face_anything_addon.core.solve import (
    into_camera,
    CaptureSolver, Markers, SolveSettings, closest_surface_point, farthest_points, project)
from tests.synthetic_maps import (
    camera, expression, face_mesh, posed, prediction, render, rotation, synthetic_template)

SIZE = (256, 256)
K = camera(SIZE, 520.0)
MESH = face_mesh(51)
SCALE = float(np.abs(MESH.rest).max())


@pytest.fixture(scope="module")
def shot():
    """6 frames: the head turns and nods while the jaw opens."""
    frames = []
    for i in range(6):
        pts = posed(MESH, amount=i / 6, yaw=0.35 * np.sin(i / 2.5), pitch=0.12 * np.cos(i / 2))
        frames.append(render(MESH, pts, K, SIZE))
    return frames


def solve(frames, **kw):
    solver = CaptureSolver(synthetic_template(MESH, {"nose": int(np.argmin(MESH.rest[:, 2]))}),
                           SolveSettings(**kw.pop("settings", {})))
    for i, f in enumerate(frames):
        solver.add(prediction(f, kw.get("numbers", range(100))[i], SCALE,
                              depth_factor=kw.get("depth_factor", 1.0), noise=kw.get("noise", 0.0),
                              seed=i, occluded=kw.get("occluded")))
    model = type("M", (), {"depth_units": kw.get("units", "metric"), "name": "exact",
                           "contract": "1"})()
    return solver.finish(camera=K, footage_name="synthetic", footage_size=SIZE, fps=25,
                         model=model, settings={})


def test_inversion_is_sub_pixel_on_exact_maps(shot):
    f = shot[2]
    cmap = CanonicalMap(f.canonical_metric / SCALE, f.weight)
    p, residual, ok = invert(cmap, MESH.rest / SCALE)
    err = np.linalg.norm(p - f.uv, axis=1)
    assert ok[f.visible].mean() > 0.9
    assert np.median(err[ok & f.visible]) < 0.25
    # a pixel-centre match (the published approach) cannot do better than ~0.38 px on average
    nearest_centre = np.floor(f.uv) + 0.5
    assert np.median(err[ok & f.visible]) * 3 < np.median(
        np.linalg.norm(nearest_centre - f.uv, axis=1)[f.visible])
    assert not ok[~f.visible & (np.abs(f.uv - 128).max(1) > 140)].any()  # out of frame: not seen


def test_tracks_and_3d_positions_match_the_truth(shot):
    cap = solve(shot)
    for i, f in enumerate(shot):
        vis = cap.visibility[i]
        assert vis[f.visible].mean() > 0.85
        err_px = np.linalg.norm(project(K, cap.positions[i]) - f.uv, axis=1)
        err_mm = 1000 * np.linalg.norm(cap.positions[i] - f.points, axis=1)
        # what it claims to see, it sees right (silhouette vertices included)
        assert np.percentile(err_mm[vis], 99) < 2.0
        assert np.median(err_px[vis]) < 0.25
        assert np.median(err_mm[vis]) < 0.2 and np.median(err_mm[~vis]) < 3.0
        assert err_mm.max() < 15  # no spikes anywhere
    # the head pose is the one rendered (rotation part of the similarity)
    r = cap.head_pose[3, :3, :3] / np.cbrt(np.linalg.det(cap.head_pose[3, :3, :3]))
    truth = rotation(0.35 * np.sin(3 / 2.5), 0.12 * np.cos(3 / 2))
    angle = np.degrees(np.arccos(np.clip((np.trace(r.T @ truth) - 1) / 2, -1, 1)))
    assert angle < 1.0
    assert cap.marker_names == ["nose"]
    nose = int(np.argmin(MESH.rest[:, 2]))
    np.testing.assert_allclose(cap.marker_xyz[:, 0], cap.positions[:, nose], atol=1e-6)


def test_hole_filling_on_held_back_vertices(shot):
    f = shot[1]
    held = np.zeros(len(MESH.rest), bool)
    held[(MESH.rest[:, 0] > 0.02) & (MESH.rest[:, 1] < 0.0)] = True  # a cheek patch, unseen
    occluded = np.zeros(SIZE[::-1], bool)
    uv = f.uv[held]
    x0, y0 = np.floor(uv.min(0)).astype(int)
    x1, y1 = np.ceil(uv.max(0)).astype(int)
    occluded[y0:y1, x0:x1] = True  # an occluder (a hand) over the patch
    cap = solve([f], occluded=occluded)
    hidden = ~cap.visibility[0] & f.visible
    assert hidden.sum() > 50
    err_mm = 1000 * np.linalg.norm(cap.positions[0] - f.points, axis=1)
    assert np.median(err_mm[hidden]) < 2.0 and err_mm[hidden].max() < 8.0


def test_relative_depth_becomes_metric_from_the_template_size(shot):
    neutral = [render(MESH, posed(MESH, yaw=y), K, SIZE) for y in (0.0, 0.3)]
    cap = solve(neutral, depth_factor=3.7, units="relative")
    err_mm = 1000 * np.linalg.norm(cap.positions - np.stack([f.points for f in neutral]), axis=2)
    assert np.median(err_mm[cap.visibility]) < 0.5
    assert cap.depth_units == "relative"
    # with expressions the template's size is a little off: still within about 1% of the distance
    cap = solve(shot[:3], depth_factor=3.7, units="relative")
    depth_ratio = cap.positions[..., 2] / np.stack([f.points[:, 2] for f in shot[:3]])
    assert abs(np.median(depth_ratio) - 1) < 0.012


def test_noise_keeps_errors_small(shot):
    cap = solve(shot[:2], noise=0.003)
    err_px = np.linalg.norm(project(K, cap.positions[1]) - shot[1].uv, axis=1)
    assert np.median(err_px[cap.visibility[1]]) < 0.5


def test_temporal_filter_never_crosses_a_gap(shot):
    frames = [shot[0], shot[0], shot[5], shot[5]]  # a jump in the footage between 2 and 10
    cap = solve(frames, numbers=[1, 2, 10, 11], settings={"temporal_sigma": 2.0})
    for i, f in enumerate(frames):
        err_mm = 1000 * np.linalg.norm(cap.positions[i] - f.points, axis=1)
        assert np.median(err_mm[cap.visibility[i]]) < 0.2  # nothing smeared across the gap


def test_dropout_frames_hold_the_last_mesh(shot):
    solver = CaptureSolver(synthetic_template(MESH), SolveSettings())
    solver.add(prediction(shot[0], 1, SCALE))
    empty = prediction(shot[0], 2, SCALE, occluded=np.ones(SIZE[::-1], bool))
    solver.add(empty)
    model = type("M", (), {"depth_units": "metric"})()
    cap = solver.finish(camera=K, footage_name="x", footage_size=SIZE, fps=25, model=model,
                        settings={})
    assert not cap.visibility[1].any()
    np.testing.assert_allclose(cap.positions[1], cap.positions[0], atol=1e-6)


def test_markers_farthest_points_and_picks():
    t = synthetic_template(MESH, {"a": 0, "b": 10})
    m = Markers.from_template(t, auto_count=5, picks={"pick": t.canonical[t.faces[7]].mean(0)})
    assert m.names == ["a", "b", "auto_000", "auto_001", "auto_002", "auto_003", "auto_004", "pick"]
    assert sorted(m.vertices[-1]) == sorted(t.faces[7]) and np.allclose(m.weights[-1], 1 / 3)
    spread = farthest_points(t.metric, 5, [0, 10])
    assert len(set(spread)) == 5 and not {0, 10} & set(spread)
    tri, bary = closest_surface_point(t, t.canonical[3] + [0, 0, 0.2])  # off the surface
    assert 3 in tri and bary.sum() == pytest.approx(1)


def test_filler_is_harmonic_and_rejects_spikes():
    filler = MeshFiller(MESH.faces, len(MESH.rest))
    truth = expression(MESH, 1.0)
    known = np.ones(len(truth), bool)
    known[::7] = False
    out = filler.fill(known, truth)
    np.testing.assert_array_equal(out[known], truth[known])
    assert np.median(np.linalg.norm(out[~known] - truth[~known], axis=1)) < 5e-4
    spiked = truth.copy()
    spiked[500] += [0, 0, 0.05]
    assert np.flatnonzero(filler.outliers(known, spiked, floor=0.004)).tolist() == [500]


def test_into_camera_keeps_every_pixel_and_the_relief_and_moves_the_head_by_the_focal_ratio():
    rng = np.random.default_rng(0)
    head = rng.normal(0, [0.07, 0.09, 0.05], (200, 3)) + (0.05, -0.02, 0.5)  # metres
    k_crop = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])  # a lens twice too short
    camera = np.array([[1000.0, 0, 330], [0, 1000, 236], [0, 0, 1]])
    moved = into_camera(head[None], k_crop[None], camera)[0]
    np.testing.assert_allclose(project(camera, moved), project(k_crop, head), atol=1e-9)
    assert np.ptp(moved[:, 2]) == pytest.approx(np.ptp(head[:, 2]))  # relief kept
    assert moved[:, 2].mean() == pytest.approx(2 * head[:, 2].mean())  # twice as far
    # the face's shape is about kept (scaling depth with distance would double its relief)
    assert np.ptp(moved[:, 0]) == pytest.approx(np.ptp(head[:, 0]), rel=0.15)
    # same focal length, another principal point: every point keeps its pixel and its depth
    shifted = np.array([[500.0, 0, 300], [0, 500, 250], [0, 0, 1]])
    same = into_camera(head[None], k_crop[None], shifted)[0]
    np.testing.assert_allclose(same[:, 2], head[:, 2])
    np.testing.assert_allclose(project(shifted, same), project(k_crop, head), atol=1e-9)
