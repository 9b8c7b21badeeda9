# SPDX-License-Identifier: GPL-3.0-or-later
"""`training.evaluate_mesh`: the captured mesh against the true one. The alignment, the truth's
unprojection and every per-frame number are checked on meshes with known errors; one clip runs
through the add-on's whole capture path with the pointwise test model."""
from __future__ import annotations

import numpy as np
import pytest

from training.evaluate_mesh import (TRUTH_KEY, aligned_error, frame_metrics, score, similarity,
                                    true_positions)


def _mesh(seed: int = 0, n: int = 300) -> np.ndarray:
    """A head-sized cloud of points 0.6 m in front of the camera."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, [0.07, 0.09, 0.05], (n, 3)) + [0.02, -0.01, 0.6]


def _rotation(ax: float, ay: float) -> np.ndarray:
    cx, sx, cy, sy = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return ry @ rx


def test_similarity_recovers_a_known_transform():
    src = _mesh()
    r = _rotation(0.3, -0.5)
    dst = 1.7 * src @ r.T + [0.1, 0.2, -0.3]
    s, rot, t = similarity(src, dst)
    assert s == pytest.approx(1.7)
    np.testing.assert_allclose(rot, r, atol=1e-9)
    err, scale, _ = aligned_error(src, dst)
    assert err.max() < 1e-9 and scale == pytest.approx(1.7)


def test_true_positions_unproject_the_renderers_vertices():
    pts = _mesh(1)[None].repeat(2, 0)
    k = np.array([[[500.0, 0, 128], [0, 500, 120], [0, 0, 1]]] * 2)
    uv = pts[..., :2] / pts[..., 2:] * 500 + [128, 120]
    got = true_positions({"vertex_xy": uv, "vertex_depth": pts[..., 2], "intrinsics": k})
    np.testing.assert_allclose(got, pts, rtol=0, atol=1e-6)  # float32 truth


def test_frame_metrics_of_known_errors():
    true = _mesh(2)
    seen = np.arange(len(true)) % 3 == 0
    rest = _mesh(3)
    # the truth itself, moved, turned and scaled by 0.8: shape perfect, the head 0.8x its size
    moved = 0.8 * true @ _rotation(0.2, 0.4).T + [0.0, 0.0, 0.1]
    row = frame_metrics(moved, true, seen, rest)
    assert row["mesh_mm"] < 1e-6 and row["seen_mm"] < 1e-6
    assert row["size_log2"] == pytest.approx(np.log2(0.8))
    assert row["depth_ratio"] == pytest.approx(1.0)
    assert row["neutral_mm"] == pytest.approx(1000 * aligned_error(rest, true)[0].mean())
    # 20 % deeper along the view axis: the ratio says so, the error is in the millimetres
    deep = true.copy()
    deep[:, 2] = true[:, 2].mean() + 1.2 * (true[:, 2] - true[:, 2].mean())
    row = frame_metrics(deep, true, seen, rest)
    assert 1.1 < row["depth_ratio"] < 1.25
    assert row["mesh_mm"] > 1.0
    # noise on the observed vertices only: seen_mm above mesh_mm
    noisy = true.copy()
    noisy[seen] += np.random.default_rng(4).normal(0, 0.004, (seen.sum(), 3))
    row = frame_metrics(noisy, true, seen, rest)
    assert row["seen_mm"] > 2 * row["mesh_mm"] > 0


def test_score_pairs_each_captured_frame_with_its_truth(monkeypatch):
    """score() with the capture replaced by a known one: frame numbers pick the truth's frames,
    a perfect shape scores 0 mm and a gain of 1, a clip refused counts in no_face."""
    import training.evaluate_mesh as em

    v = 200
    truth = np.stack([_mesh(6, v), _mesh(7, v)]).astype(np.float32)
    rest = _mesh(8, v)

    class Captured:  # the fields of core.capture.Capture that score reads
        frame_numbers = np.array([1, 0])
        positions = 0.9 * truth[[1, 0]]
        visibility = np.ones((2, v), bool)
        rest_vertices = rest + 0.01  # the actor's face the fit found: not the baseline
        canonical_space = "test-space"
        expression_names = []  # no expression fit
        expression_weights = np.zeros((2, 0), np.float32)

    answers = iter([Captured(), None])
    monkeypatch.setattr(em, "capture_clip", lambda *a, **kw: next(answers))
    monkeypatch.setattr(em, "template_rest", {"test-space": rest}.__getitem__)
    clip = {"images": np.zeros((2, 3, 8, 8), np.float32), TRUTH_KEY: truth}
    res = em.score("model.onnx", [clip, clip])
    assert res["no_face"] == 0.5
    assert res["mesh_mm"] < 1e-3 and res["gain"] == pytest.approx(1.0)
    assert res["size_log2"] == pytest.approx(np.log2(0.9), abs=1e-6)
    expected = np.mean([1000 * aligned_error(rest, truth[i])[0].mean() for i in (1, 0)])
    assert res["neutral_mm"] == pytest.approx(expected, rel=1e-5)
    # with the lens known, each clip is captured with its true focal length as mm (36 mm wide)
    lenses, fits = [], []
    monkeypatch.setattr(em, "capture_clip",
                        lambda m, im, t, lens, fit, **kw: lenses.append(lens) or fits.append(fit))
    k = np.array([[12.0, 0, 4], [0, 12.0, 4], [0, 0, 1]])
    em.score("model.onnx", [{**clip, "intrinsics": np.stack([k, k])}], known_lens=True)
    em.score("model.onnx", [clip])
    em.score("model.onnx", [clip], expressions=False)
    assert lenses == [pytest.approx(12.0 / 8 * 36), 0.0, 0.0]
    assert fits == [True, True, False]


def test_score_compares_the_fitted_weights_with_the_engines(monkeypatch):
    import training.evaluate_mesh as em

    v = 200
    truth = np.stack([_mesh(6, v), _mesh(7, v)]).astype(np.float32)
    true_w = np.zeros((2, 52), np.float32)
    true_w[0, 3], true_w[1, [3, 7]] = 0.8, (0.4, 0.05)  # on: above 0.1

    class Captured:
        frame_numbers = np.array([0, 1])
        positions = truth
        visibility = np.ones((2, v), bool)
        rest_vertices = _mesh(8, v)
        canonical_space = "test-space"
        expression_names = [f"t{i}" for i in range(52)]
        expression_weights = true_w + np.float32(0.02)

    monkeypatch.setattr(em, "capture_clip", lambda *a, **kw: Captured())
    monkeypatch.setattr(em, "template_rest", {"test-space": _mesh(8, v)}.__getitem__)
    clip = {"images": np.zeros((2, 3, 8, 8), np.float32), TRUTH_KEY: truth, "blendshapes": true_w}
    res = em.score("model.onnx", [clip])
    assert res["weights_mae"] == pytest.approx(0.02, abs=1e-6)
    assert res["weights_on_mae"] == pytest.approx(0.02, abs=1e-6)
    assert res["weights_mae_neutral"] == pytest.approx(np.mean([0.8 / 52, 0.45 / 52]), rel=1e-5)
    assert res["weights_on_neutral"] == pytest.approx(np.mean([0.8, 0.4]), rel=1e-5)
    # the two targets that vary (3: 0.8 / 0.4, 7: 0 / 0.05) are followed exactly: correlation 1
    assert res["weights_corr"] == pytest.approx(1.0) and "jaw_open_corr" not in res
    # clips rendered before the engine's weights were cached: no weight numbers
    res = em.score("model.onnx", [{k: x for k, x in clip.items() if k != "blendshapes"}])
    assert "weights_mae" not in res and res["mesh_mm"] < 1e-3


def test_weight_correlations_tell_signal_from_noise():
    from training.evaluate_mesh import weight_correlations

    rng = np.random.default_rng(0)
    names = ["jawOpen", "eyeBlinkLeft", "mouthSmileLeft", "cheekPuff"]
    true = np.zeros((200, 4))
    true[:, 0] = rng.uniform(0, 1, 200)
    true[:, 1] = (rng.random(200) > 0.7) * 0.9
    true[:, 2] = rng.uniform(0, 0.5, 200)  # cheekPuff never moves: not counted
    got = np.stack([0.5 * true[:, 0] + 0.1,  # followed up to scale: 1
                    rng.uniform(0, 1, 200),  # noise: about 0
                    -true[:, 2],  # against it: -1
                    rng.uniform(0, 1, 200)], 1)
    res = weight_correlations(got, true, names)
    assert res["jaw_open_corr"] == pytest.approx(1.0)
    assert res["weights_corr"] == pytest.approx((1.0 + 0.0 - 1.0) / 3, abs=0.05)
    assert np.isnan(weight_correlations(got, np.zeros((200, 4)), names)["weights_corr"])
    # each target that varies, by name; their own table, best first
    from training.evaluate_mesh import target_table

    assert {k for k in res if k.startswith("corr:")} == {
        "corr:jawOpen", "corr:eyeBlinkLeft", "corr:mouthSmileLeft"}
    text = target_table({"m": res, "empty": {"mesh_mm": 1.0}})
    rows = [line.split(" | ")[0].strip("| ") for line in text.splitlines()[2:]]
    assert rows == ["jawOpen", "eyeBlinkLeft", "mouthSmileLeft"] and "| 1.00 |" in text
    assert "empty" not in text.splitlines()[0] and target_table({"m": {"mesh_mm": 1}}) == ""


def test_the_capture_path_runs_and_refuses_what_it_cannot_capture(tmp_path):
    """The add-on's own run_capture with the pointwise test model: a dark clip has no face, a
    bright square is a face whose canonical values match no template vertex; both are refused
    (counted, not raised)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from tests.contract_models import make_model

    model = make_model(tmp_path / "pointwise.onnx", mask=True)
    images = np.full((2, 3, 64, 64), 0.05, np.float32)
    truth = np.zeros((2, 4766, 3), np.float32)
    dark = {"images": images.copy(), TRUTH_KEY: truth}
    images[:, :, 16:48, 20:44] = 0.9
    res = score(model, [{"images": images, TRUTH_KEY: truth}, dark], threads=1)
    assert res == {"no_face": 1.0}


