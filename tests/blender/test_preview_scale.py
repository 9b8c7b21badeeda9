# SPDX-License-Identifier: GPL-3.0-or-later
"""The preview draws footage-pixel positions onto frames that a reader may have reduced."""
from types import SimpleNamespace

import numpy as np

from face_anything_addon.blender.preview import BOX, MARKER, SEEN, overlay


def test_overlay_scales_footage_pixels_to_a_reduced_frame():
    # a camera with the principal point at the footage pixel (100.5, 60.5) and one vertex on
    # its axis: drawn there on a full frame, at half that on a frame read at half size
    camera = np.array([[500.0, 0, 100.5], [0, 500.0, 60.5], [0, 0, 1]])
    capture = SimpleNamespace(camera=camera, positions=np.array([[[0.0, 0.0, 1.0]]]),
                              visibility=np.array([[True]]),
                              marker_xy=np.array([[[40.5, 20.5]]]))
    full = overlay(np.zeros((120, 200, 3), np.float32), capture, 0)
    half = overlay(np.zeros((60, 100, 3), np.float32), capture, 0, (0.5, 0.5))
    np.testing.assert_allclose(full[60, 100], SEEN, atol=1e-6)
    np.testing.assert_allclose(half[30, 50], SEEN, atol=1e-6)
    np.testing.assert_allclose(full[20, 40], MARKER, atol=1e-6)
    np.testing.assert_allclose(half[10, 20], MARKER, atol=1e-6)



def test_overlay_outlines_the_face_box_the_network_saw():
    camera = np.array([[500.0, 0, 100.5], [0, 500.0, 60.5], [0, 0, 1]])
    capture = SimpleNamespace(camera=camera, positions=np.array([[[0.0, 0.0, 1.0]]]),
                              visibility=np.array([[True]]),
                              marker_xy=np.array([[[40.5, 20.5]]]),
                              settings={"face_boxes": [[10.0, 6.0, 180.0, 110.0]]})
    full = overlay(np.zeros((120, 200, 3), np.float32), capture, 0)
    half = overlay(np.zeros((60, 100, 3), np.float32), capture, 0, (0.5, 0.5))
    for image, (x0, y0, x1, y1) in ((full, (10, 6, 180, 110)), (half, (5, 3, 90, 55))):
        edge = np.zeros(image.shape[:2], bool)
        edge[[y0, y1], x0:x1 + 1] = edge[y0:y1 + 1, [x0, x1]] = True
        drawn = np.isclose(image, BOX).all(-1)
        assert (drawn == edge).all()  # the outline, nothing inside or outside it
    # a box partly outside the frame: the part inside is drawn, nothing wraps around
    capture.settings["face_boxes"] = [[-20.0, -10.0, 50.0, 40.0]]
    image = overlay(np.zeros((120, 200, 3), np.float32), capture, 0)
    drawn = np.isclose(image, BOX).all(-1)
    assert drawn[40, 0:51].all() and drawn[0:41, 50].all() and drawn.sum() == 51 + 40

    # wider lines, inside the box: a strip shrunk by keeping every 4th pixel still shows them
    capture.settings["face_boxes"] = [[10.0, 6.0, 180.0, 110.0]]
    image = overlay(np.zeros((120, 200, 3), np.float32), capture, 0, line=4)
    drawn = np.isclose(image, BOX).all(-1)
    assert drawn[6:10, 10:181].all() and drawn[6:111, 177:181].all()
    assert not drawn[10:107, 14:177].any()
    for offset in range(4):
        shrunk = drawn[offset::4, offset::4]
        assert shrunk.any(1)[2:27].all() and shrunk.any(0)[3:45].all()  # every row, column
