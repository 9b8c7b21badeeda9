# SPDX-License-Identifier: GPL-3.0-or-later
"""The streaming pipeline on tiny real ONNX models: windows, face boxes, scale, focal, progress,
cancellation, bad footage."""
import queue
import threading

import numpy as np
import pytest

from face_anything_addon.core.contract import describe_model
from face_anything_addon.core.frames import Frame, from_blender_pixels
from face_anything_addon.core.preprocess import reduction_factor, resample
from face_anything_addon.core.pipeline import (
    Pipeline, PipelineError, PipelineSettings, frame_boxes, smooth_boxes)
from face_anything_addon.core.session import open_session
from tests.contract_models import contract_metadata, make_model


def session_for(tmp_path, **kw):
    return open_session(describe_model(make_model(tmp_path / "m.onnx", **kw)), "CPU")


def disc_footage(numbers, width=160, height=120, radius=14, speed=3.0, brightness=None):
    """A bright disc (the "face": the tiny model's mask is > 0.5 where the input is bright)
    moving right on a dark background."""
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    frames = []
    for i, n in enumerate(numbers):
        cx, cy = 50 + speed * i, 60
        img = np.full((height, width, 3), 0.1, np.float32)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < radius ** 2] = 0.9
        if brightness is not None:
            img *= brightness[i]
        frames.append(Frame(n, img))
    return frames


def test_full_frame_predictions_keep_numbers_and_map_intrinsics(tmp_path):
    frames = disc_footage([1, 2, 3, 5, 10])
    pipe = Pipeline(session_for(tmp_path), PipelineSettings(face_region="full", resolution=56))
    preds = list(pipe.run(frames, total=5))
    assert [p.number for p in preds] == [1, 2, 3, 5, 10]
    p = preds[0]
    assert p.depth.shape == (42, 56) and p.canonical.shape == (42, 56, 3)
    assert (p.crop.out_w, p.crop.out_h, p.footage_size) == (56, 42, (160, 120))
    # the tiny model predicts focal = input width, principal point = input centre:
    # in footage pixels that is the footage's width and centre
    np.testing.assert_allclose(p.intrinsics, [[160, 0, 80], [0, 120 * 56 / 42, 60], [0, 0, 1]])
    # and the maps are the model's real output for this frame
    x = (frames[0].image[::1] - 0.5) / 0.25
    assert p.depth.max() == pytest.approx(((1 + x.mean(axis=2)) ** 2 + 0.5).max(), rel=1e-3)


def test_user_box_crop(tmp_path):
    pipe = Pipeline(session_for(tmp_path), PipelineSettings(face_region=(20, 30, 90, 100),
                                                            resolution=28))
    (p,) = list(pipe.run(disc_footage([7])))
    assert p.crop.box == (20, 30, 90, 100) and (p.crop.out_w, p.crop.out_h) == (28, 28)
    with pytest.raises(PipelineError, match="face box .* is empty"):
        list(Pipeline(pipe.session, PipelineSettings(face_region=(50, 50, 40, 60))).run(
            disc_footage([1])))


def followed(numbers, speed=3.0, half=20.0):
    """A box per frame around the disc of `disc_footage(numbers, speed=speed)`, as a followed
    track gives them: ((frame, x0, y0, x1, y1), ...)."""
    return tuple((n, 50 + speed * i - half, 60 - half, 50 + speed * i + half, 60 + half)
                 for i, n in enumerate(numbers))