def test_track_metrics_project_through_the_capture_camera():
    from training.evaluate_mesh import track_metrics

    k = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    points = np.array([[0.0, 0, 1], [0.1, -0.05, 0.5], [0.02, 0.02, 2.0]])
    xy = points[:, :2] / points[:, 2:] * 100 + [32, 24]
    seen = np.array([True, True, False])
    assert track_metrics(points, k, xy, seen)["track_px"] == pytest.approx(0.0, abs=1e-9)
    moved = xy + [[3.0, 4.0], [0.0, 1.0], [50.0, 0.0]]  # 5 px, 1 px, and one hidden
    assert track_metrics(points, k, moved, seen)["track_px"] == pytest.approx(3.0)
    assert track_metrics(points, k, xy, np.zeros(3, bool)) == {}


def test_true_tracks_and_solve_settings(monkeypatch):
    """--true-tracks fits the solve's expressions to the true meshes themselves (no network):
    the bundled template's own neutral face with a jaw opening is fitted almost exactly; --solve
    takes SolveSettings fields, typed, and refuses unknown ones."""
    import training.evaluate_mesh as em
    from face_anything_addon.core.capture_run import bundled_templates
    from face_anything_addon.core.template import Template

    template = Template.load(bundled_templates()["makehuman-hm08-head-v1"])
    jaw = template.blendshape_names.index("jawOpen")
    weights = np.zeros((2, len(template.blendshape_names)), np.float32)
    weights[1, jaw] = 0.6
    shapes = template.metric + np.tensordot(weights, template.blendshape_deltas.astype(
        np.float32), 1)
    truth = (shapes + np.array([0.0, 0.0, 0.6], np.float32)).astype(np.float32)
    clip = {"images": np.zeros((2, 3, 8, 8), np.float32), em.TRUTH_KEY: truth,
            em.WEIGHTS_KEY: weights}
    monkeypatch.setattr(em, "capture_clip", None)  # never called
    res = em.score(None, [clip], solve={"depth_weight": 1.0, "expression_prior_mm": 0.5})
    assert res["mesh_mm"] < 0.3 and res["no_face"] == 0
    assert res["weights_mae"] < 0.01
    assert em.solve_overrides(["identity_rounds=0", "depth_weight=0.5", "expressions=false"]) \
        == {"identity_rounds": 0, "depth_weight": 0.5, "expressions": False}
    for bad in (["nonsense=1"], ["depth_weight"], ["identity_rounds=two"]):
        with pytest.raises(SystemExit, match="--solve"):
            em.solve_overrides(bad)


