# SPDX-License-Identifier: GPL-3.0-or-later
"""Face box files (core/face_boxes.py): what --face-region BOXES.csv reads and a capture writes."""
from types import SimpleNamespace

import numpy as np
import pytest

from face_anything_addon.core.face_boxes import FaceBoxesError, read_face_boxes, write_face_boxes


def test_a_capture_s_boxes_are_written_and_read_back(tmp_path):
    capture = SimpleNamespace(footage_name="shot", footage_size=(640, 480),
                              frame_numbers=np.array([3, 4, 7]),
                              settings={"face_boxes": [[10.0, 20.5, 110.25, 140.0],
                                                       [12.0, 21.0, 112.0, 141.0],
                                                       [-5.125, 0.0, 95.0, 120.0]]})
    path = write_face_boxes(capture, tmp_path / "shot_face_boxes.csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# Face Anything face boxes: footage shot, 640x480 px")
    assert lines[1] == "frame,x0,y0,x1,y1" and lines[2] == "3,10.000,20.500,110.250,140.000"
    boxes = read_face_boxes(path)
    assert sorted(boxes) == [3, 4, 7]
    np.testing.assert_allclose([boxes[n] for n in (3, 4, 7)], capture.settings["face_boxes"])
    with pytest.raises(FaceBoxesError, match="no face boxes"):
        write_face_boxes(SimpleNamespace(settings={}, footage_size=(1, 1)), tmp_path / "x.csv")


def test_hand_written_files_and_their_mistakes(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("# from another tracker\n\n 5, 1, 2, 30, 40 \n6,1,2,30.5,40\n")
    assert read_face_boxes(path) == {5: (1.0, 2.0, 30.0, 40.0), 6: (1.0, 2.0, 30.5, 40.0)}
    for text, said in (("frame,x0,y0,x1,y1\n", "no boxes in it"),
                       ("5,1,2,30,40\nframe,x0,y0,x1,y1\n", "line 2 ('frame,x0,y0,x1,y1')"),
                       ("5,1,2,30\n", "line 1"), ("5.5,1,2,30,40\n", "line 1"),
                       ("5,1,2,30,nan\n", "line 1"), ("5,30,2,1,40\n", "x1 > x0"),
                       ("5,1,2,30,40\n5,1,2,30,40\n", "line 2 ('5,1,2,30,40'): each line")):
        path.write_text(text)
        with pytest.raises(FaceBoxesError, match=said.replace("(", r"\(").replace(")", r"\)")):
            read_face_boxes(path)
    with pytest.raises(FaceBoxesError, match="cannot read it"):
        read_face_boxes(tmp_path / "missing.csv")
