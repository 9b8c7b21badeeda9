# SPDX-License-Identifier: GPL-3.0-or-later
"""Lens distortion (Blender's tracking models): the formulas, their inverses, undistorted images
and frames, and a capture of distorted footage (a real ONNX Runtime session) that undoes it.
Blender's own undistortion is the reference in tests/blender/test_clip_distortion.py."""
import numpy as np
import pytest

from face_anything_addon.core.capture_run import (CaptureSettings, run_capture,
                                                   undistorted_region)
from face_anything_addon.core.contract import describe_model
from face_anything_addon.core.frames import Frame
from face_anything_addon.core.lens_distortion import (
    LensDistortion, LensDistortionError, MODELS, SamplingMap, UndistortedFrames, footage_xy)
from face_anything_addon.core.marker_picks import PixelPick
from face_anything_addon.core.pipeline import Pipeline, PipelineSettings
from face_anything_addon.core.session import open_session
from face_anything_addon.core.solve import SolveSettings, closest_surface_point, project
from tests.contract_models import contract_metadata, make_model
from tests.synthetic_maps import FOOTAGE_A, FOOTAGE_B, camera, canonical_footage, face_mesh
from tests.synthetic_maps import synthetic_template

SIZE = (160, 120)
LENSES = {"POLYNOMIAL": (-0.3, 0.08, -0.01), "DIVISION": (-0.25, 0.04), "NUKE": (-0.12, 0.03),
          "BROWN": (-0.25, 0.06, -0.01, 0.002, 0.004, -0.003)}


def lens(model="POLYNOMIAL", coefficients=None, size=SIZE, focal=150.0, principal=(83.0, 57.0)):
    return LensDistortion(model, coefficients or LENSES[model], focal, principal, size)


def grid(size=SIZE, step=7):
    x, y = np.meshgrid(np.arange(2.0, size[0] - 1, step), np.arange(2.0, size[1] - 1, step))
    return np.stack([x.ravel(), y.ravel()], -1)


def test_polynomial_distortion_is_blender_s_formula_around_its_principal_point():
    lp = lens("POLYNOMIAL", (-0.3, 0.08, -0.01))
    p = np.array([[20.0, 30.0], [83.0, SIZE[1] - 57.0]])  # the second: the principal point
    # by hand: Blender's coordinates are y up from the bottom edge
    x, y = (20.0 - 83.0) / 150.0, (SIZE[1] - 30.0 - 57.0) / 150.0
    r2 = x * x + y * y
    radial = 1 - 0.3 * r2 + 0.08 * r2 ** 2 - 0.01 * r2 ** 3
    want = (x * radial * 150.0 + 83.0, SIZE[1] - (y * radial * 150.0 + 57.0))
    got = lp.distort(p)
    np.testing.assert_allclose(got[0], want, atol=1e-9)
    np.testing.assert_allclose(got[1], p[1], atol=1e-9)  # the centre of the lens stays
    # barrel distortion (k1 < 0) pulls points towards the centre
    assert np.hypot(*(got[0] - p[1])) < np.hypot(*(p[0] - p[1]))