def test_a_box_per_frame_is_each_frames_crop(tmp_path):
    """A face region given per frame (a followed track): every frame is cropped to its own box,
    without a detection pass; the camera comes from whole frames as for one box."""
    numbers = [3, 4, 5, 6, 7, 9]
    frames = disc_footage(numbers)
    region = followed(numbers)
    seen = []
    pipe = Pipeline(session_for(tmp_path, mask=True),
                    PipelineSettings(face_region=region, resolution=28, window=2, overlap=1),
                    progress=seen.append)
    preds = list(pipe.run(frames, total=len(numbers)))
    assert [p.number for p in preds] == numbers
    for p, row in zip(preds, region):
        np.testing.assert_allclose(p.crop.box, row[1:])
        assert (p.crop.out_w, p.crop.out_h) == (28, 28)
        # the disc is in the middle of every crop: the tiny model's mask says so
        assert p.mask[14, 14] > 0.5 and p.mask[1, 1] < 0.5
    assert {s.phase for s in seen} == {"predict"}  # no detection pass
    np.testing.assert_allclose(pipe.shot_intrinsics()[0], [160, 0, 80], rtol=0.02)
    # boxes of changing size: one crop size for the shot (their median), each box kept
    sized = tuple((n, x0 - i, y0 - i, x1 + i, y1 + i) for i, (n, x0, y0, x1, y1) in
                  enumerate(region))
    preds = list(Pipeline(pipe.session, PipelineSettings(face_region=sized, resolution=28))
                 .run(frames))
    for p, row in zip(preds, sized):
        np.testing.assert_allclose(p.crop.box, row[1:])
        assert (p.crop.out_w, p.crop.out_h) == (28, 28)


def test_a_box_per_frame_must_cover_every_frame_and_make_sense(tmp_path):
    session = session_for(tmp_path)
    region = followed([1, 2, 4])
    with pytest.raises(PipelineError, match="no box for frame 3"):
        list(Pipeline(session, PipelineSettings(face_region=region)).run(disc_footage([1, 2, 3])))
    bad = {
        "on frame 2 is empty": region[:1] + ((2, 40, 40, 30, 50),),
        "each frame once": region + (region[0],),
        "whole frame number": ((1.5, 0, 0, 10, 10),),
        "is 4 numbers": ((1, 0, 0, 10),),
        "'middle'": "middle",
    }
    for message, face_region in bad.items():
        with pytest.raises(PipelineError, match=message):
            Pipeline(session, PipelineSettings(face_region=face_region))
    assert frame_boxes("auto") is None and frame_boxes((1, 2, 3, 4)) is None
    assert sorted(frame_boxes(region)) == [1, 2, 4]


def test_auto_face_boxes_follow_the_face_smoothly(tmp_path):
    frames = disc_footage(range(1, 25), speed=2.5)
    pipe = Pipeline(session_for(tmp_path, mask=True), PipelineSettings(window=2, overlap=1))
    preds = list(pipe.run(frames, total=24))
    assert len(preds) == 24
    for i, p in enumerate(preds):
        x0, y0, x1, y1 = p.crop.box
        cx = 50 + 2.5 * i
        assert x0 < cx - 14 and x1 > cx + 14 and y0 < 60 - 14 and y1 > 60 + 14, (i, p.crop.box)
        assert x1 - x0 < 3 * 28  # tight: the face, its margin, not the whole frame
    centres = np.array([(p.crop.box[0] + p.crop.box[2]) / 2 for p in preds])
    steps = np.diff(centres)
    assert np.all(np.abs(steps - 2.5) < 0.6), steps  # follows the motion, no jitter
    assert len({(p.crop.out_w, p.crop.out_h) for p in preds}) == 1  # one input size per shot


def test_no_face_anywhere_is_an_actionable_error(tmp_path):
    dark = [Frame(i, np.full((60, 80, 3), 0.05, np.float32)) for i in range(3)]
    with pytest.raises(PipelineError, match="no face found .* draw a face box by hand"):
        list(Pipeline(session_for(tmp_path, mask=True)).run(dark))


def test_relative_depth_scale_is_chained_across_windows_within_1_percent(tmp_path):
    # The model's depth scale depends on each window's content, so without alignment it jumps
    # from window to window (here by up to ~25%).
    n = 30
    brightness = np.linspace(0.6, 1.1, n)
    frames = disc_footage(range(n), brightness=brightness)
    model = dict(window_drift=0.5, metadata=contract_metadata(depth_units="relative"))
    truth = []
    for f in frames:  # depth of each frame alone, without the window's scale
        x = (np.clip(f.image, 0, 1) - 0.5) / 0.25
        truth.append((1 + x.mean(axis=2)) ** 2 + 0.5)
    settings = PipelineSettings(face_region="full", resolution=28 * 4, window=4, overlap=1)

    def ratios(align):
        """Per frame: predicted depth / the frame's own depth (resampled like the input)."""
        settings.align_depth_scale = align
        preds = list(Pipeline(session_for(tmp_path, **model), settings).run(frames))
        assert len(preds) == n
        return np.array([np.median(p.depth / resample(np.repeat(t[..., None], 3, 2), p.crop)[..., 0])
                         for p, t in zip(preds, truth)])

    raw = ratios(False)
    aligned = ratios(True)
    assert raw.max() / raw.min() > 1.1  # the drift is real
    assert aligned.max() / aligned.min() < 1.01


