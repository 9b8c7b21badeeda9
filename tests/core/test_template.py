# SPDX-License-Identifier: GPL-3.0-or-later
"""Template files: round trip and validation."""
import numpy as np
import pytest

from face_anything_addon.core.template import Template, TemplateError


def small_template(**kw) -> Template:
    args = dict(name="quad", canonical_space="test-space",
                canonical=np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32),
                faces=np.array([[0, 1, 2], [0, 2, 3]], np.int32),
                uvs=np.zeros((2, 3, 2), np.float32), centre=np.array([0, 0, 0.1], np.float32),
                scale=0.1, region_names=["skin"], vertex_region=np.zeros(4, np.int16),
                landmark_names=["a", "b"], landmark_vertex=np.array([0, 2], np.int32))
    args.update(kw)
    return Template(**args)


def test_round_trip_and_metric(tmp_path):
    t = small_template(blendshape_names=["jawOpen"],
                       blendshape_deltas=np.ones((1, 4, 3), np.float16))
    back = Template.load(t.save(tmp_path / "t.npz"))
    np.testing.assert_array_equal(back.canonical, t.canonical)
    assert back.landmarks() == {"a": 0, "b": 2} and back.blendshape_names == ["jawOpen"]
    np.testing.assert_allclose(back.metric[2], [0.1, 0.1, 0.1])


@pytest.mark.parametrize("kw,problem", [
    (dict(faces=np.array([[0, 1, 7]], np.int32), uvs=np.zeros((1, 3, 2), np.float32)),
     "faces index missing vertices"),
    (dict(uvs=np.zeros((2, 3), np.float32)), "uvs must be"),
    (dict(landmark_vertex=np.array([0], np.int32)), "differ in number"),
    (dict(scale=0.0), "scale > 0"),
])
def test_invalid_templates_are_refused(kw, problem):
    with pytest.raises(TemplateError, match=problem):
        small_template(**kw)


def test_foreign_file(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    with pytest.raises(TemplateError, match="x.npz is not a version-1 Face Anything template"):
        Template.load(tmp_path / "x.npz")
    (tmp_path / "y.npz").write_text("text")
    with pytest.raises(TemplateError, match="y.npz is not a readable template file"):
        Template.load(tmp_path / "y.npz")
