# SPDX-License-Identifier: GPL-3.0-or-later
"""Points picked in the footage become tracked markers (core/marker_picks.py, run_capture).

Same set-up as test_capture_run: the tiny test model passes its normalised input through as the
canonical map, and the footage's colours encode a rendered face's canonical coordinates, so the
model is a perfect canonical predictor and every pick has an exact ground truth: the rendered
mesh vertex it was placed on, projected in every frame.
"""
import numpy as np
import pytest

from face_anything_addon.core.capture_run import CaptureSettings, run_capture
from face_anything_addon.core.frames import Frame
from face_anything_addon.core.marker_picks import PixelPick, sample_pick
from face_anything_addon.core.pipeline import PipelineSettings
from face_anything_addon.core.solve import SolveSettings
from tests.contract_models import contract_metadata, make_model
from tests.synthetic_maps import FOOTAGE_A as A, FOOTAGE_B as B
from tests.synthetic_maps import camera, canonical_footage, face_mesh, posed, prediction, render

SIZE = (128, 128)
K = camera(SIZE, 260.0)
MESH = face_mesh(41)
SCALE = float(np.abs(MESH.rest).max())
BROW = 41 * 12 + 27  # a vertex right of and above the centre
CHEEK = 41 * 26 + 12  # a vertex left of and below the centre


@pytest.fixture(scope="module")
def shot():
    return canonical_footage(MESH, K, SIZE, yaw=0.2)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("m") / "m.onnx", mask=True,
                      metadata=contract_metadata(max_window="2",
                                                 canonical_space="no-such-bundled-space"))


def capture_with(frames, model, picks, region="auto", **kw):
    settings = CaptureSettings(
        pipeline=PipelineSettings(face_region=region, resolution=126, window=2, overlap=1),
        solve=SolveSettings(max_residual=0.03, marker_count=2), provider="CPU",
        grid_vertices=600, pixel_picks=picks)
    seen = []
    cap = run_capture(frames, footage_name="synthetic", footage_size=SIZE, fps=25,
                      frame_count=len(frames), model_path=model, settings=settings,
                      pick_frames={f.number: f for f in frames}, on_picks=seen.append, **kw)
    return cap, seen[0] if seen else None


def xy_of(cap, name):
    return cap.marker_xy[:, cap.marker_names.index(name)].astype(np.float64)


@pytest.mark.parametrize("region", ["auto", "full"])
def test_a_pick_becomes_a_marker_tracked_over_the_shot(shot, model, region):
    renders, frames = shot
    picks = [PixelPick("brow_pick", 3, tuple(renders[2].uv[BROW])),
             PixelPick("cheek_pick", 2, tuple(renders[1].uv[CHEEK]))]
    cap, outcome = capture_with(frames, model, picks, region)
    assert not outcome.rejected
    assert cap.marker_names[-2:] == ["brow_pick", "cheek_pick"]
    assert {"auto_000", "auto_001"} <= set(cap.marker_names)
    for name, vertex in (("brow_pick", BROW), ("cheek_pick", CHEEK)):
        truth = np.array([r.uv[vertex] for r in renders])
        error = np.linalg.norm(xy_of(cap, name) - truth, axis=1)
        assert error.max() < 0.25, (name, error)  # on the pick frame and every other one
        assert cap.marker_visible[:, cap.marker_names.index(name)].all()
    record = cap.settings["marker_picks"]
    assert record["rejected"] == {}
    brow, cheek = record["accepted"]["brow_pick"], record["accepted"]["cheek_pick"]
    assert brow["frame"] == 3 and cheek["frame"] == 2
    assert brow["offset_px"] < 0.25 and cheek["offset_px"] < 0.25
    np.testing.assert_allclose(brow["xy"], renders[2].uv[BROW])
    np.testing.assert_allclose(brow["canonical"], A * MESH.rest[BROW] / SCALE + B, atol=0.01)


def test_picks_off_the_face_or_without_a_frame_are_left_out_with_a_reason(shot, model):
    renders, frames = shot
    picks = [PixelPick("corner", 2, (3.0, 3.0)),  # background
             PixelPick("outside", 2, (500.0, 20.0)),  # beyond the frame
             PixelPick("later", 9, (64.0, 64.0)),  # a frame that is not in the footage
             PixelPick("auto_000", 2, tuple(renders[1].uv[BROW])),  # a name already taken
             PixelPick("good", 2, tuple(renders[1].uv[BROW]))]
    cap, outcome = capture_with(frames, model, picks)
    assert set(outcome.rejected) == {"corner", "outside", "later", "auto_000"}
    assert "not on the face" in outcome.rejected["corner"] or \
        "outside the face region" in outcome.rejected["corner"]
    assert "outside the 128 x 128 frame" in outcome.rejected["outside"]
    assert "frame 9 is not in the footage" in outcome.rejected["later"]
    assert "already exists" in outcome.rejected["auto_000"]
    assert cap.marker_names.count("auto_000") == 1
    assert "good" in cap.marker_names and "corner" not in cap.marker_names
    assert set(cap.settings["marker_picks"]["rejected"]) == set(outcome.rejected)


def test_a_frame_without_a_face_rejects_its_picks(shot, model):
    _, frames = shot
    dark = [Frame(f.number, np.zeros_like(f.image)) if f.number == 4 else f for f in frames]
    cap, outcome = capture_with(dark, model, [PixelPick("p", 4, (64.0, 64.0))])
    assert "no face on frame 4" in outcome.rejected["p"]
    assert "p" not in cap.marker_names


def test_sample_pick_reads_the_canonical_map_bilinearly():
    r = render(MESH, posed(MESH, yaw=0.1), K, SIZE)
    pred = prediction(r, 1, SCALE)
    canonical, why = sample_pick(pred, r.uv[CHEEK])
    assert why is None
    np.testing.assert_allclose(canonical, MESH.rest[CHEEK] / SCALE, atol=0.01)
    canonical, why = sample_pick(pred, (2.0, 2.0))
    assert canonical is None and "not on the face (face confidence 0.00, needs 0.50)" in why
