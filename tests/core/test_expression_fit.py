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
from face_anything_addon.core.solve import ActorFace, CaptureSolver, SolveError, SolveSettings
from tests.synthetic_maps import (
    camera, expression, face_mesh, pout, prediction, render, rotation, synthetic_template)

MESH = face_mesh(31)
V = len(MESH.rest)
# two targets the shots use and one they never do
TARGETS = {"jawOpen": expression(MESH, 1.0), "mouthPucker": pout(MESH, 1.0),
           "browUp": np.where(MESH.rest[:, 1:2] < -0.04, [0.0, -0.01, 0.0], 0.0)}
DELTAS = np.array(list(TARGETS.values()))


def identity_shapes(mesh) -> np.ndarray:
    """Three ways a head may differ from the rest mesh (metres): a broader upper face, a larger
    nose, a longer chin (which an expression-only fit takes for a jaw opening)."""
    x, y, _ = mesh.rest.T
    broad = np.zeros_like(mesh.rest)
    broad[:, 0] = 0.08 * x * np.clip(-y / 0.1, 0, 1)
    nose = np.zeros_like(mesh.rest)
    nose[:, 2] = -0.006 * np.exp(-(x / 0.02) ** 2 - ((y + 0.005) / 0.03) ** 2)
    chin = np.zeros_like(mesh.rest)
    chin[:, 1] = 0.008 * np.clip((y - 0.06) / 0.05, 0, 1)
    return np.array([broad, nose, chin])


IDENTITY = identity_shapes(MESH)
ACTOR = np.array([0.8, -0.6, 1.0])  # the shots' head: rest + IDENTITY . ACTOR
ACTOR_FACE = MESH.rest + np.tensordot(ACTOR, IDENTITY, 1)


def pose(points: np.ndarray, yaw: float, pitch: float, scale: float = 1.0,
         t=(0.01, -0.02, 0.5)) -> np.ndarray:
    return scale * points @ rotation(yaw, pitch).T + np.asarray(t)


def shots(weights: np.ndarray, noise: float = 0.0, seed: int = 0,
          actor: np.ndarray | None = None) -> np.ndarray:
    """(N, V, 3) camera-space meshes with the given (N, 3) target weights, each frame its own
    pose, plus Gaussian noise (metres); `actor`: identity weights of the head (none: the rest
    mesh)."""
    rng = np.random.default_rng(seed)
    head = MESH.rest if actor is None else MESH.rest + np.tensordot(actor, IDENTITY, 1)
    out = []
    for i, w in enumerate(weights):
        shape = head + np.tensordot(w, DELTAS, 1)
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
    fit = ExpressionModel(MESH.rest, DELTAS).fit(x, np.ones((4, V), bool), prior=1e-5,
                                                 depth_weight=1.0)
    np.testing.assert_allclose(fit.weights, truth, atol=0.01)
    assert np.abs(fit.positions - x).max() < 2e-4  # metres
    scales = np.cbrt(np.linalg.det(fit.poses[:, :3, :3]))
    np.testing.assert_allclose(scales, 1.0 + 0.05 * np.arange(4), atol=2e-3)


def test_weights_stay_between_0_and_1():
    x = shots(np.array([[1.5, 0.4, -0.6]]))
    fit = ExpressionModel(MESH.rest, DELTAS).fit(x, np.ones((1, V), bool), prior=1e-5,
                                                 depth_weight=1.0)
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
    fit = ExpressionModel(MESH.rest, DELTAS).fit(corrupted, seen, prior=1e-5, depth_weight=1.0)
    np.testing.assert_allclose(fit.weights, truth, atol=0.02)
    assert np.abs(fit.positions - x).max() < 1e-3


def test_noise_is_fitted_away_and_the_prior_pulls_towards_neutral():
    truth = np.tile([[0.7, 0.4, 0.0]], (6, 1))
    clean = shots(truth)
    noisy = shots(truth, noise=0.003, seed=2)  # 3 mm per coordinate
    model = ExpressionModel(MESH.rest, DELTAS)
    fit = model.fit(noisy, np.ones((6, V), bool), prior=0.001, depth_weight=1.0)
    raw_err = np.linalg.norm(noisy - clean, axis=2).mean()
    fit_err = np.linalg.norm(fit.positions - clean, axis=2).mean()
    assert fit_err < 0.1 * raw_err
    np.testing.assert_allclose(fit.weights[:, 0], 0.7, atol=0.07)
    # the pucker moves a small patch: the prior costs it more than the jaw, it comes out smaller
    assert ((fit.weights[:, 1] > 0.2) & (fit.weights[:, 1] < 0.45)).all()
    assert fit.weights[:, 2].max() < 0.05
    # a larger prior shrinks the weights towards the neutral face; a huge one keeps it neutral
    firmer = model.fit(noisy, np.ones((6, V), bool), prior=0.004, depth_weight=1.0)
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