def test_metric_models_are_not_rescaled(tmp_path):
    frames = disc_footage(range(6), brightness=np.linspace(0.6, 1.1, 6))
    pipe = Pipeline(session_for(tmp_path, window_drift=0.5),
                    PipelineSettings(face_region="full", resolution=28, window=3, overlap=1))
    assert {p.depth_scale for p in pipe.run(frames)} == {1.0}


def test_shot_focal_is_robust_and_switchable(tmp_path):
    pipe = Pipeline(session_for(tmp_path), PipelineSettings(face_region="full", resolution=28))
    preds = list(pipe.run(disc_footage(range(4))))
    pipe._focals[1] = pipe._focals[1] * 3  # one wild frame
    k = pipe.shot_intrinsics()
    assert k[0, 0] == pytest.approx(160) and k[0, 2] == pytest.approx(80)
    np.testing.assert_array_equal(pipe.camera_for(preds[1]), k)
    pipe.settings.shot_focal = False
    np.testing.assert_array_equal(pipe.camera_for(preds[1]), preds[1].intrinsics)


def test_the_shot_camera_comes_from_the_whole_frames_when_the_face_is_found(tmp_path):
    """The tiny model predicts focal = its input's width: on whole frames that is the footage's
    width (the right camera for this model), on a face crop the crop's width."""
    frames = disc_footage(range(8), speed=2.0)
    pipe = Pipeline(session_for(tmp_path, mask=True), PipelineSettings(window=2, overlap=1))
    preds = list(pipe.run(frames, total=8))
    crop_w = np.median([p.crop.width for p in preds])
    assert crop_w < 100  # the crops are much narrower than the frame
    np.testing.assert_allclose(pipe.shot_intrinsics(), [[160, 0, 80], [0, 160, 60], [0, 0, 1]],
                               rtol=0.02)
    assert preds[0].intrinsics[0, 0] == pytest.approx(crop_w, rel=0.05)  # each frame's own
    pipe.settings.camera_from_whole_frames = False  # the crops' median, as before
    assert pipe.shot_intrinsics()[0, 0] == pytest.approx(crop_w, rel=0.05)
    # a box drawn by hand: the network sees the first window of whole frames for the camera
    box = PipelineSettings(face_region=(20, 30, 90, 100), resolution=28)
    boxed = Pipeline(pipe.session, box)
    (p,) = list(boxed.run(frames[:1]))
    assert p.intrinsics[0, 0] == pytest.approx(70, rel=0.02)  # the box's width
    np.testing.assert_allclose(boxed.shot_intrinsics()[0], [160, 0, 80], rtol=0.02)
    box.camera_from_whole_frames = False
    boxed = Pipeline(pipe.session, box)
    list(boxed.run(frames[:1]))
    assert boxed.shot_intrinsics()[0, 0] == pytest.approx(70, rel=0.02)


