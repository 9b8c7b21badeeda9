# SPDX-License-Identifier: GPL-3.0-or-later
"""The capture file: round trip bit-identical, atomic, strict about what it reads."""
import numpy as np
import pytest

from face_anything_addon.core import capture as cap
from face_anything_addon.core.capture import Capture, CaptureError


def make_capture(n=4, v=5, m=2, seed=0) -> Capture:
    rng = np.random.default_rng(seed)
    return Capture(
        template_name="t", canonical_space="test-space",
        rest_vertices=rng.normal(size=(v, 3)).astype(np.float32),
        template_canonical=rng.normal(size=(v, 3)).astype(np.float32),
        faces=np.array([[0, 1, 2], [2, 3, 4]], np.int32),
        uvs=rng.random((2, 3, 2)).astype(np.float32), region_names=["skin", "lips"],
        vertex_region=np.array([0, 0, 1, 1, -1], np.int16)[:v],
        frame_numbers=np.array([1, 2, 4, 9], np.int64)[:n],
        positions=rng.normal(size=(n, v, 3)).astype(np.float32),
        visibility=rng.random((n, v)) > 0.3,
        head_pose=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)),
        intrinsics=np.tile(np.diag([1000.0, 1000.0, 1.0]), (n, 1, 1)),
        camera=np.diag([1000.0, 1000.0, 1.0]), marker_names=["nose_tip", "auto_000"][:m],
        marker_xy=rng.random((n, m, 2)).astype(np.float32) * 100,
        marker_xyz=rng.normal(size=(n, m, 3)).astype(np.float32),
        marker_visible=np.ones((n, m), bool), marker_residual=np.zeros((n, m), np.float32),
        footage_name="shot", footage_size=(1920, 1080), fps=24.0, model_name="tiny",
        contract_version="1", depth_units="metric", settings={"window": 4, "box": [1, 2, 3, 4]})


def test_round_trip_is_bit_identical(tmp_path):
    c = make_capture()
    path = c.save(tmp_path / "shot.capture.npz")
    back = Capture.load(path)
    for name, value in vars(c).items():
        got = getattr(back, name)
        if isinstance(value, np.ndarray):
            assert got.dtype == value.dtype and got.tobytes() == value.tobytes(), name
        else:
            assert got == value, name
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch):
    path = make_capture(seed=1).save(tmp_path / "c.npz")
    before = path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(cap.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        make_capture(seed=2).save(path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_truncated_foreign_and_inconsistent_files_are_refused(tmp_path):
    path = make_capture().save(tmp_path / "c.npz")
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CaptureError, match="cut.npz is not a readable capture file"):
        Capture.load(tmp_path / "cut.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(CaptureError, match="not a Face Anything capture file"):
        Capture.load(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CaptureError, match="not a readable capture file"):
        Capture.load(tmp_path / "text.npz")
    with pytest.raises(CaptureError, match="not found"):
        Capture.load(tmp_path / "absent.npz")
    bad = make_capture()
    bad.positions = bad.positions[:, :3]
    with pytest.raises(CaptureError, match=r"positions has shape \(4, 3, 3\), expected \(4, 5, 3\)"):
        bad.save(tmp_path / "bad.npz")