WEIGHTS = np.array([[0.0, 0.0, 0.0], [0.6, 0.3, 0.0], [0.0, 0.9, 0.0], [1.0, 0.0, 0.2],
                    [0.3, 0.5, 0.0], [0.8, 0.8, 0.0]])


def test_the_actors_face_is_fitted_once_for_the_shot():
    x = shots(WEIGHTS, actor=ACTOR)
    seen = np.ones((len(x), V), bool)
    plain = ExpressionModel(MESH.rest, DELTAS).fit(x, seen, prior=1e-5, depth_weight=1.0)
    # without the identity the long chin reads as a jaw opening in every frame
    assert plain.weights[0, 0] > 0.1 and np.abs(plain.weights - WEIGHTS).max() > 0.1
    assert plain.identity.shape == (0,) and np.array_equal(plain.rest, MESH.rest)
    model = ExpressionModel(MESH.rest, DELTAS, identity=IDENTITY)
    errors = []
    for rounds in (1, 2, 3):
        fit = model.fit(x, seen, prior=1e-5, identity_prior=1e-5, identity_rounds=rounds,
                        depth_weight=1.0)
        errors.append(np.abs(fit.identity - ACTOR).max())
    # one round of the joint step gets most of the way, the next lands
    assert errors[0] < 0.2 and errors[1] < 1e-3 and errors[2] < 1e-3
    np.testing.assert_allclose(fit.weights, WEIGHTS, atol=0.01)
    assert np.abs(fit.rest - ACTOR_FACE).max() < 1e-4  # metres
    assert np.abs(fit.positions - x).max() < 3e-4
    assert np.abs(plain.positions - x).max() > 3e-3
    # no rounds: the template's neutral face, as without identity shapes
    none = model.fit(x, seen, prior=1e-5, identity_rounds=0, depth_weight=1.0)
    np.testing.assert_array_equal(none.weights, plain.weights)
    assert np.array_equal(none.rest, MESH.rest) and none.identity.shape == (0,)


def test_an_actor_s_face_given_is_used_as_it_is():
    x = shots(WEIGHTS, actor=ACTOR)
    seen = np.ones((len(x), V), bool)
    model = ExpressionModel(MESH.rest, DELTAS, identity=IDENTITY)
    calls = []
    fit = model.fit(x, seen, prior=1e-5, depth_weight=1.0, actor=ACTOR,
                    progress=lambda d, t: calls.append((d, t)))
    np.testing.assert_array_equal(fit.identity, ACTOR)
    np.testing.assert_allclose(fit.rest, ACTOR_FACE)
    np.testing.assert_allclose(fit.weights, WEIGHTS, atol=1e-3)
    assert calls == [(6, 6)]  # one pass: no face to fit
    with pytest.raises(ValueError, match="2 identity weights given for 3"):
        model.fit(x, seen, actor=ACTOR[:2])


def test_the_identity_prior_and_hidden_frames():
    x = shots(WEIGHTS, actor=ACTOR, noise=0.002, seed=5)
    seen = np.ones((len(x), V), bool)
    seen[0] = False  # a frame without the face: no say in the actor's face
    x[0] += 0.05
    model = ExpressionModel(MESH.rest, DELTAS, identity=IDENTITY)
    loose = model.fit(x, seen, prior=0.001, identity_prior=1e-4, identity_rounds=3,
                      depth_weight=1.0)
    np.testing.assert_allclose(loose.identity, ACTOR, atol=0.1)
    firm = model.fit(x, seen, prior=0.001, identity_prior=0.003, identity_rounds=3,
                     depth_weight=1.0)
    assert (np.abs(firm.identity) < np.abs(loose.identity) - 0.05).all()  # towards 0
    assert np.abs(model.fit(x, seen, prior=0.001, identity_prior=1.0).identity).max() < 1e-3


