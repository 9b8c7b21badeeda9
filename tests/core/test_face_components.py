# SPDX-License-Identifier: GPL-3.0-or-later
"""core.face_components: the connected parts of a face mask and which of them show the face; and
the automatic face region that uses them (a sleeve the model takes for face is left out)."""
from collections import deque

import numpy as np
import pytest

from face_anything_addon.core.capture_run import CaptureSettings, capture_warnings, run_capture
from face_anything_addon.core.contract import describe_model
from face_anything_addon.core.face_components import (
    CELLS, LOW_CELLS, MIN_COVERAGE, clean_face, connected_parts, coverage, face_pixels,
    off_face_warning, part_boxes)
from face_anything_addon.core.frames import Frame
from face_anything_addon.core.pipeline import Pipeline, PipelineSettings, face_weight
from face_anything_addon.core.session import open_session
from face_anything_addon.core.solve import SolveSettings
from tests.contract_models import contract_metadata, make_model


def reference_parts(valid: np.ndarray) -> list[set]:
    """4-connected parts by breadth-first search (slow, obvious)."""
    h, w = valid.shape
    seen, parts = np.zeros_like(valid), []
    for y, x in zip(*np.nonzero(valid)):
        if seen[y, x]:
            continue
        part, todo = set(), deque([(y, x)])
        seen[y, x] = True
        while todo:
            cy, cx = todo.popleft()
            part.add((cy, cx))
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < h and 0 <= nx < w and valid[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    todo.append((ny, nx))
        parts.append(part)
    return parts


@pytest.mark.parametrize("density", [0.3, 0.55, 0.7])
def test_connected_parts_are_those_a_search_finds(density):
    rng = np.random.default_rng(int(density * 100))
    valid = rng.random((23, 31)) < density
    labels, n = connected_parts(valid)
    expected = reference_parts(valid)
    assert n == len(expected) and labels.max() == n and (labels[~valid] == 0).all()
    got = [set(zip(*np.nonzero(labels == k))) for k in range(1, n + 1)]
    assert sorted(map(sorted, got)) == sorted(map(sorted, expected))


def test_a_spiral_and_an_empty_mask():
    valid = np.zeros((21, 21), bool)  # one long winding part: many steps for min-propagation
    valid[1:20:4, 1:20] = True
    valid[1:18, 19] = valid[3:20, 1] = True
    valid[3:6, 1] = False
    labels, n = connected_parts(valid)
    assert n == len(reference_parts(valid))
    assert connected_parts(np.zeros((4, 5), bool))[1] == 0


def test_coverage_counts_the_canonical_cells_of_each_part():
    labels = np.array([[1, 1, 0, 2, 2, 2]])
    canonical = np.zeros((1, 6, 3), np.float32)
    canonical[0, 1] = (0.99, -0.99, 0.0)  # another cell than (0, 0, 0)
    canonical[0, 3:] = (0.5, 0.5, 0.5)  # one cell, three pixels
    canonical[0, 5, 0] = 7.0  # outside the cube: the border cell
    assert coverage(canonical, labels, 2).tolist() == [2, 2]
    canonical[0, 4] = np.nan  # a model's nan: counted in a cell, never a crash
    assert coverage(canonical, labels, 2).tolist() == [2, 3]
    assert CELLS == 8
    assert part_boxes(labels, 2).tolist() == [[0, 0, 2, 1], [3, 0, 6, 1]]


def test_the_parts_showing_the_face_are_kept_and_a_larger_sleeve_is_not():
    h, w = 50, 70
    yy, xx = np.mgrid[0:h, 0:w]
    canonical = np.full((h, w, 3), 0.3, np.float32)
    face = (yy - 12) ** 2 + (xx - 12) ** 2 < 10 ** 2  # canonical x, y spread over the face
    canonical[..., 0] = (xx - 12) / 10.0
    canonical[..., 1] = (yy - 12) / 10.0
    sleeve = (yy >= 30) & (xx >= 35)  # larger, one cheek's coordinates all over
    canonical[sleeve] = (0.5, 0.1, 0.2)
    assert (face_pixels(face | sleeve, canonical) == face).all()
    # a face cut in two by a finger keeps both halves
    finger = face & (np.abs(xx - 12) <= 1)
    halves = face & ~finger
    assert connected_parts(halves | sleeve)[1] == 3
    assert (face_pixels(halves | sleeve, canonical) == halves).all()
    # a forehead cut off by a strand of hair shows little by itself, but it is next to the face
    strand = face & (yy == 5)
    forehead, rest = coverage(canonical, *connected_parts(face & ~strand))
    assert forehead < 0.5 * rest  # left out by its coverage alone
    assert (face_pixels((face & ~strand) | sleeve, canonical) == face & ~strand).all()
    # a sleeve that reaches near the face's box is taken for part of it (as any part was before)
    near = (yy >= 25) & (xx >= 26)
    assert face_pixels(face | near, canonical)[near].all()
    # one part is the face whatever it shows
    assert (face_pixels(sleeve, canonical) == sleeve).all()


def test_a_face_too_small_to_tell_keeps_every_part():
    """Faces a few pixels across show a few cells at most: no part is left out."""
    valid = np.zeros((30, 30), bool)
    valid[2:5, 2:5] = valid[20:24, 20:24] = True
    canonical = np.zeros((30, 30, 3), np.float32)
    canonical[2:5, 2:5, 0] = np.linspace(-1, 1, 3)  # 3 cells against 1
    assert (face_pixels(valid, canonical) == valid).all()
    assert MIN_COVERAGE > 3


def disc_and_sleeve(count: int = 3) -> list[Frame]:
    """The tiny model's canonical output is its normalised input and its mask is > 0.5 where
    the input is bright: a colour-graded disc shows many canonical cells, a larger grey square
    (the sleeve) one."""
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    u, v = (xx - 45) / 15, (yy - 50) / 15
    frames = []
    for i in range(count):
        img = np.full((h, w, 3), 0.1, np.float32)
        img[70:115, 90:155] = 0.9  # the sleeve
        disc = u ** 2 + v ** 2 < 1
        img[disc] = np.stack([0.6 + 0.4 * u, 0.6 + 0.4 * v, np.ones_like(u)], -1)[disc]
        frames.append(Frame(i + 1, img))
    return frames


def test_the_automatic_face_region_leaves_out_what_does_not_show_a_face(tmp_path):
    """The face region is the disc's, not the box around the disc and the sleeve."""
    session = open_session(describe_model(make_model(tmp_path / "m.onnx", mask=True)), "CPU")
    settings = PipelineSettings(window=1, box_margin=0.0, box_smoothing=0.0)
    boxes = Pipeline(session, settings).detect_boxes(disc_and_sleeve(), total=3)
    for box in boxes.values():
        x0, y0, x1, y1 = box
        assert 26 <= x0 <= 33 and 57 <= x1 <= 64 and 31 <= y0 <= 38 and 62 <= y1 <= 69, box


def test_predicted_masks_lose_the_parts_that_show_no_face(tmp_path):
    """On the window pass too (here the whole frame): the sleeve's mask is 0, the disc's kept."""
    session = open_session(describe_model(make_model(tmp_path / "m.onnx", mask=True)), "CPU")
    settings = PipelineSettings(face_region="full", resolution=84, window=2)
    preds = list(Pipeline(session, settings).run(disc_and_sleeve(), total=3))
    for p in preds:
        centre = p.crop.to_input(np.array([[45.0, 50.0], [122.0, 92.0]]))
        (dx, dy), (sx, sy) = np.floor(centre).astype(int)
        assert p.mask[dy, dx] > 0.5 and p.mask[sy, sx] == 0.0
        (x0, y0), (x1, y1) = np.round(p.crop.to_input(np.array([[92.0, 72.0], [153.0, 113.0]])))
        assert (p.mask[int(y0):int(y1), int(x0):int(x1)] == 0.0).all()  # inside the sleeve
    mask = np.array([[0.9, 0.9, 0.2, 0.8]])
    canonical = np.zeros((1, 4, 3), np.float32)
    assert clean_face(mask, canonical) == (mask, 1)  # two parts, one cell each: too little
    # to tell


def test_a_model_without_a_mask_has_its_face_weight_cleaned_too(tmp_path):
    """Without a mask output the face weight comes from canonical confidence (the tiny model's
    is high where the input is bright): the sleeve's weight is 0 too, the disc's kept."""
    session = open_session(describe_model(make_model(tmp_path / "m.onnx")), "CPU")
    assert not session.description.has_mask
    settings = PipelineSettings(face_region="full", resolution=84, window=2)
    preds = list(Pipeline(session, settings).run(disc_and_sleeve(), total=3))
    for p in preds:
        assert p.mask is None
        centre = p.crop.to_input(np.array([[45.0, 50.0], [122.0, 92.0]]))
        (dx, dy), (sx, sy) = np.floor(centre).astype(int)
        assert p.face_weight[dy, dx] > 0.5 and p.face_weight[sy, sx] == 0.0
        raw = face_weight(None, p.canonical_conf)
        assert raw[sy, sx] > 0.5  # the network's own weight took the sleeve for face


def test_clean_face_counts_the_canonical_cells_the_face_covers():
    face = np.zeros((40, 60), bool)
    face[5:25, 5:25] = True
    sleeve = np.zeros_like(face)
    sleeve[20:38, 35:58] = True
    canonical = np.zeros((40, 60, 3), np.float32)
    grid = np.linspace(-0.99, 0.99, 20)
    canonical[5:25, 5:25, 0] = grid[None, :]
    canonical[5:25, 5:25, 1] = grid[:, None]  # the face spans 8 x 8 cells, the sleeve one
    weight = np.where(face | sleeve, 0.9, 0.1).astype(np.float32)
    cleaned, cells = clean_face(weight, canonical)
    assert cells == CELLS * CELLS
    assert (cleaned[sleeve] == 0).all() and (cleaned[face] == 0.9).all()
    nothing = np.full((40, 60), 0.1, np.float32)
    assert clean_face(nothing, canonical) == (nothing, 0)


def test_a_shot_whose_face_region_shows_little_of_a_face_is_told():
    assert off_face_warning([]) is None
    assert off_face_warning([71, 16, 60]) is None  # one frame of three: a small face, a blink
    assert off_face_warning([16, 10, 60, 70]) is None  # half
    warning = off_face_warning([16, 12, 60])
    assert warning.startswith("On 2 of 3 frames the network sees little of a face in the "
                              "face region")
    assert f"a median of 16 of the {CELLS ** 3} canonical cells" in warning
    assert f"a face shows {LOW_CELLS} or more" in warning and "box or a track" in warning


def graded_disc(number: int, spread: float) -> Frame:
    """A disc whose colour gradient, the tiny model's canonical map, spans `spread` of the
    canonical cube across it (1: about 8 x 8 cells; 0.1: about one)."""
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    u, v = (xx - 80) / 30, (yy - 60) / 30
    img = np.full((h, w, 3), 0.1, np.float32)
    disc = u ** 2 + v ** 2 < 1
    colour = np.stack([0.5 + 0.2 * spread * u, 0.5 + 0.2 * spread * v, np.full_like(u, 0.75)], -1)
    img[disc] = colour[disc]
    return Frame(number, img)


def test_a_capture_records_the_face_s_cells_and_warns_off_the_face(tmp_path):
    """A disc graded over many canonical cells is a face to the tiny model; on the frames where
    it is nearly one colour (a network "finding" a face on a plain object) the face covers a few
    cells, and when that is most of the shot the finished capture says so."""
    model = make_model(tmp_path / "m.onnx", mask=True,
                       metadata=contract_metadata(canonical_space="no-such-bundled-space"))
    settings = CaptureSettings(pipeline=PipelineSettings(face_region="full", resolution=84),
                               solve=SolveSettings(max_residual=0.5), provider="CPU",
                               grid_vertices=200, mesh="REFERENCE", reference_frame=1)

    def capture(spreads):
        frames = [graded_disc(i + 1, spread) for i, spread in enumerate(spreads)]
        return run_capture(frames, footage_name="disc", footage_size=(160, 120), fps=25,
                           frame_count=len(frames), model_path=model, settings=settings)

    face = capture([1.0, 1.0, 0.1, 1.0])
    cells = face.settings["face_cells"]
    assert len(cells) == 4 and min(cells[:2] + cells[3:]) >= LOW_CELLS and cells[2] < 10
    assert capture_warnings(face) == []  # one plain frame of four
    plain = capture([1.0, 0.1, 0.1, 0.1])
    assert plain.settings["face_cells"][1:] == cells[2:3] * 3
    (warning,) = capture_warnings(plain)
    assert warning.startswith("On 3 of 4 frames") and "may be off the face" in warning
