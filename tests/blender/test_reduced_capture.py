# SPDX-License-Identifier: GPL-3.0-or-later
"""Footage read reduced (as frames above the size limit are): the whole job still measures
everything in footage pixels, and agrees with a full-size run."""
import numpy as np
import pytest

pytest.importorskip("onnxruntime")  # the Blender 4.2 environment has none of its own
pytest.importorskip("onnx")

from face_anything_addon.blender.footage import open_footage  # noqa: E402
from face_anything_addon.blender.job import ReconstructJob  # noqa: E402
from face_anything_addon.core.capture_run import CaptureSettings  # noqa: E402
from face_anything_addon.core.pipeline import PipelineSettings  # noqa: E402
from face_anything_addon.core.solve import project  # noqa: E402
from tests.blender.footage_helpers import H, W, disc_sequence  # noqa: E402
from tests.contract_models import contract_metadata, make_model  # noqa: E402


def test_a_capture_from_reduced_frames_is_in_footage_pixels(empty_file, tmp_path):
    sequence = disc_sequence(tmp_path / "shot")
    model = make_model(tmp_path / "tiny.onnx", mask=True,
                       metadata=contract_metadata(max_window="2"))
    settings = CaptureSettings(pipeline=PipelineSettings(resolution=84), provider="CPU",
                               grid_vertices=300)
    captures = {}
    for side in (0, W // 2):  # full size; half size (48 x 36)
        footage = open_footage(sequence, max_side=side)
        assert footage.size == (W, H)
        captures[side] = ReconstructJob(footage, settings, model).run()
    full, half = captures[0], captures[W // 2]
    assert full.footage_size == half.footage_size == (W, H)
    # the camera and the tracked surface, in footage pixels, as from the full-size frames
    np.testing.assert_allclose(half.camera[:2, 2], full.camera[:2, 2], atol=2.0)
    np.testing.assert_allclose(half.camera[0, 0], full.camera[0, 0], rtol=0.05)

    def centres(capture):
        """Per frame: the median footage position of the mesh's vertices (seen or filled)."""
        return np.array([np.median(project(capture.camera, p), axis=0)
                         for p in capture.positions])

    np.testing.assert_allclose(centres(half), centres(full), atol=1.0)
    # the disc moves 2 footage pixels right per frame: so does the mesh read at half size
    np.testing.assert_allclose(np.diff(centres(half)[:, 0]), 2.0, atol=0.3)