def test_a_low_depth_weight_keeps_what_the_image_shows():
    """Maps whose depth is flattened (each point moved along its camera ray, so its image
    position stays right; as a network's too smooth depth does): the weights taken mostly
    from across the rays are nearer the truth. On exact maps a target that moves points mostly
    in depth (the pucker) comes out a little short: each round moves the points only part of
    the way along their rays."""
    x = shots(WEIGHTS)
    depth = np.linalg.norm(x, axis=2, keepdims=True)
    middle = np.median(depth, axis=1, keepdims=True)
    flat = x / depth * (middle + 0.3 * (depth - middle))
    seen = np.ones((len(x), V), bool)
    model = ExpressionModel(MESH.rest, DELTAS)
    error = {w: np.abs(model.fit(flat, seen, prior=1e-4, depth_weight=w).weights -
                       WEIGHTS).mean() for w in (1.0, 0.3)}
    assert error[0.3] < 0.75 * error[1.0]
    exact = {w: model.fit(x, seen, prior=1e-5, depth_weight=w).weights for w in (1.0, 0.3)}
    np.testing.assert_allclose(exact[1.0], WEIGHTS, atol=1e-3)
    np.testing.assert_allclose(exact[0.3][:, [0, 2]], WEIGHTS[:, [0, 2]], atol=0.02)
    np.testing.assert_allclose(exact[0.3][:, 1], WEIGHTS[:, 1], atol=0.2)


def test_progress_runs_once_over_every_pass():
    x = shots(WEIGHTS[:5], actor=ACTOR)
    model = ExpressionModel(MESH.rest, DELTAS, identity=IDENTITY)
    calls = []
    model.fit(x, np.ones((5, V), bool), chunk=2, identity_rounds=1,
              progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 10), (4, 10), (5, 10), (7, 10), (9, 10), (10, 10)]
    cancel = threading.Event()

    def cancel_in_second_pass(done, total):
        if done > 5:
            cancel.set()

    assert model.fit(x, np.ones((5, V), bool), chunk=2, identity_rounds=1, cancel=cancel,
                     progress=cancel_in_second_pass) is None


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
    with pytest.raises(ValueError, match="identity"):
        ExpressionModel(MESH.rest, DELTAS, identity=IDENTITY[:, :-1])
    x = shots(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="identity prior"):
        ExpressionModel(MESH.rest, DELTAS, identity=IDENTITY).fit(
            x, np.ones((1, V), bool), identity_prior=0.0)
    for weight in (0.0, 1.5):
        with pytest.raises(ValueError, match="depth weight"):
            model.fit(x, np.ones((1, V), bool), depth_weight=weight)


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


def capture_of(frames, settings: SolveSettings, noise: float = 0.0,
               identity: np.ndarray | None = None) -> Capture:
    solver = CaptureSolver(synthetic_template(MESH, targets=TARGETS, identity=identity), settings)
    for i, f in enumerate(frames):
        solver.add(prediction(f, i, SCALE, noise=noise, seed=i))
    model = type("M", (), {"depth_units": "metric", "name": "exact", "contract": "1"})()
    return solver.finish(camera=K, footage_name="synthetic", footage_size=SIZE, fps=25,
                         model=model, settings={})


def test_the_solve_fits_the_targets_and_keeps_the_weights(shot, tmp_path):
    # exact maps: a weak prior, and their depth as trusted as the image
    cap = capture_of(shot, SolveSettings(expression_prior_mm=0.1, depth_weight=1.0))
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


@pytest.fixture(scope="module")
def actor_shot():
    """The `shot`'s expressions and poses on the head of ACTOR, not the template's."""
    frames = []
    for i, (jaw, pucker) in enumerate(AMOUNTS):
        shape = ACTOR_FACE + expression(MESH, jaw) + pout(MESH, pucker)
        points = shape @ rotation(0.25 * np.sin(i), 0.1 * np.cos(i)).T + np.array([0, 0, 0.45])
        frames.append(render(MESH, points, K, SIZE))
    return frames


