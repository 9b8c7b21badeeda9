# SPDX-License-Identifier: GPL-3.0-or-later
"""A Movie Clip track as the face region ("Face Region: Track").

For shots where the automatic face region goes wrong (a wide real shot where it takes clothing or
an object for the face) the face box can be drawn and followed with Blender's own tracker: place
a tracking marker on the face (Ctrl+click in the Movie Clip Editor), drag the corners of its
pattern area (the inner box) out to the face's edges, and track it (Ctrl+T; an affine or
perspective motion model also follows the face's size). At Reconstruct each frame is cropped to
that frame's pattern area, as to a box drawn by hand (`Pipeline`'s face region per frame). A
marker placed on one frame and not tracked is one box for the whole shot: a face box drawn with
the mouse.

- the box on a frame: the bounds of the pattern's four corners (`marker.co` plus
  `marker.pattern_corners`, both normalised to the frame, y up) in footage pixels
  (`clip_picks.clip_to_footage`);
- which markers: the track's enabled markers on the frames being captured. Frames without one
  (not tracked there, or disabled where the tracker lost the face) take the box interpolated
  between the nearest frames that have one, held before the first and after the last, and a
  warning says on how many frames;
- the track is looked up by name in every tracking object of the clip; it is a region, not a
  point, so it does not also become a marker (`clip_picks.track_picks` leaves it out).
"""
from __future__ import annotations

import bpy
import numpy as np

from ..core.errors import FootageError
from ..core.pipeline import boxes_on_frames
from .clip_picks import clip_to_footage, clip_tracks


def _named(clip: bpy.types.MovieClip, name: str) -> list:
    """The clip's tracks called `name`, in every tracking object."""
    return [track for track in clip_tracks(clip) if track.name == name]


def find_track(clip: bpy.types.MovieClip, name: str):
    """The clip's track called `name` (any tracking object), or a FootageError saying what to do."""
    if not name:
        raise FootageError("Face Region: Track needs a track: place a tracking marker on the "
                           "face in the Movie Clip Editor (Ctrl+click), drag its pattern area "
                           "over the face, track it, and choose it as the Face Region's track")
    found = _named(clip, name)
    if not found:
        raise FootageError(f"Face Region: the clip '{clip.name}' has no track '{name}': choose "
                           "one of its tracks")
    if len(found) > 1:
        raise FootageError(f"Face Region: the clip '{clip.name}' has {len(found)} tracks named "
                           f"'{name}' (in different tracking objects): rename all but one")
    return found[0]


def marker_box(marker, size) -> np.ndarray:
    """A marker's pattern area as a box (x0, y0, x1, y1) in footage pixels (y down)."""
    corners = np.asarray(marker.pattern_corners, np.float64).reshape(4, 2)
    points = np.array([clip_to_footage(np.asarray(marker.co) + c, size) for c in corners])
    return np.concatenate([points.min(0), points.max(0)])


def track_region(clip: bpy.types.MovieClip, name: str, frame_numbers,
                 size) -> tuple[tuple, list[str]]:
    """(face region: ((frame, x0, y0, x1, y1), ...) for every frame of `frame_numbers`,
    warnings) from the track `name`'s pattern area; a FootageError when the track is missing,
    has no enabled marker on those frames, or its pattern area is empty."""
    track = find_track(clip, name)
    numbers = sorted({int(n) for n in frame_numbers})
    wanted = set(numbers)
    known = {m.frame: marker_box(m, size) for m in track.markers
             if not m.mute and m.frame in wanted}
    if not known:
        raise FootageError(f"Face Region: the track '{name}' has no enabled marker on the frames "
                           f"being captured ({numbers[0]}-{numbers[-1]}): track it over the "
                           "shot (Ctrl+T), or choose another face region")
    for frame in sorted(known):
        x0, y0, x1, y1 = known[frame]
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise FootageError(f"Face Region: the track '{name}' has a pattern area under a "
                               f"pixel across on frame {frame}: drag its corners out to the "
                               "face's edges")
    region, missing = boxes_on_frames(known, numbers)
    warnings = [f"Face Region: the track '{name}' has no enabled marker on {missing} of "
                f"{len(numbers)} frames; there its box is interpolated, or held before the first "
                "and after the last"] if missing else []
    return region, warnings


def box_text(clip: bpy.types.MovieClip, name: str, frame: int) -> str:
    """What the panel says about the track's face box on the clip's frame `frame`."""
    found = _named(clip, name)
    if len(found) != 1:
        return "Choose the track whose pattern area covers the face" if not found else \
            f"{len(found)} tracks are named '{name}': rename all but one"
    marker = found[0].markers.find_frame(frame)
    if marker is None or marker.mute:
        return f"Frame {frame}: not tracked, the box is interpolated or held"
    x0, y0, x1, y1 = marker_box(marker, tuple(clip.size))
    return f"Frame {frame}: box {x1 - x0:.0f} x {y1 - y0:.0f} px at {x0:.0f}, {y0:.0f}"
