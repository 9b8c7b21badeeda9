# SPDX-License-Identifier: GPL-3.0-or-later
"""The expression fit: the template's expression targets and a head pose from tracked meshes,
alone and inside the capture solve; the capture file keeps the weights."""
import json
import threading

import numpy as np
import pytest

from face_anything_addon.core.capture import Capture
from face_anything_addon.core.expression_fit import (
    ExpressionModel, cross_matrix, pose_moments, rodrigues, spd_solve)
from face_anything_addon.core.solve import CaptureSolver, SolveSettings
from tests.synthetic_maps import (
    camera, expression, face_mesh, pout, prediction, render, rotation, synthetic_template)

MESH = face_mesh(31)
V = len(MESH.rest)
# two targets the shots use and one they never do
TARGETS = {"jawOpen": expression(MESH, 1.0), "mouthPucker": pout(MESH, 1.0),
           "browUp": np.where(MESH.rest[:, 1:2] < -0.04, [0.0, -0.01, 0.0], 0.0)}
DELTAS = np.array(list(TARGETS.values()))


def pose(points: np.ndarray, yaw: float, pitch: float, scale: float = 1.0,
         t=(0.01, -0.02, 0.5)) -> np.ndarray:
    return scale * points @ rotation(yaw, pitch).T + np.asarray(t)


