# SPDX-License-Identifier: GPL-3.0-or-later
"""`training.real_images`: the real-photograph check scores where a model's mask lands and what
box the add-on's face-finding pass draws. Checked on generated stand-ins for the photographs with
the pointwise test model of `tests/contract_models.py`, whose mask is the input's brightness:
a bright rectangle is exactly the "face" it finds."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("bpy")

from tests.contract_models import make_model  # noqa: E402
from training import real_images  # noqa: E402
from training.png import write_png  # noqa: E402


def _photo(path, size, bright=None):
    """A dark (h, w) image, optionally with a bright rectangle (x0, y0, x1, y1)."""
    h, w = size
    img = np.full((h, w, 3), 20, np.uint8)
    if bright is not None:
        x0, y0, x1, y1 = bright
        img[y0:y1, x0:x1] = 230
    write_png(path, img)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    model = make_model(folder / "pointwise.onnx", mask=True)
    _photo(folder / "astronaut.png", (512, 512), real_images.IMAGES["astronaut.png"])
    x0, y0, x1, y1 = real_images.IMAGES["camera.png"]
    half = (x0 + x1) // 2
    # the camera "head" half covered, and a bright thing of the same size beside it
    _photo(folder / "camera.png", (512, 512), (half, y0, half + (x1 - x0), y1))
    _photo(folder / "coffee.png", (400, 600))
    return real_images.score(model, folder, threads=1)


def test_a_mask_on_the_head_scores_full_marks(scored):
    r = scored["astronaut.png"]
    assert r["on_head"] > 0.95
    assert r["box_iou"] > 0.85
    x0, y0, x1, y1 = real_images.IMAGES["astronaut.png"]
    assert r["mask_share"] == pytest.approx((x1 - x0) * (y1 - y0) / 512 ** 2, rel=0.1)


def test_a_mask_half_off_the_head_scores_half(scored):
    r = scored["camera.png"]
    assert 0.4 < r["on_head"] < 0.6
    assert 0.25 < r["box_iou"] < 0.45  # half overlap of equal boxes: IoU 1/3


def test_no_face_means_no_box(scored):
    r = scored["coffee.png"]
    assert r["mask_share"] == 0.0
    assert r["box_found"] == 0.0
    text = real_images.table({"pointwise.onnx": scored})
    assert "| pointwise.onnx | coffee.png | - | 0.000 | none (right) |" in text


def test_box_iou():
    assert real_images.box_iou((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(1 / 3)
    assert real_images.box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0


def test_missing_photographs_are_named(tmp_path):
    with pytest.raises(SystemExit, match="astronaut.png, camera.png, coffee.png"):
        real_images.main(["model.onnx", "--data", str(tmp_path)])