def test_the_capture_s_neutral_face_is_the_actor_s(actor_shot, tmp_path):
    """A shot of a head unlike the template's: with its identity shapes the capture's rest
    mesh (the Blender mesh's Basis) is the actor's face and the weights are the expressions;
    without them, the template's neutral face."""
    actor, frames = ACTOR_FACE, actor_shot
    exact = SolveSettings(expression_prior_mm=0.1, identity_prior_mm=0.05, depth_weight=1.0)
    cap = capture_of(frames, exact, identity=IDENTITY)
    assert np.abs(cap.rest_vertices - actor).max() < 1.5e-3  # metres, the float16 shapes
    assert np.abs(cap.rest_vertices - MESH.rest).max() > 5e-3
    np.testing.assert_allclose(cap.expression_weights[:, :2], AMOUNTS, atol=0.08)
    back = Capture.load(cap.save(tmp_path / "actor.capture.npz"))
    np.testing.assert_array_equal(back.rest_vertices, cap.rest_vertices)
    assert back.settings["solve"]["identity_rounds"] == exact.identity_rounds
    plain = capture_of(frames, SolveSettings(expression_prior_mm=0.1, depth_weight=1.0,
                                             identity_rounds=0), identity=IDENTITY)
    np.testing.assert_allclose(plain.rest_vertices, MESH.rest, atol=1e-6)
    assert plain.expression_weights[0, 0] > 0.05  # the long chin taken for a jaw opening
    for i, f in enumerate(frames):  # both fit the shot; the actor's face fits it better
        got = [np.linalg.norm(c.positions[i] - f.points, axis=1).mean() for c in (cap, plain)]
        assert got[0] < 1.5e-3 and got[0] < got[1]


def test_the_actor_s_face_carries_from_one_capture_to_the_next(actor_shot, tmp_path):
    """A capture records the identity weights it fitted; `ActorFace.from_capture` reads them
    and a capture of another shot of the actor uses that very face. Files that hold no face,
    or a face for another mesh, are refused with what to do."""
    frames = actor_shot
    first = capture_of(frames[:3], SolveSettings(), identity=IDENTITY)
    assert first.identity_weights.shape == (3,) and np.abs(first.identity_weights).max() > 0.1
    path = first.save(tmp_path / "first.capture.npz")
    face = ActorFace.from_capture(path)
    assert face.template_name == "synthetic" and face.source == str(path)
    np.testing.assert_allclose(face.weights, first.identity_weights, rtol=1e-6)
    second = capture_of(frames[3:], SolveSettings(actor_face=face), identity=IDENTITY)
    np.testing.assert_allclose(second.rest_vertices, first.rest_vertices, atol=1e-6)
    np.testing.assert_allclose(second.identity_weights, first.identity_weights, rtol=1e-6)
    assert second.settings["solve"]["actor_face"]["source"] == str(path)
    alone = capture_of(frames[3:], SolveSettings(), identity=IDENTITY)  # fitted anew: differs
    assert np.abs(alone.rest_vertices - first.rest_vertices).max() > 1e-5
    # a capture with the template's face holds none
    plain = capture_of(frames[:2], SolveSettings(identity_rounds=0), identity=IDENTITY)
    none = capture_of(frames[:2], SolveSettings())  # a template without identity shapes
    assert plain.identity_weights.shape == none.identity_weights.shape == (0,)
    for capture, name in ((plain, "plain"), (none, "none")):
        with pytest.raises(SolveError, match="holds no actor's face"):
            ActorFace.from_capture(capture.save(tmp_path / f"{name}.capture.npz"))
    (tmp_path / "junk.capture.npz").write_bytes(b"not a capture")
    with pytest.raises(SolveError, match="comes from a capture file"):
        ActorFace.from_capture(tmp_path / "junk.capture.npz")
    with pytest.raises(SolveError, match="same model and mesh"):  # before any frame is solved
        CaptureSolver(synthetic_template(MESH, targets=TARGETS),
                      SolveSettings(actor_face=face))
    other = ActorFace("another mesh", face.weights, "other.capture.npz")
    with pytest.raises(SolveError, match="other.capture.npz holds a face for the mesh"):
        CaptureSolver(synthetic_template(MESH, targets=TARGETS, identity=IDENTITY),
                      SolveSettings(actor_face=other))
    # without the expression fit there is nothing to use it for
    CaptureSolver(synthetic_template(MESH, identity=IDENTITY), SolveSettings(actor_face=other))


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
        arrays = {k: z[k] for k in z.files if k not in ("expression_weights",
                                                         "identity_weights")}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta.pop("expression_names")
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    back = Capture.load(path)
    assert back.expression_names == [] and back.expression_weights.size == 0
    assert back.identity_weights.shape == (0,)