def shots(weights: np.ndarray, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """(N, V, 3) camera-space meshes with the given (N, 3) target weights, each frame its own
    pose, plus Gaussian noise (metres)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, w in enumerate(weights):
        shape = MESH.rest + np.tensordot(w, DELTAS, 1)
        out.append(pose(shape, 0.3 * np.sin(i), 0.1 * np.cos(i), 1.0 + 0.05 * i))
    return np.array(out) + rng.normal(0, noise, (len(weights), V, 3))


def test_spd_solve_matches_lapack():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(7, 9, 9))
    a = m @ m.transpose(0, 2, 1) + 0.1 * np.eye(9)
    b = rng.normal(size=(7, 9))
    np.testing.assert_allclose(spd_solve(a, b), np.linalg.solve(a, b[..., None])[..., 0],
                               rtol=1e-8, atol=1e-10)


def test_pose_moments_are_the_jacobians_normal_equations():
    rng = np.random.default_rng(4)
    shape, target = rng.normal(size=(2, 3, 20, 3))
    u = rng.random((3, 20))
    jac = np.concatenate([-cross_matrix(shape), shape[..., None], np.broadcast_to(
        np.eye(3), shape.shape + (3,))], -1)  # (N, V, 3, 7)
    normal, rhs = pose_moments(shape, target, u, u.sum(1))
    np.testing.assert_allclose(normal, np.einsum("nv,nvci,nvcj->nij", u, jac, jac), atol=1e-9)
    np.testing.assert_allclose(rhs, np.einsum("nv,nvci,nvc->ni", u, jac, target), atol=1e-12)
    # the Jacobian is the derivative of (I + [omega]x)(1 + sigma) S + tau
    step = np.array([1e-6, -2e-6, 1.5e-6, 1e-6, 2e-6, -1e-6, 3e-6])
    moved = (shape @ rodrigues(np.tile(step[:3], (3, 1))).transpose(0, 2, 1)) * (1 + step[3]) \
        + step[4:]
    np.testing.assert_allclose(moved - shape, jac @ step, atol=1e-10)


def test_rodrigues_gives_rotations():
    omega = np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.5], [0.0, 0.0, np.pi / 2]])
    r = rodrigues(omega)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-12)
    np.testing.assert_allclose(r[0], np.eye(3))
    np.testing.assert_allclose(r[2] @ [1.0, 0, 0], [0, 1.0, 0], atol=1e-12)
    np.testing.assert_allclose(r[1] @ omega[1], omega[1], atol=1e-12)  # the axis stays


def test_recovers_weights_and_pose_from_exact_meshes():
    truth = np.array([[0.6, 0.3, 0.0], [0.0, 0.9, 0.0], [1.0, 0.0, 0.2], [0.0, 0.0, 0.0]])
    x = shots(truth)
    fit = ExpressionModel(MESH.rest, DELTAS).fit(x, np.ones((4, V), bool), prior=1e-5)
    np.testing.assert_allclose(fit.weights, truth, atol=0.01)
    assert np.abs(fit.positions - x).max() < 2e-4  # metres
    scales = np.cbrt(np.linalg.det(fit.poses[:, :3, :3]))
    np.testing.assert_allclose(scales, 1.0 + 0.05 * np.arange(4), atol=2e-3)


def test_weights_stay_between_0_and_1():
    x = shots(np.array([[1.5, 0.4, -0.6]]))
    fit = ExpressionModel(MESH.rest, DELTAS).fit(x, np.ones((1, V), bool), prior=1e-5)
    assert fit.weights.min() >= 0 and fit.weights.max() <= 1
    np.testing.assert_allclose(fit.weights[0, [0, 2]], [1.0, 0.0], atol=1e-9)
    assert abs(fit.weights[0, 1] - 0.4) < 0.1


def test_only_the_seen_vertices_count():
    truth = np.array([[0.5, 0.5, 0.0], [0.2, 0.0, 0.7]])
    x = shots(truth)
    seen = np.ones((2, V), bool)
    seen[:, MESH.rest[:, 0] > 0.03] = False  # one side hidden ...
    corrupted = x.copy()
    corrupted[~seen] += 0.05  # ... and its positions wrong by 5 cm (the solve's fill)
    fit = ExpressionModel(MESH.rest, DELTAS).fit(corrupted, seen, prior=1e-5)
    np.testing.assert_allclose(fit.weights, truth, atol=0.02)
    assert np.abs(fit.positions - x).max() < 1e-3


def test_noise_is_fitted_away_and_the_prior_pulls_towards_neutral():
    truth = np.tile([[0.7, 0.4, 0.0]], (6, 1))
    clean = shots(truth)
    noisy = shots(truth, noise=0.003, seed=2)  # 3 mm per coordinate
    model = ExpressionModel(MESH.rest, DELTAS)
    fit = model.fit(noisy, np.ones((6, V), bool), prior=0.001)
    raw_err = np.linalg.norm(noisy - clean, axis=2).mean()
    fit_err = np.linalg.norm(fit.positions - clean, axis=2).mean()
    assert fit_err < 0.1 * raw_err
    np.testing.assert_allclose(fit.weights[:, 0], 0.7, atol=0.07)
    # the pucker moves a small patch: the prior costs it more than the jaw, it comes out smaller
    assert ((fit.weights[:, 1] > 0.2) & (fit.weights[:, 1] < 0.45)).all()
    assert fit.weights[:, 2].max() < 0.05
    # a larger prior shrinks the weights towards the neutral face; a huge one keeps it neutral
    firmer = model.fit(noisy, np.ones((6, V), bool), prior=0.004)
    assert (firmer.weights[:, :2] < fit.weights[:, :2] - 0.05).all()
    strong = model.fit(noisy, np.ones((6, V), bool), prior=1.0)
    assert np.abs(strong.weights).max() < 1e-3


def test_chunks_do_not_change_the_result():
    x = shots(np.random.default_rng(3).uniform(0, 1, (5, 3)), noise=0.001)
    model = ExpressionModel(MESH.rest, DELTAS)
    one, two = model.fit(x, np.ones((5, V), bool)), model.fit(x, np.ones((5, V), bool), chunk=2)
    np.testing.assert_allclose(one.weights, two.weights, atol=1e-9)


def test_progress_per_chunk_and_cancel():
    x = shots(np.zeros((5, 3)))
    model = ExpressionModel(MESH.rest, DELTAS)
    calls = []
    fit = model.fit(x, np.ones((5, V), bool), chunk=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)] and fit.positions.dtype == np.float32
    cancel = threading.Event()
    cancel.set()
    assert model.fit(x, np.ones((5, V), bool), cancel=cancel) is None


def test_bad_input_is_refused():
    model = ExpressionModel(MESH.rest, DELTAS)
    with pytest.raises(ValueError, match="vertices"):
        model.fit(np.zeros((2, V - 1, 3)), np.ones((2, V - 1), bool))
    with pytest.raises(ValueError, match="prior"):
        model.fit(shots(np.zeros((1, 3))), np.ones((1, V), bool), prior=0.0)
    with pytest.raises(ValueError, match="no expression targets"):
        ExpressionModel(MESH.rest, np.zeros((0, V, 3)))
    with pytest.raises(ValueError, match="differ"):
        ExpressionModel(MESH.rest[:-1], DELTAS)


# ---------------------------------------------------------------------- inside the capture solve

SIZE = (256, 256)
K = camera(SIZE, 520.0)
SCALE = float(np.abs(MESH.rest).max())
AMOUNTS = np.array([[0.0, 0.0], [0.3, 0.0], [0.6, 0.5], [0.9, 0.5], [0.5, 1.0]])


@pytest.fixture(scope="module")
def shot():
    frames = []
    for i, (jaw, pucker) in enumerate(AMOUNTS):
        shape = MESH.rest + expression(MESH, jaw) + pout(MESH, pucker)
        points = shape @ rotation(0.25 * np.sin(i), 0.1 * np.cos(i)).T + np.array([0, 0, 0.45])
        frames.append(render(MESH, points, K, SIZE))
    return frames


def capture_of(frames, settings: SolveSettings, noise: float = 0.0) -> Capture:
    solver = CaptureSolver(synthetic_template(MESH, targets=TARGETS), settings)
    for i, f in enumerate(frames):
        solver.add(prediction(f, i, SCALE, noise=noise, seed=i))
    model = type("M", (), {"depth_units": "metric", "name": "exact", "contract": "1"})()
    return solver.finish(camera=K, footage_name="synthetic", footage_size=SIZE, fps=25,
                         model=model, settings={})


def test_the_solve_fits_the_targets_and_keeps_the_weights(shot, tmp_path):
    cap = capture_of(shot, SolveSettings(expression_prior_mm=0.1))  # exact maps: a weak prior
    assert cap.expression_names == list(TARGETS)
    assert cap.expression_weights.shape == (len(shot), 3)
    np.testing.assert_allclose(cap.expression_weights[:, :2], AMOUNTS, atol=0.08)
    assert cap.expression_weights[:, 2].max() < 0.08
    for i, f in enumerate(shot):  # the fitted mesh is the true one, every vertex
        assert np.linalg.norm(cap.positions[i] - f.points, axis=1).mean() < 1.5e-3
    back = Capture.load(cap.save(tmp_path / "fit.capture.npz"))
    assert back.expression_names == list(TARGETS)
    np.testing.assert_array_equal(back.expression_weights, cap.expression_weights)
    assert back.settings["solve"]["expressions"] is True
    assert back.settings["solve"]["expression_prior_mm"] == 0.1


def test_the_fit_beats_the_raw_mesh_on_noisy_maps(shot):
    raw = capture_of(shot, SolveSettings(expressions=False), noise=0.01)
    assert raw.expression_names == [] and raw.expression_weights.shape == (len(shot), 0)
    truth = np.array([f.points for f in shot])
    err_raw = np.linalg.norm(raw.positions - truth, axis=2).mean()
    for prior, share in ((SolveSettings().expression_prior_mm, 0.7), (1.0, 0.4)):
        fitted = capture_of(shot, SolveSettings(expression_prior_mm=prior), noise=0.01)
        assert np.linalg.norm(fitted.positions - truth, axis=2).mean() < share * err_raw


def test_the_solve_reports_the_fits_progress_and_can_be_cancelled_during_it(shot):
    from face_anything_addon.core.capture_run import _fit_progress

    solver = CaptureSolver(synthetic_template(MESH, targets=TARGETS), SolveSettings())
    for i, f in enumerate(shot):
        solver.add(prediction(f, i, SCALE))
    model = type("M", (), {"depth_units": "metric", "name": "exact", "contract": "1"})()
    seen = []
    cap = solver.finish(camera=K, footage_name="s", footage_size=SIZE, fps=25, model=model,
                        settings={}, progress=_fit_progress(seen.append))
    assert cap is not None and [(p.phase, p.done, p.total) for p in seen] == [
        ("fit", len(shot), len(shot))]
    assert seen[0].fps > 0 and seen[0].eta_s == 0
    cancel = threading.Event()
    cancel.set()
    assert solver.finish(camera=K, footage_name="s", footage_size=SIZE, fps=25, model=model,
                         settings={}, cancel=cancel) is None


def test_a_template_without_targets_gives_the_raw_mesh(shot):
    solver = CaptureSolver(synthetic_template(MESH), SolveSettings())
    assert not solver.fits_expressions
    for i, f in enumerate(shot[:2]):
        solver.add(prediction(f, i, SCALE))
    model = type("M", (), {"depth_units": "metric", "name": "exact", "contract": "1"})()
    cap = solver.finish(camera=K, footage_name="s", footage_size=SIZE, fps=25, model=model,
                        settings={})
    assert cap.expression_names == [] and cap.expression_weights.shape == (2, 0)


def test_a_capture_file_from_before_the_fit_still_reads(shot, tmp_path):
    cap = capture_of(shot[:2], SolveSettings(expressions=False))
    path = cap.save(tmp_path / "old.capture.npz")
    with np.load(path) as z:  # written as version 1 was, without the expression fields
        arrays = {k: z[k] for k in z.files if k != "expression_weights"}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta.pop("expression_names")
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    back = Capture.load(path)
    assert back.expression_names == [] and back.expression_weights.size == 0