def test_a_known_lens_is_the_shot_camera(tmp_path):
    """50 mm on a 36 mm sensor over the 160-pixel-wide frames: f = 222.2 px, centred; no camera
    pass is run for it, and it is every frame's camera even with per-frame focal lengths."""
    frames = disc_footage(range(3))
    settings = PipelineSettings(face_region=(20, 30, 90, 100), resolution=28, lens_mm=50.0)
    pipe = Pipeline(session_for(tmp_path), settings)
    preds = list(pipe.run(frames))
    f = 50.0 / 36.0 * 160
    np.testing.assert_allclose(pipe.shot_intrinsics(), [[f, 0, 80], [0, f, 60], [0, 0, 1]])
    assert pipe._whole_focals == []  # the network was not asked for the lens
    assert preds[0].intrinsics[0, 0] == pytest.approx(70, rel=0.02)  # its own guess, kept
    settings.shot_focal = False
    np.testing.assert_array_equal(pipe.camera_for(preds[0]), pipe.shot_intrinsics())
    # portrait footage: the sensor spans the longer side, the height
    tall = Pipeline(pipe.session, PipelineSettings(face_region="full", resolution=28,
                                                   lens_mm=24.0, sensor_mm=12.0))
    list(tall.run(disc_footage(range(1), width=90, height=150)))
    np.testing.assert_allclose(tall.shot_intrinsics()[:2, :2], np.eye(2) * 300.0)
    for bad in ({"lens_mm": -5.0}, {"sensor_mm": 0.0}, {"lens_mm": float("nan")}):
        with pytest.raises(PipelineError, match="known lens"):
            Pipeline(pipe.session, PipelineSettings(**bad))
    # a principal point of its own (a calibrated lens, or the Movie Clip's camera)
    settings.principal_px = (70.5, 66.0)
    np.testing.assert_allclose(pipe.shot_intrinsics()[:2, 2], [70.5, 66.0])
    for bad in ((1.0,), (float("inf"), 3.0)):
        with pytest.raises(PipelineError, match="principal point"):
            Pipeline(pipe.session, PipelineSettings(lens_mm=50.0, principal_px=bad))


def test_progress_and_cancellation_within_one_window(tmp_path):
    cancel = threading.Event()
    seen = []

    def progress(p):
        seen.append(p)
        if p.phase == "predict" and p.done >= 6:
            cancel.set()

    pipe = Pipeline(session_for(tmp_path), PipelineSettings(face_region="full", resolution=28,
                                                            window=3, overlap=0),
                    progress=progress, cancel=cancel)
    preds = list(pipe.run(disc_footage(range(30)), total=30))
    assert pipe.cancelled and len(preds) == 6
    assert [p.done for p in seen] == [3, 6] and all(p.total == 30 for p in seen)
    assert seen[-1].fps > 0 and seen[-1].eta_s > 0 and "frame 6/30" in seen[-1].text()


def test_runs_in_a_worker_thread(tmp_path):
    results = queue.Queue()
    pipe = Pipeline(session_for(tmp_path), PipelineSettings(face_region="full", resolution=28))

    def work():
        for p in pipe.run(disc_footage(range(5))):
            results.put(p.number)
        results.put(None)

    t = threading.Thread(target=work)
    t.start()
    t.join(30)
    got = []
    while (n := results.get_nowait()) is not None:
        got.append(n)
    assert got == list(range(5))


def test_bad_footage_and_settings(tmp_path):
    sess = session_for(tmp_path)
    mixed = disc_footage([1, 2]) + [Frame(3, np.zeros((100, 160, 3), np.float32))]
    with pytest.raises(PipelineError, match="frame 3 is 160 x 100, the footage started at 160 x 120"):
        list(Pipeline(sess, PipelineSettings(face_region="full")).run(mixed))
    with pytest.raises(PipelineError, match="the footage has no frames"):
        list(Pipeline(sess, PipelineSettings(face_region="full")).run([]))
    with pytest.raises(PipelineError, match="frames per window must be 1 to 4"):
        Pipeline(sess, PipelineSettings(window=5))
    with pytest.raises(PipelineError, match="overlap must be 0 to 1"):
        Pipeline(sess, PipelineSettings(window=2, overlap=2))
    with pytest.raises(PipelineError, match="resolution 30 is not a multiple"):
        list(Pipeline(sess, PipelineSettings(face_region="full", resolution=30)).run(
            disc_footage([1])))


def test_smooth_boxes_fills_gaps_without_lag():
    boxes = np.array([[i, 0, i + 10, 10] for i in range(20)], float)
    boxes[5:8] = np.nan
    out = smooth_boxes(boxes, 2.0)
    np.testing.assert_allclose(out[3:17, 0], np.arange(3, 17), atol=1e-9)  # a ramp stays put


