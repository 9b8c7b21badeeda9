# SPDX-License-Identifier: GPL-3.0-or-later
"""End to end through a real ONNX Runtime session: footage -> pipeline -> solve -> Capture.

The tiny test model passes its normalised input through as the canonical map, so footage whose
colours encode a rendered face's canonical coordinates makes it a perfect canonical predictor:
the recovered 2D tracks can be checked against the rendered ground truth.
"""
import threading

import numpy as np
import pytest

from face_anything_addon.core.capture import Capture
from face_anything_addon.core.capture_run import CaptureSettings, run_capture
from face_anything_addon.core.contract import ContractError
from face_anything_addon.core.pipeline import PipelineError, PipelineSettings
from face_anything_addon.core.solve import SolveSettings, closest_surface_point, project
from tests.contract_models import contract_metadata, make_model
from tests.synthetic_maps import FOOTAGE_A as A, FOOTAGE_B as B
from tests.synthetic_maps import camera, canonical_footage, face_mesh, synthetic_template

SIZE = (128, 128)
K = camera(SIZE, 260.0)
MESH = face_mesh(41)


@pytest.fixture(scope="module")
def shot():
    return canonical_footage(MESH, K, SIZE, yaw=0.25)


@pytest.fixture
def model(tmp_path):
    return make_model(tmp_path / "m.onnx", mask=True, metadata=contract_metadata(
        max_window="2", canonical_space="no-such-bundled-space"))


def test_footage_to_capture_tracks_the_rendered_face(shot, model):
    renders, frames = shot
    seen = []
    settings = CaptureSettings(
        pipeline=PipelineSettings(face_region="full", resolution=126, window=2, overlap=1),
        solve=SolveSettings(max_residual=0.03), provider="CPU", grid_vertices=600)
    cap = run_capture(frames, footage_name="synthetic", footage_size=SIZE, fps=25,
                      frame_count=5, model_path=model, settings=settings, progress=seen.append)
    assert isinstance(cap, Capture) and cap.frame_count == 5
    assert list(cap.frame_numbers) == [1, 2, 3, 4, 5]
    assert 300 < len(cap.rest_vertices) < 900 and cap.template_name == "reference frame 1"
    assert seen and seen[-1].done == 5 and seen[-1].total == 5
    # each grid vertex is a canonical point of the rendered mesh: where should it be?
    template = synthetic_template(MESH)
    errors = []
    for i, r in enumerate(renders):
        xy = project(cap.camera, cap.positions[i])
        errors.append(np.linalg.norm(xy - cap_truth(cap, template, r), axis=1)[cap.visibility[i]])
    assert np.median(np.concatenate(errors)) < 0.5  # footage pixels, through a resize to 126


def cap_truth(cap, template, r):
    """Ground-truth pixel positions of the capture's template vertices in render `r`."""
    truth = []
    for c in cap.template_canonical:
        tri, bary = closest_surface_point(template, (c - B) / A)
        truth.append(bary @ r.uv[tri])
    return np.array(truth)


def test_cancel_returns_none(shot, model):
    _, frames = shot
    cancel = threading.Event()
    cancel.set()
    settings = CaptureSettings(pipeline=PipelineSettings(face_region="full", resolution=126),
                               provider="CPU", grid_vertices=300)
    assert run_capture(frames, footage_name="s", footage_size=SIZE, fps=25, model_path=model,
                       settings=settings, cancel=cancel) is None


def test_bad_inputs_raise_clear_errors(shot, model, tmp_path):
    _, frames = shot
    settings = CaptureSettings(pipeline=PipelineSettings(face_region="full", resolution=126),
                               provider="CPU", grid_vertices=300, reference_frame=99)
    with pytest.raises(PipelineError, match="reference frame 99 is not in the footage"):
        run_capture(frames, footage_name="s", footage_size=SIZE, fps=25, model_path=model,
                    settings=settings)
    (tmp_path / "junk.onnx").write_text("not a model")
    with pytest.raises(ContractError, match="not an ONNX model file"):
        run_capture(frames, footage_name="s", footage_size=SIZE, fps=25,
                    model_path=tmp_path / "junk.onnx", settings=settings)