def test_the_other_models_by_hand():
    p = np.array([[150.0, 10.0]])
    x, y = (150.0 - 83.0) / 150.0, (SIZE[1] - 10.0 - 57.0) / 150.0
    r2 = x * x + y * y
    d = lens("DIVISION").distort(p)[0]  # distorted = x / (1 + k1 r^2 + k2 r^4)
    radial = 1 - 0.25 * r2 + 0.04 * r2 ** 2
    np.testing.assert_allclose(d, (x / radial * 150 + 83, SIZE[1] - (y / radial * 150 + 57)))
    k1, k2, k3, k4, p1, p2 = LENSES["BROWN"]
    b = lens("BROWN").distort(p)[0]
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3 + k4 * r2 ** 4
    bx = x * radial + p1 * (r2 + 2 * x * x) + 2 * p2 * x * y
    by = y * radial + p2 * (r2 + 2 * y * y) + 2 * p1 * x * y
    np.testing.assert_allclose(b, (bx * 150 + 83, SIZE[1] - (by * 150 + 57)))
    # NUKE is defined from the distorted side, in half the longer side from the principal point
    u = lens("NUKE").undistort(p)[0]
    half = max(SIZE) / 2
    xd, yd = (150.0 - 83.0) / half, (SIZE[1] - 10.0 - 57.0) / half
    rd2 = xd * xd + yd * yd
    radial = 1 - 0.12 * rd2 + 0.03 * rd2 ** 2
    np.testing.assert_allclose(u, (xd / radial * half + 83, SIZE[1] - (yd / radial * half + 57)))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_undistort_inverts_distort_for_every_model(model):
    lp = lens(model)
    p = grid()
    there = lp.undistort(p)
    assert np.isfinite(there).all()
    np.testing.assert_allclose(lp.distort(there), p, atol=1e-6)
    np.testing.assert_allclose(lp.undistort(lp.distort(p)), p, atol=1e-6)
    assert np.abs(there - p).max() > 1.0  # it does move points
    # shapes: a single point, and (N, M, 2) arrays as captures hold them, nan kept
    assert lp.distort((40.0, 50.0)).shape == (2,)
    cube = np.full((3, 4, 2), np.nan)
    cube[1, 2] = (40.0, 50.0)
    out = lp.distort(cube)
    assert out.shape == (3, 4, 2) and np.isnan(out[0]).all()
    np.testing.assert_allclose(out[1, 2], lp.distort((40.0, 50.0)))


def test_a_lens_without_distortion_changes_nothing():
    flat = lens("BROWN", (0.0,) * 6)
    assert flat.is_identity
    p = grid()
    np.testing.assert_allclose(flat.distort(p), p, atol=1e-12)
    image = np.random.default_rng(0).random((SIZE[1], SIZE[0], 3)).astype(np.float32)
    np.testing.assert_allclose(flat.undistort_image(image), image, atol=1e-5)


def smooth(x, y):
    """A smooth colour image as a function of (undistorted) footage coordinates."""
    return np.stack([0.5 + 0.4 * np.sin(x / 13.0) * np.cos(y / 11.0), x / SIZE[0],
                     y / SIZE[1]], -1).astype(np.float32)


def shot_through(lp, size=SIZE, scale=1.0):
    """The footage `lp` would record of `smooth` (each pixel shows what the lens bent onto it),
    at `scale` image pixels per footage pixel."""
    w, h = int(round(size[0] * scale)), int(round(size[1] * scale))
    v, u = np.mgrid[0:h, 0:w]
    p = np.stack([(u + 0.5) / scale, (v + 0.5) / scale], -1)
    q = lp.undistort(p)
    return smooth(q[..., 0], q[..., 1])


@pytest.mark.parametrize("model", sorted(MODELS))
def test_an_undistorted_frame_shows_the_scene_as_a_pinhole_would(model):
    lp = lens(model)
    footage = shot_through(lp)
    fixed = lp.undistort_image(footage)
    v, u = np.mgrid[0:SIZE[1], 0:SIZE[0]]
    pinhole = smooth(u + 0.5, v + 0.5)
    inner = np.s_[12:-12, 12:-12]
    before = np.abs(footage - pinhole)[inner].mean()
    after = np.abs(fixed - pinhole)[inner].mean()
    assert after < min(1e-3, 0.1 * before)  # bilinear sampling error only
    assert fixed.dtype == np.float32 and fixed.shape == footage.shape


def test_frames_reduced_by_the_reader_are_undistorted_at_their_own_scale():
    lp = lens("POLYNOMIAL")
    footage = shot_through(lp, scale=0.5)
    frame = Frame(7, footage, footage_size=SIZE)
    fixed = lp.undistort_frame(frame)
    assert fixed.number == 7 and fixed.footage_size == SIZE and fixed.scale == (0.5, 0.5)
    h, w = footage.shape[:2]
    v, u = np.mgrid[0:h, 0:w]
    pinhole = smooth((u + 0.5) / 0.5, (v + 0.5) / 0.5)
    assert np.abs(fixed.image - pinhole)[8:-8, 8:-8].mean() < 4e-3


