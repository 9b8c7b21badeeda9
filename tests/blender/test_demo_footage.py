# SPDX-License-Identifier: GPL-3.0-or-later
"""The bundled model on the bundled demo clip: what `build.py demo` does, on a few frames."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")  # Blender 4.2's environment: see test_reconstruct_installed

from face_anything_addon.blender.footage import open_footage  # noqa: E402
from face_anything_addon.blender.job import ReconstructJob  # noqa: E402
from face_anything_addon.core.capture_run import (  # noqa: E402
    DEFAULT_MODEL, CaptureSettings, bundled_templates)
from face_anything_addon.core.contract import describe_model  # noqa: E402
from face_anything_addon.core.template import Template  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "demo" / "footage"


def test_bundled_model_matches_the_bundled_template():
    model = describe_model(DEFAULT_MODEL)
    assert model.depth_units == "relative" and model.patch_size == 14  # see the model card
    path = bundled_templates()[model.canonical_space]
    assert Template.load(path).vertex_count == 4766


def test_bundled_model_tracks_the_demo_clip(empty_file):
    footage = open_footage(DEMO, (1, 6))
    job = ReconstructJob(footage, CaptureSettings(provider="CPU"), DEFAULT_MODEL, fps=25)
    capture = job.run()
    assert capture.frame_count == 6 and capture.template_name
    assert capture.positions.shape == (6, 4766, 3) and np.isfinite(capture.positions).all()
    assert len(capture.marker_names) >= 30
    # the expression fit (on by default): the template's 52 ARKit weights per frame, in [0, 1]
    template = Template.load(bundled_templates()[describe_model(DEFAULT_MODEL).canonical_space])
    assert len(template.blendshape_names) == 52
    assert capture.expression_names == template.blendshape_names
    w = capture.expression_weights
    assert w.shape == (6, 52) and np.isfinite(w).all() and w.min() >= 0 and w.max() <= 1
    seen = capture.visibility.mean(1)
    # the face is found and tracked in every frame; the CPU-trained default model matches only a
    # few percent of the template's vertices (model card), the rest is filled
    assert (seen > 0.03).all(), seen
    # the tracked face sits where the demo's face is: in the upper middle of the frame
    xy = capture.marker_xy[:, capture.marker_names.index("nose_tip")]
    assert np.all((xy[:, 0] > 150) & (xy[:, 0] < 330) & (xy[:, 1] > 40) & (xy[:, 1] < 200)), xy
