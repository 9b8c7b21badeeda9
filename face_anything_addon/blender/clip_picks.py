# SPDX-License-Identifier: GPL-3.0-or-later
"""Movie Clip tracking markers as extra face markers ("Use Clip Tracks as Markers").

Before a capture the user places ordinary tracking markers on the clip (Ctrl+click in the Movie
Clip Editor). At Reconstruct, every track of the clip (all tracking objects) with an enabled
marker on a frame being captured becomes a pick (core/marker_picks.py) named after the track:

- which marker: the track's first marker placed by hand (keyframed, not tracked) on a captured
  frame, else its first enabled tracked marker. The frame where the point was placed by hand is
  the one the user looked at; tracked positions drift. Disabled (muted) markers never count.
- where: a marker's `co` is normalised to the frame, (0, 0) the bottom-left corner and (1, 1) the
  top-right; footage pixels have y down with the top-left pixel's centre at (0.5, 0.5), so
  x = co.x * width and y = (1 - co.y) * height (`clip_to_footage`).
- frames: tracking markers count clip frames, which are the footage's frame numbers
  (footage.footage_from_clip).

The pick frames are decoded here, on the main thread, before the job starts; the worker resolves
the picks with the network before the solve (core/capture_run.run_capture).
"""
from __future__ import annotations

import bpy
import numpy as np

from ..core.frames import Frame
from ..core.marker_picks import PixelPick
from .footage import footage_from_clip


def clip_to_footage(co, size) -> tuple[float, float]:
    """A tracking marker's normalised position -> footage pixels (x right, y down)."""
    width, height = size
    return float(co[0]) * width, (1.0 - float(co[1])) * height


def footage_to_clip(xy, size) -> tuple[float, float]:
    """Footage pixels -> a tracking marker's normalised position."""
    width, height = size
    return float(xy[0]) / width, 1.0 - float(xy[1]) / height


def clip_tracks(clip: bpy.types.MovieClip) -> list:
    """Every track of the clip: the camera's, then each tracking object's."""
    return [track for obj in clip.tracking.objects for track in obj.tracks]


def pick_marker(track, frames):
    """The marker of `track` that becomes its pick (see the module docstring), or None."""
    enabled = [m for m in track.markers if not m.mute and m.frame in frames]
    keyed = [m for m in enabled if m.is_keyed]
    return min(keyed or enabled, key=lambda m: m.frame) if enabled else None


def track_picks(clip: bpy.types.MovieClip, frame_numbers, size,
                exclude: str = "") -> tuple[list[PixelPick], dict[str, str]]:
    """(picks, tracks left out -> why) for the clip's tracks over footage `frame_numbers`;
    the track named `exclude` (the face region's: `clip_region`) is no pick and not told."""
    frames = set(int(n) for n in frame_numbers)
    picks, left_out, names = [], {}, set()
    first, last = min(frames), max(frames)
    for track in clip_tracks(clip):
        if exclude and track.name == exclude:
            continue
        if track.name in names:
            left_out[track.name] = "another track has the same name: rename one of them"
            continue
        names.add(track.name)
        marker = pick_marker(track, frames)
        if marker is None:
            left_out[track.name] = (f"it has no enabled marker on the frames being captured "
                                    f"({first}-{last})")
            continue
        picks.append(PixelPick(track.name, int(marker.frame), clip_to_footage(marker.co, size)))
    return picks, left_out


def read_frames(clip: bpy.types.MovieClip, numbers) -> dict[int, Frame]:
    """The clip's frames `numbers` (footage numbers), decoded now (main thread only)."""
    frames = {}
    for number in sorted(set(int(n) for n in numbers)):
        for frame in footage_from_clip(clip, (number, number)):
            frames[frame.number] = frame
    return frames


def track_count(clip: bpy.types.MovieClip) -> int:
    return len(clip_tracks(clip)) if clip is not None else 0


def warning(name: str, why: str) -> str:
    """The sentence a user reads for a track left out."""
    return f"Track '{name}' left out: {why}"


def offset_warnings(capture, limit_fraction: float = 0.01, floor_px: float = 2.0) -> list[str]:
    """Sentences for picks the capture tracks far (over 1% of the frame, at least 2 px) from where
    they were placed on their own frame: the network is unsure of that point."""
    record = (capture.settings or {}).get("marker_picks", {})
    limit = max(floor_px, limit_fraction * max(capture.footage_size))
    out = []
    for name, entry in record.get("accepted", {}).items():
        offset = entry.get("offset_px")
        if offset is not None and np.isfinite(offset) and offset > limit:
            out.append(f"Track '{name}': the capture puts it {offset:.1f} px from where it was "
                       f"placed on frame {entry['frame']} (the network is unsure there: check it)")
    return out