def test_pixels_the_lens_brings_from_outside_the_frame_are_black():
    strong = lens("POLYNOMIAL", (0.5, 0.0, 0.0))  # pincushion: the corners come from outside
    image = np.ones((SIZE[1], SIZE[0], 3), np.float32)
    fixed = strong.undistort_image(image)
    assert (fixed[0, 0] == 0).all() and (fixed[-1, -1] == 0).all()
    assert (fixed[SIZE[1] // 2, SIZE[0] // 2] == 1).all()


class Reader:
    """A frame source like blender.footage.Footage: size, reduced(n), its own attributes."""

    def __init__(self, frames, reduction=1):
        self.frames, self.reduction, self.size, self.name = frames, reduction, SIZE, "reader"

    def __iter__(self):
        return iter(self.frames)

    def __len__(self):
        return len(self.frames)

    def reduced(self, factor):
        return Reader(self.frames, factor)


def test_undistorted_frames_wrap_any_source_and_keep_its_reduction():
    lp = lens("NUKE")
    frames = [Frame(i, shot_through(lp)) for i in (1, 2)]
    wrapped = UndistortedFrames(Reader(frames), lp)
    assert len(wrapped) == 2 and wrapped.size == SIZE and wrapped.name == "reader"
    out = list(wrapped)
    assert [f.number for f in out] == [1, 2]
    np.testing.assert_allclose(out[0].image, lp.undistort_image(frames[0].image))
    smaller = wrapped.reduced(2)
    assert isinstance(smaller, UndistortedFrames) and smaller._frames.reduction == 2
    # one sampling map per frame size, shared with the reduced passes, gone with the wrapper
    assert list(wrapped._remaps) == [(SIZE, (1.0, 1.0))] and smaller._remaps is wrapped._remaps
    assert len(list(UndistortedFrames(frames, lp).reduced(3))) == 2  # a list cannot reduce
    with pytest.raises(AttributeError):
        wrapped.no_such_attribute


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_region_of_an_undistorted_frame_is_that_part_of_the_whole(model, monkeypatch):
    lp = lens(model)
    footage = shot_through(lp, scale=0.5)
    whole = lp.undistort_image(footage, (0.5, 0.5))  # one tile: the map made in one piece
    monkeypatch.setattr(SamplingMap, "TILE", 16)  # 80 x 60: 5 x 4 tiles
    remaps = {}
    part = lp.undistort_image(footage, (0.5, 0.5), remaps, (10, 7, 50, 41))
    np.testing.assert_array_equal(part, whole[7:41, 10:50])
    (made,) = remaps.values()  # only the tiles under the region are made
    assert made.built.sum() == 3 * 4 and made.built[0:3, 0:4].all()
    for region in ((0, 0, 80, 60), (10, 7, 50, 41), (71, 52, 80, 60), (0, 30, 1, 31),
                   (15, 15, 17, 17)):
        x0, y0, x1, y1 = region
        part = lp.undistort_image(footage, (0.5, 0.5), remaps, region)
        np.testing.assert_array_equal(part, whole[y0:y1, x0:x1])
    assert len(remaps) == 1 and made.built.all()  # the regions share one sampling map
    with pytest.raises(LensDistortionError, match="not inside the 80 x 60 image"):
        lp.undistort_image(footage, (0.5, 0.5), remaps, (70, 10, 81, 20))


def undistorted_sizes(monkeypatch) -> list:
    """(h, w) of every image `LensDistortion.undistort_image` makes from now on (the test's)."""
    made, real = [], LensDistortion.undistort_image

    def counted(self, image, *args, **kwargs):
        out = real(self, image, *args, **kwargs)
        made.append(out.shape[:2])
        return out

    monkeypatch.setattr(LensDistortion, "undistort_image", counted)
    return made


def test_the_pipeline_undistorts_only_the_pixels_its_crops_read(model, monkeypatch):
    """A capture's pipeline reads UndistortedFrames through `crop_pixels`: its network input is
    what the frames undistorted whole give, at the cost of the face crop's pixels."""
    lp = lens("DIVISION")
    frames = [Frame(i, shot_through(lp)) for i in (1, 2, 3)]
    box = (50.0, 30.0, 110.0, 90.0)
    settings = PipelineSettings(face_region=box, resolution=28, window=2, overlap=1,
                                camera_from_whole_frames=False)
    session = open_session(describe_model(model), "CPU")
    fed = []

    class Spy(Pipeline):  # the network's input, window by window
        def _prepare(self, frame, crop, batch, pixels):
            super()._prepare(frame, crop, batch, pixels)
            fed.append(batch.items[-1].tensor.copy())

    made = undistorted_sizes(monkeypatch)
    wrapped = UndistortedFrames(Reader(frames), lp)
    lazily = [(p.number, p.depth) for p in Spy(session, settings).run(wrapped, 3)]
    monkeypatch.undo()
    by_crop, fed[:] = fed[:], []
    whole = [(p.number, p.depth) for p in
             Spy(session, settings).run([lp.undistort_frame(f) for f in frames], 3)]
    assert [n for n, _ in lazily] == [1, 2, 3]
    for a, b in zip(by_crop, fed):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for (_, a), (_, b) in zip(lazily, whole):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    # each frame once, and only about the 60 x 60 box (and the filter's margin) of 160 x 120
    assert len(made) == 3 and max(h * w for h, w in made) < 0.4 * SIZE[0] * SIZE[1]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_box_on_the_footage_as_shot_is_bounded_in_the_undistorted_frame(model):
    """A face box drawn on distorted footage -> the box bounding its outline undistorted (its
    edges bend): within a tenth of a pixel of a densely sampled outline's bounds."""
    lp = lens(model)
    boxes = np.array([[50.0, 30.0, 110.0, 90.0], [2.0, 3.0, 158.0, 117.0]])
    got = lp.undistort_boxes(boxes)
    t = np.linspace(0, 1, 400)
    for box, out in zip(boxes, got):
        x0, y0, x1, y1 = box
        outline = np.concatenate([np.stack([x0 + (x1 - x0) * t, np.full_like(t, y)], -1)
                                  for y in (y0, y1)] +
                                 [np.stack([np.full_like(t, x), y0 + (y1 - y0) * t], -1)
                                  for x in (x0, x1)])
        q = lp.undistort(outline)
        np.testing.assert_allclose(out, [*q.min(0), *q.max(0)], atol=0.1)
    assert np.abs(got[1] - boxes[1]).max() > 2  # the lens does move the frame's edge
    np.testing.assert_allclose(lp.undistort_boxes(boxes[0]), got[0])  # one box alone
    flat = LensDistortion("POLYNOMIAL", (0.0, 0.0, 0.0), 150.0, (83.0, 57.0), SIZE)
    np.testing.assert_allclose(flat.undistort_boxes(boxes), boxes, atol=1e-6)


def test_a_face_region_drawn_as_shot_is_taken_into_the_undistorted_frame():
    lp = lens("BROWN")
    box = (50.0, 30.0, 110.0, 90.0)
    per_frame = ((4, *box), (5, 52.0, 30.0, 112.0, 90.0))
    assert undistorted_region("auto", lp) == "auto" and undistorted_region(box, None) == box
    np.testing.assert_allclose(undistorted_region(box, lp), lp.undistort_boxes(box))
    moved = undistorted_region(per_frame, lp)
    assert [row[0] for row in moved] == [4, 5] and all(isinstance(r[0], int) for r in moved)
    np.testing.assert_allclose([row[1:] for row in moved],
                               lp.undistort_boxes([row[1:] for row in per_frame]))


@pytest.mark.parametrize("region", [(50.0, 30.0, 110.0, 90.0),
                                    tuple((i, 50.0, 30.0, 110.0, 90.0) for i in (1, 2, 3))])
def test_a_capture_undistorts_no_whole_frame_for_a_face_box_and_a_reference_mesh(model,
                                                                                  monkeypatch,
                                                                                  region):
    """The reference frame of a grid mesh is undistorted alone (not the frames before it), so
    is a pick's frame, and every pass reads face crops only (one box, or a box per frame)."""
    lp = lens("POLYNOMIAL")
    frames = [Frame(i, shot_through(lp)) for i in (1, 2, 3)]
    settings = CaptureSettings(
        pipeline=PipelineSettings(face_region=region, resolution=28,
                                  window=2, overlap=1, camera_from_whole_frames=False),
        solve=SolveSettings(max_residual=0.03), provider="CPU", grid_vertices=200,
        mesh="REFERENCE", reference_frame=3, lens_distortion=lp,
        pixel_picks=[PixelPick("brow", 2, (80.0, 60.0))])
    made = undistorted_sizes(monkeypatch)
    cap = run_capture(Reader(frames), footage_name="bent", footage_size=SIZE, fps=25,
                      frame_count=3, model_path=model, settings=settings,
                      pick_frames={2: frames[1]})
    assert cap is not None and cap.settings["lens_distortion"] == lp.record()
    picks = cap.settings["marker_picks"]  # judged on its frame's prediction, either way
    assert set(picks["accepted"]) | set(picks["rejected"]) == {"brow"}
    assert len(made) == 5  # the reference frame, the pick's frame, then the three frames
    assert all(h * w < 0.4 * SIZE[0] * SIZE[1] for h, w in made)


def test_bad_lenses_are_refused_with_the_reason():
    with pytest.raises(LensDistortionError, match="unknown lens distortion model"):
        LensDistortion("FISHEYE", (0.1,), 100.0, (0, 0), SIZE)
    with pytest.raises(LensDistortionError, match="takes 3 coefficients"):
        LensDistortion("POLYNOMIAL", (0.1,), 100.0, (0, 0), SIZE)
    with pytest.raises(LensDistortionError, match="focal length must be positive"):
        LensDistortion("NUKE", (0.1, 0.0), 0.0, (0, 0), SIZE)
    with pytest.raises(LensDistortionError, match="too small"):
        lens().undistort_image(np.zeros((1, 5, 3), np.float32))


def test_a_lens_given_by_hand_is_in_footage_pixels_with_blender_s_principal_point():
    """LensDistortion.known (the command line, the panel's Known lens): mm -> pixels along the
    longer side; the principal point given y down, kept as Blender's (y up); default the centre."""
    lens = LensDistortion.known("NUKE", (0.1, -0.02), 35.0, 24.0, (120, 80))
    assert lens.focal_px == pytest.approx(35.0 / 24.0 * 120)
    assert lens.principal == (60.0, 40.0) and lens.size == (120, 80)
    lens = LensDistortion.known("NUKE", (0.1, -0.02), 35.0, 24.0, (60, 90), (10.0, 20.0))
    assert lens.focal_px == pytest.approx(35.0 / 24.0 * 90)  # portrait: the height
    assert lens.principal == (10.0, 70.0)
    with pytest.raises(LensDistortionError, match="takes 2 coefficients"):
        LensDistortion.known("NUKE", (0.1,), 35.0, 24.0, (60, 90))
    with pytest.raises(LensDistortionError, match="focal length must be positive"):
        LensDistortion.known("NUKE", (0.1, 0.0), 35.0, 0.0, (60, 90))


def test_the_record_round_trips_and_maps_a_capture_s_points_back():
    lp = lens("BROWN")
    again = LensDistortion.from_record(lp.record())
    assert again == lp and LensDistortion.from_record(None) is None

    class Cap:
        settings = {"lens_distortion": lp.record()}

    p = grid()
    np.testing.assert_allclose(footage_xy(Cap, p), lp.distort(p))
    Cap.settings = {}
    np.testing.assert_allclose(footage_xy(Cap, p), p)


# ------------------------------------------------------------------ a capture of distorted footage

K = camera(SIZE, 200.0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("m") / "m.onnx", mask=True,
                      metadata=contract_metadata(max_window="2",
                                                 canonical_space="no-such-bundled-space"))


def distorted_footage(lp, frames):
    """Each pinhole frame as `lp` would have recorded it (nearest pixel: the canonical colours
    must not blend across the face's edge)."""
    h, w = SIZE[1], SIZE[0]
    v, u = np.mgrid[0:h, 0:w]
    q = lp.undistort(np.stack([u + 0.5, v + 0.5], -1))
    x = np.clip(np.floor(q[..., 0]).astype(int), 0, w - 1)
    y = np.clip(np.floor(q[..., 1]).astype(int), 0, h - 1)
    return [Frame(f.number, np.ascontiguousarray(f.image[y, x])) for f in frames]


def capture(frames, model, lens_distortion, picks=(), told=None):
    settings = CaptureSettings(
        pipeline=PipelineSettings(face_region="full", resolution=126, window=2, overlap=1),
        solve=SolveSettings(max_residual=0.03, marker_count=2), provider="CPU",
        grid_vertices=600, pixel_picks=list(picks), lens_distortion=lens_distortion)
    return run_capture(frames, footage_name="bent", footage_size=SIZE, fps=25,
                       frame_count=len(frames), model_path=model, settings=settings,
                       pick_frames={f.number: f for f in frames},
                       on_picks=told.append if told is not None else None)


def test_a_capture_of_distorted_footage_undoes_the_lens(model):
    mesh = face_mesh(41)
    renders, frames = canonical_footage(mesh, K, SIZE, yaw=0.2, count=3)
    # a wide lens's barrel distortion: about 3 px 40 px from the centre
    lp = LensDistortion("POLYNOMIAL", (-0.35, 0.1, 0.0), 80.0,
                        (float(K[0, 2]) + 3.0, SIZE[1] - float(K[1, 2]) - 2.0), SIZE)
    bent = distorted_footage(lp, frames)
    # a point placed on the distorted footage: the vertex nearest the image's upper left
    brow = int(np.argmin(np.linalg.norm(renders[1].uv - (62.0, 48.0), axis=1)))
    placed = tuple(float(v) for v in lp.distort(renders[1].uv[brow]))
    picks = [PixelPick("brow", 2, placed), PixelPick("corner", 2, (3.0, 3.0))]
    told = []
    fixed = capture(bent, model, lp, picks, told)
    as_is = capture(bent, model, None)
    template = synthetic_template(mesh)

    def error(cap):  # the mesh's seen vertices against where the pinhole renders show them, px
        errors = []
        for i, r in enumerate(renders):
            truth = []
            for c in cap.template_canonical[cap.visibility[i]]:
                tri, bary = closest_surface_point(template, (c - FOOTAGE_B) / FOOTAGE_A)
                truth.append(bary @ r.uv[tri])
            xy = project(cap.camera, cap.positions[i])[cap.visibility[i]]
            errors.append(np.linalg.norm(xy - np.array(truth), axis=1))
        return float(np.median(np.concatenate(errors)))

    assert error(fixed) < 0.5  # about 0.2 px: as a capture of the pinhole footage
    assert error(as_is) > 1.0  # about 1.4 px: the lens's bend left in
    assert fixed.settings["lens_distortion"] == lp.record()
    assert "lens_distortion" not in as_is.settings
    # the face box the network saw (here the whole undistorted frame), on the footage as shot
    np.testing.assert_allclose(fixed.settings["face_boxes"],
                               [lp.distort_boxes((0.0, 0.0, *SIZE))] * 3, atol=1e-3)
    np.testing.assert_allclose(as_is.settings["face_boxes"], [(0.0, 0.0, *SIZE)] * 3, atol=1e-3)
    # the marker from the pick: in the capture's (undistorted) frame it follows the vertex; on
    # the footage as shot (footage_xy) it sits where it was placed
    xy = fixed.marker_xy[1, list(fixed.marker_names).index("brow")]
    assert np.hypot(*(xy - renders[1].uv[brow])) < 1.5
    assert np.hypot(*(footage_xy(fixed, xy) - placed)) < 1.5
    entry = fixed.settings["marker_picks"]["accepted"]["brow"]
    assert entry["xy"] == list(placed) and entry["offset_px"] < 1.5
    np.testing.assert_allclose(entry["tracked_xy"], footage_xy(fixed, xy), atol=1e-4)
    # a pick left out is told where it was placed, not where the lens moved it
    (result,) = told
    assert result.picks["corner"].xy == (3.0, 3.0) and result.picks["brow"].xy == placed
    assert result.rejected["corner"].startswith("(3.0, 3.0) on frame 2 is")
