# SPDX-License-Identifier: GPL-3.0-or-later
"""Face Region: Track (clip_region.py): a Movie Clip track's pattern area is the face box of
every frame. The whole job runs with the tiny test model (tests/data/tiny_face_model.onnx),
which predicts its input's centre as the principal point: in footage pixels that is the centre
of each frame's crop, so the capture's per-frame intrinsics show where every crop was."""
import sys

import bpy
import numpy as np
import pytest

from face_anything_addon.blender import clip_picks, clip_region
from face_anything_addon.core.errors import FootageError
from tests.blender.footage_helpers import H, W, disc_sequence

from test_marker_picks import add_track, set_up  # noqa: I001

HALF = 24.0  # the pattern's half size in pixels: the disc (radius 22) with a little margin


def disc_centre(frame: int) -> tuple[float, float]:
    return 40.0 + 2 * frame, 36.0  # tests.blender.footage_helpers.textured_disc


def pattern(half_w: float = HALF, half_h: float = HALF):
    """Pattern corners (normalised to the clip, relative to the marker) of a box 2*half wide."""
    x, y = half_w / W, half_h / H
    return ((-x, -y), (x, -y), (x, y), (-x, y))


def face_track(clip, frames, name="face"):
    """A track on the disc's centre on `frames`, its pattern area over the disc."""
    track = add_track(clip, name, frames[0], disc_centre(frames[0]))
    for f in frames[1:]:
        track.markers.insert_frame(f, co=clip_picks.footage_to_clip(disc_centre(f), (W, H)))
    for marker in track.markers:
        marker.pattern_corners = pattern()
    return track


@pytest.fixture
def clip(empty_file, tmp_path):
    return bpy.data.movieclips.load(str(disc_sequence(tmp_path / "shot") / "shot_0001.png"))


def test_a_marker_s_pattern_area_is_a_box_in_footage_pixels(clip):
    track = add_track(clip, "face", 2, (30.0, 20.0))
    marker = track.markers.find_frame(2)
    marker.pattern_corners = pattern(10.0, 6.0)
    np.testing.assert_allclose(clip_region.marker_box(marker, (W, H)), (20, 14, 40, 26),
                               atol=1e-4)
    # a turned pattern (a perspective or affine track): the bounds of its corners
    marker.pattern_corners = ((0, -8 / H), (8 / W, 0), (0, 8 / H), (-8 / W, 0))
    np.testing.assert_allclose(clip_region.marker_box(marker, (W, H)), (22, 12, 38, 28),
                               atol=1e-4)


def test_frames_the_track_misses_take_the_box_interpolated(clip):
    track = face_track(clip, [2, 3, 5, 6])
    track.markers.find_frame(3).mute = True  # where the tracker lost it
    region, warnings = clip_region.track_region(clip, "face", range(1, 7), (W, H))
    assert [row[0] for row in region] == [1, 2, 3, 4, 5, 6]
    boxes = np.array([row[1:] for row in region])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    # frame 1 holds frame 2's box; 3 and 4 lie between 2 and 5
    want = [disc_centre(2)] + [disc_centre(f) for f in (2, 3, 4, 5, 6)]
    np.testing.assert_allclose(centres, want, atol=1e-3)
    np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], 2 * HALF, atol=1e-3)
    assert warnings == ["Face Region: the track 'face' has no enabled marker on 3 of 6 frames; "
                        "there its box is interpolated, or held before the first and after "
                        "the last"]
    _, warnings = clip_region.track_region(clip, "face", [5, 6], (W, H))
    assert warnings == []


def test_one_marker_placed_and_not_tracked_is_one_box_for_the_shot(clip):
    face_track(clip, [3])
    region, warnings = clip_region.track_region(clip, "face", range(1, 7), (W, H))
    x, y = disc_centre(3)
    np.testing.assert_allclose([row[1:] for row in region],
                               [(x - HALF, y - HALF, x + HALF, y + HALF)] * 6, atol=1e-3)
    assert "on 5 of 6 frames" in warnings[0]