def test_no_full_resolution_frame_outlives_its_window(tmp_path):
    """Footage streams: at most one window of frames (here S = 3) plus the one being read are
    alive at any time, however long the sequence."""
    import gc
    import weakref

    alive, most = [0], [0]

    def freed():
        alive[0] -= 1

    def frames():
        for n in range(40):
            (f,) = disc_footage([n])  # made on demand, like a reader's
            weakref.finalize(f.image, freed)
            alive[0] += 1
            most[0] = max(most[0], alive[0])
            yield f
            del f  # the generator itself keeps nothing
            gc.collect()

    pipe = Pipeline(session_for(tmp_path), PipelineSettings(face_region="full", resolution=28,
                                                            window=3, overlap=1))
    assert sum(1 for _ in pipe.run(frames())) == 40
    assert most[0] <= 2, most


def area_reduce(image, k):
    """A reader's reduced copy of a frame: the mean of each k x k block."""
    h, w = image.shape[:2]
    return image.reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3)).astype(np.float32)


@pytest.mark.parametrize("region", ["full", (20, 30, 90, 100), "auto"])
def test_reduced_frames_keep_crops_boxes_and_intrinsics_in_footage_pixels(tmp_path, region):
    """Footage read at half size (as a reader reduces large frames): crops, face boxes,
    intrinsics and the footage size come out in footage pixels, as for the full-size frames."""
    full = disc_footage(range(1, 9), width=320, height=240, radius=28, speed=6.0)
    half = [Frame(f.number, area_reduce(f.image, 2), f.size) for f in full]
    assert half[0].size == (320, 240) and half[0].image_size == (160, 120)
    session = session_for(tmp_path, mask=True)
    settings = PipelineSettings(face_region=region, resolution=56, window=2, overlap=1)
    preds = {}
    for name, frames in (("full", full), ("half", half)):
        preds[name] = list(Pipeline(session, settings).run(frames, total=8))
    for a, b in zip(preds["full"], preds["half"]):
        assert a.footage_size == b.footage_size == (320, 240)
        np.testing.assert_allclose(b.crop.box, a.crop.box, atol=2.0)  # auto: found at half size
        if region != "auto":
            assert b.crop == a.crop
            np.testing.assert_allclose(b.intrinsics, a.intrinsics, rtol=1e-6)
        # the tiny model: focal = input width, principal point = input centre, in footage pixels
        k = b.intrinsics
        np.testing.assert_allclose([k[0, 2], k[1, 2]],
                                   [b.crop.x0 + b.crop.width / 2, b.crop.y0 + b.crop.height / 2],
                                   rtol=1e-6)
        np.testing.assert_allclose(k[0, 0], b.crop.width, rtol=1e-6)
        if region != "auto":  # same crop: the maps agree too, up to the detail the reduced
            # frame lacks (this 70-pixel box is enlarged from 35 pixels)
            assert np.abs(b.depth - a.depth).mean() < 0.05 * a.depth.mean()


@pytest.mark.parametrize("window, overlap, region", [(1, 0, "full"), (3, 1, "full"),
                                                     (4, 2, "auto"), (3, 0, "full")])
def test_pipelined_and_serial_runs_give_the_same_predictions(tmp_path, window, overlap, region):
    """The network in its own thread (the default) changes when frames are prepared, not what
    comes out: same frames, crops, scale alignment and maps as one after the other."""
    frames = disc_footage(range(11), brightness=np.linspace(0.6, 1.1, 11))
    model = dict(window_drift=0.5, mask=True, metadata=contract_metadata(depth_units="relative"))
    session = session_for(tmp_path, **model)
    out = {}
    for pipelined in (True, False):
        settings = PipelineSettings(face_region=region, resolution=56, window=window,
                                    overlap=overlap, pipelined=pipelined)
        out[pipelined] = list(Pipeline(session, settings).run(frames, total=11))
    assert [p.number for p in out[True]] == [p.number for p in out[False]] == list(range(11))
    for a, b in zip(out[True], out[False]):
        assert a.crop == b.crop and a.depth_scale == b.depth_scale
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_array_equal(a.intrinsics, b.intrinsics)