def test_tune_solve_scores_every_combination_on_one_capture(monkeypatch):
    """training.tune_solve: the grid's combinations (the defaults first, values typed), each
    scored on the same tracked meshes, the network run once per clip; rows best first."""
    import training.evaluate_mesh as em
    import training.tune_solve as ts

    assert ts.grid_of([]) == [{}]
    combos = ts.grid_of(["depth_weight=1,0.3", "identity_rounds=0"])
    assert combos == [{}, {"depth_weight": 1.0, "identity_rounds": 0},
                      {"depth_weight": 0.3, "identity_rounds": 0}]
    with pytest.raises(SystemExit, match="--grid"):
        ts.grid_of(["depth_weight"])
    template = em.bundled_template()
    weights = np.zeros((3, len(template.blendshape_names)), np.float32)
    weights[1:, template.blendshape_names.index("jawOpen")] = (0.3, 0.7)
    truth = (template.metric + np.tensordot(weights, template.blendshape_deltas.astype(
        np.float32), 1) + np.array([0.0, 0.0, 0.6], np.float32)).astype(np.float32)
    clip = {"images": np.zeros((3, 3, 8, 8), np.float32), em.TRUTH_KEY: truth,
            em.WEIGHTS_KEY: weights}
    noisy = truth + np.random.default_rng(0).normal(0, 0.002, truth.shape).astype(np.float32)

    class Tracked:  # a capture without the expression fit
        frame_numbers = np.arange(3)
        positions = noisy
        visibility = np.ones(truth.shape[:2], bool)

    calls = []
    monkeypatch.setattr(ts, "capture_clip",
                        lambda *a, **kw: calls.append(a[4]) or Tracked())
    results = ts.tune("model.onnx", [clip, clip], combos, true_tracks=True)
    assert calls == [False, False]  # captured once per clip, without the fit
    assert set(results) == {"defaults", "depth_weight=1.0, identity_rounds=0",
                            "depth_weight=0.3, identity_rounds=0", "true tracks, defaults",
                            "true tracks, depth_weight=1.0, identity_rounds=0",
                            "true tracks, depth_weight=0.3, identity_rounds=0"}
    mesh = [r["mesh_mm"] for r in results.values()]
    assert mesh == sorted(mesh) and all(np.isfinite(mesh))
    # the true meshes fit better than the noisy ones, setting for setting
    for name in ("defaults", "depth_weight=1.0, identity_rounds=0"):
        assert results[f"true tracks, {name}"]["mesh_mm"] < results[name]["mesh_mm"]