def test_a_track_that_cannot_give_the_face_region_is_refused_with_what_to_do(clip):
    face_track(clip, [2, 3])
    cases = {"": "needs a track: place a tracking marker on the face",
             "nose": "has no track 'nose'"}
    for name, message in cases.items():
        with pytest.raises(FootageError, match=message):
            clip_region.track_region(clip, name, range(1, 7), (W, H))
    with pytest.raises(FootageError, match=r"no enabled marker on the frames being captured "
                                           r"\(4-6\): track it"):
        clip_region.track_region(clip, "face", [4, 5, 6], (W, H))
    clip.tracking.objects.new("prop").tracks.new(name="face", frame=2)
    with pytest.raises(FootageError, match="2 tracks named 'face'"):
        clip_region.track_region(clip, "face", range(1, 7), (W, H))
    tiny = add_track(clip, "tiny", 2, (30.0, 30.0))
    tiny.markers.find_frame(2).pattern_corners = pattern(0.2, 0.2)
    with pytest.raises(FootageError, match="under a pixel across on frame 2"):
        clip_region.track_region(clip, "tiny", range(1, 7), (W, H))


def test_the_face_region_track_is_no_marker(clip):
    face_track(clip, [2, 3])
    add_track(clip, "dimple", 3, (40.0, 30.0))
    picks, left_out = clip_picks.track_picks(clip, range(1, 7), (W, H), exclude="face")
    assert [p.name for p in picks] == ["dimple"] and left_out == {}
    picks, _ = clip_picks.track_picks(clip, range(1, 7), (W, H))
    assert {p.name for p in picks} == {"face", "dimple"}


def test_a_capture_crops_every_frame_to_the_track_s_box(addon_from_source, clip, tmp_path):
    pytest.importorskip("onnxruntime")
    s = set_up(addon_from_source, tmp_path)
    face_track(clip, [1, 2, 3, 5, 6])  # not tracked on frame 4
    add_track(clip, "dimple", 3, (40.0, 30.0))
    s.face_region, s.face_track = "TRACK", "face"
    rc = sys.modules[f"{addon_from_source.__name__}.blender.reconstruct"]
    job, _ = rc.start_job(bpy.context, clip=clip)
    assert [p.name for p in job.settings.pixel_picks] == ["dimple"]  # the region's track is none
    job.run()
    cap = job.capture
    assert cap is not None and list(cap.frame_numbers) == [1, 2, 3, 4, 5, 6]
    # each frame's crop is centred on the disc, where the track's pattern was (frame 4: between)
    np.testing.assert_allclose(cap.intrinsics[:, 0, 2],
                               [disc_centre(f)[0] for f in cap.frame_numbers], atol=0.5)
    np.testing.assert_allclose(cap.intrinsics[:, 1, 2], 36.0, atol=0.5)
    assert "face" not in cap.marker_names and "dimple" in cap.marker_names
    assert any("no enabled marker on 1 of 6 frames" in w for w in job.status.warnings)
    assert len(cap.settings["pipeline"]["face_region"]) == 6
    coll = rc.finish_job(bpy.context, job)
    assert coll is not None and len(coll.all_objects) > 3


def test_track_without_a_clip_or_a_track_builds_nothing(addon_from_source, clip, tmp_path):
    pytest.importorskip("onnxruntime")
    s = set_up(addon_from_source, tmp_path)
    s.face_region, s.face_track = "TRACK", "face"
    rc = sys.modules[f"{addon_from_source.__name__}.blender.reconstruct"]
    before = (len(bpy.data.objects), len(bpy.data.collections), len(bpy.data.movieclips))
    with pytest.raises(rc.FootageError, match="has no track 'face'"):
        rc.start_job(bpy.context, clip=clip)
    s.footage_path = str(tmp_path / "shot")
    with pytest.raises(rc.FootageError, match="follows a track of a Movie Clip"):
        rc.start_job(bpy.context)
    after = (len(bpy.data.objects), len(bpy.data.collections), len(bpy.data.movieclips))
    assert after == before


def test_an_actor_s_face_file_is_checked_before_anything_is_built(addon_from_source, clip,
                                                                  tmp_path):
    pytest.importorskip("onnxruntime")
    s = set_up(addon_from_source, tmp_path)
    s.mesh = "TEMPLATE"
    s.actor_face_file = str(tmp_path / "missing.capture.npz")
    rc = sys.modules[f"{addon_from_source.__name__}.blender.reconstruct"]
    before = (len(bpy.data.objects), len(bpy.data.collections))
    with pytest.raises(rc.FootageError, match="Actor's Face: .*capture file not found"):
        rc.start_job(bpy.context, clip=clip)
    s.actor_face = False  # off, or without the expression fit: the file is not read
    rc.start_job(bpy.context, clip=clip)
    s.actor_face, s.expressions = True, False
    rc.start_job(bpy.context, clip=clip)
    assert (len(bpy.data.objects), len(bpy.data.collections)) == before