@pytest.mark.parametrize("pipelined", [True, False])
def test_a_bad_frame_ends_the_run_after_the_frames_before_it(tmp_path, pipelined):
    """A footage error (here: a frame of another size) surfaces after every frame before it was
    yielded, also when the next window is read while the network runs."""
    frames = disc_footage(range(1, 8)) + [Frame(8, np.zeros((100, 160, 3), np.float32))]
    pipe = Pipeline(session_for(tmp_path), PipelineSettings(
        face_region="full", resolution=28, window=3, overlap=1, pipelined=pipelined))
    got = []
    with pytest.raises(PipelineError, match="frame 8 is 160 x 100"):
        for p in pipe.run(frames):
            got.append(p.number)
    assert got == [1, 2, 3, 4, 5, 6, 7]  # windows 1-3, 3-5, 5-7; the next needs frame 8


def test_the_model_thread_is_gone_after_a_run_an_error_or_an_early_stop(tmp_path):
    def model_threads():
        return [t for t in threading.enumerate() if t.name.startswith("face-anything-model")]

    session = session_for(tmp_path)
    settings = PipelineSettings(face_region="full", resolution=28, window=2, overlap=1)
    list(Pipeline(session, settings).run(disc_footage(range(6))))
    assert not model_threads()
    run = Pipeline(session, settings).run(disc_footage(range(6)))
    next(run)
    run.close()  # the consumer stops early
    assert not model_threads()
    with pytest.raises(PipelineError):
        list(Pipeline(session, settings).run(disc_footage(range(3)) +
                                             [Frame(9, np.zeros((8, 8, 3), np.float32))]))
    assert not model_threads()


class ReducingReader:
    """A reader stand-in that knows its footage size and, asked `reduced(n)`, makes each frame as
    a reader does: means of n x n blocks taken while the pixels are copied out of Blender's
    bottom-up RGBA buffer (`from_blender_pixels`), with their exact scale. Records what it was
    asked for."""

    def __init__(self, frames, asked=None, factor=1):
        self.frames, self.size, self.factor = frames, frames[0].size, factor
        self.asked = [] if asked is None else asked

    def reduced(self, factor):
        self.asked.append(factor)
        return ReducingReader(self.frames, self.asked, factor)

    def __iter__(self):
        for f in self.frames:
            h, w = f.image.shape[:2]
            rgba = np.concatenate([f.image, np.ones((h, w, 1), np.float32)], 2)[::-1]
            image = from_blender_pixels(rgba.ravel(), w, h, 4, block=self.factor)
            yield Frame(f.number, image, f.size, (1 / self.factor,) * 2)


@pytest.mark.parametrize("region, resolution", [("full", 28), ("full", 56),
                                                ((15, 10, 305, 230), 28), ("auto", 28)])
def test_a_reader_is_asked_for_frames_as_small_as_the_model_needs(tmp_path, region, resolution):
    """Given a reader that can reduce frames, the pipeline asks each pass for the integer area
    reduction its preprocessing would make first for the smallest crop, and what comes out is
    what full-size frames give: the same crops and intrinsics, the same maps up to the frame's
    partial edge blocks."""
    full = disc_footage(range(1, 8), width=321, height=241, radius=40, speed=6.0)
    reader = ReducingReader(full)
    session = session_for(tmp_path, mask=True)
    settings = PipelineSettings(face_region=region, resolution=resolution, window=2, overlap=1)
    plain = list(Pipeline(session, settings).run(full, total=7))
    small = list(Pipeline(session, settings).run(reader, total=7))
    wanted = min(reduction_factor(p.crop) for p in plain)
    assert reader.asked[-1] == wanted
    assert wanted >= (2 if region != "auto" else 1)
    if region == "auto":
        assert len(reader.asked) == 2  # the detection pass asked too
    for a, b in zip(plain, small):
        assert a.number == b.number and a.footage_size == b.footage_size == (321, 241)
        np.testing.assert_allclose(b.crop.box, a.crop.box, atol=0.5 if region == "auto" else 0)
        np.testing.assert_allclose(b.intrinsics, a.intrinsics, rtol=1e-3)
        assert np.abs(b.depth - a.depth).mean() < 0.01 * a.depth.mean()
