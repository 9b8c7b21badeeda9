# SPDX-License-Identifier: GPL-3.0-or-later
"""Markers the user picks as points in the footage, turned into points on the template.

The solve tracks markers as points on the template (canonical coordinates). A user picks a point
in footage pixels on one frame (in Blender: a Movie Clip tracking marker). `resolve_picks` turns
each pick into a canonical coordinate before the streaming solve starts:

  for each distinct pick frame: one single-frame pass through the same Pipeline and session, with
  the same face region logic (automatic: a detection pass on that frame, the same margin) ->
  bilinear sample of the predicted canonical map at the pick's pixel, accepted only when all four
  bilinear neighbours are face (face weight >= the solve's min_weight, as for any tracked vertex)
  and the coordinate lies on (near) the template's surface.

A pick that fails is not an error: it is left out with a sentence saying why
(`PickResult.rejected`), and the capture goes on without it.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

import numpy as np

from .frames import Frame
from .inversion import CanonicalMap
from .lens_distortion import LensDistortion, UndistortedFrames
from .pipeline import FramePrediction, Pipeline, PipelineError, PipelineSettings
from .solve import closest_surface_point
from .template import Template

MAX_SURFACE_OFFSET = 0.1  # canonical units a picked coordinate may lie off the template surface


@dataclass(frozen=True)
class PixelPick:
    """A point picked on one frame: `xy` in footage pixels (x right, y down, the top-left pixel's
    centre at (0.5, 0.5)) on footage frame `frame`."""

    name: str
    frame: int
    xy: tuple[float, float]


@dataclass
class PickResult:
    """What became of the picks: canonical coordinates of the accepted ones, a reason for each
    one left out (a sentence without the pick's name), and each pick as asked."""

    canonical: dict[str, np.ndarray] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    picks: dict[str, PixelPick] = field(default_factory=dict)

    def record(self, capture=None) -> dict:
        """JSON-able summary for the capture's settings. With the capture: where its marker ended
        up on the pick frame (`tracked_xy`) and how far that is from the pick (`offset_px`)."""
        accepted = {}
        for name, canonical in self.canonical.items():
            pick = self.picks[name]
            entry = {"frame": int(pick.frame), "xy": [float(v) for v in pick.xy],
                     "canonical": [float(v) for v in canonical]}
            if capture is not None:
                tracked = tracked_position(capture, name, pick.frame)
                if tracked is not None:
                    entry["tracked_xy"] = [float(v) for v in tracked]
                    entry["offset_px"] = float(np.hypot(*(tracked - np.asarray(pick.xy))))
            accepted[name] = entry
        return {"accepted": accepted, "rejected": dict(self.rejected)}


def tracked_position(capture, name: str, frame: int) -> np.ndarray | None:
    """The capture's 2D position (footage pixels) of marker `name` on footage frame `frame`, or
    None when the capture has no such marker, frame or finite position."""
    if name not in capture.marker_names:
        return None
    rows = np.flatnonzero(np.asarray(capture.frame_numbers) == frame)
    if not rows.size:
        return None
    xy = np.asarray(capture.marker_xy[rows[0], list(capture.marker_names).index(name)],
                    np.float64)
    return xy if np.isfinite(xy).all() else None


def pixels_text(xy) -> str:
    """How a reason quotes a footage position."""
    return f"({xy[0]:.1f}, {xy[1]:.1f})"


def sample_pick(prediction: FramePrediction, xy, min_weight: float = 0.5):
    """(canonical xyz, None) at footage pixel `xy` of a frame's prediction, or (None, why)."""
    p = prediction.crop.to_input(np.asarray([xy], np.float64)).astype(np.float32)
    cmap = CanonicalMap(prediction.canonical, prediction.face_weight, min_weight)
    where = f"{pixels_text(xy)} on frame {prediction.number}"
    width, height = prediction.footage_size
    if not (0 <= xy[0] <= width and 0 <= xy[1] <= height):
        return None, f"{where} is outside the {width} x {height} frame"
    if not (0.5 <= p[0, 0] <= cmap.w - 0.5 and 0.5 <= p[0, 1] <= cmap.h - 0.5):
        return None, f"{where} is outside the face region the network looked at: place it on " \
                     f"the face"
    if not cmap.supported(p)[0]:
        weight = float(np.asarray(prediction.face_weight)[
            int(min(p[0, 1], cmap.h - 1)), int(min(p[0, 0], cmap.w - 1))])
        return None, f"{where} is not on the face (face confidence {weight:.2f}, needs " \
                     f"{min_weight:.2f}): place it on the face"
    canonical = cmap.value(p)[0].astype(np.float64)
    if not np.isfinite(canonical).all():
        return None, f"{where}: the network predicts no canonical coordinate there"
    return canonical, None


def resolve_picks(session, pipeline_settings: PipelineSettings, picks: Iterable[PixelPick],
                  frames: Mapping[int, Frame], template: Template, *, min_weight: float = 0.5,
                  reserved: Iterable[str] = (), max_surface_offset: float = MAX_SURFACE_OFFSET,
                  cancel: threading.Event | None = None,
                  lens: LensDistortion | None = None) -> PickResult:
    """Canonical coordinates of `picks`, each from a single-frame prediction of its frame (one
    prediction per distinct frame). frames: footage frame number -> Frame, for the pick frames.
    reserved: marker names already taken (landmarks, automatic markers). lens: the frames are
    as shot and the picks undistorted: each frame is undistorted as the pipeline reads it (only
    its crops' pixels)."""
    out = PickResult()
    taken = set(reserved)
    by_frame: dict[int, list[PixelPick]] = {}
    for pick in picks:
        if pick.name in taken or pick.name in out.picks:
            out.rejected[pick.name] = f"a marker named '{pick.name}' already exists: rename it"
            continue
        out.picks[pick.name] = pick
        if pick.frame not in frames:
            out.rejected[pick.name] = f"frame {pick.frame} is not in the footage being captured"
            continue
        by_frame.setdefault(pick.frame, []).append(pick)
    single = PipelineSettings(**{**asdict(pipeline_settings), "window": 1, "overlap": 0})
    for number in sorted(by_frame):
        if cancel is not None and cancel.is_set():
            break
        try:
            frame = [frames[number]]
            source = frame if lens is None else UndistortedFrames(frame, lens)
            (prediction,) = list(Pipeline(session, single).run(source, 1))
        except PipelineError as err:
            for pick in by_frame[number]:
                out.rejected[pick.name] = f"no face on frame {number} ({err})"
            continue
        for pick in by_frame[number]:
            canonical, why = sample_pick(prediction, pick.xy, min_weight)
            if canonical is not None:
                tri, bary = closest_surface_point(template, canonical)
                on_surface = bary @ template.canonical[tri].astype(np.float64)
                offset = float(np.linalg.norm(on_surface - canonical))
                if offset > max_surface_offset:
                    canonical, why = None, (
                        f"{pixels_text(pick.xy)} on frame {number} matches no point of the face mesh "
                        f"(it lies {offset:.2f} canonical units off it): place it on the face")
            if canonical is None:
                out.rejected[pick.name] = why
            else:
                out.canonical[pick.name] = canonical
    # in the order of the picks (a marker's place in the capture), not of their frames
    out.canonical = {n: out.canonical[n] for n in out.picks if n in out.canonical}
    return out
