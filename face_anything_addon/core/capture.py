# SPDX-License-Identifier: GPL-3.0-or-later
"""The capture file: everything needed to rebuild a scene without rerunning the network.

Format (docs/capture-format.md): one uncompressed .npz, written atomically, with a format tag and
version. Arrays load back bit-identical; a truncated or foreign file gets one clear CaptureError.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .npz_record import READ_ERRORS, missing_fields, read_record, record_fields, write_record

FORMAT = "face-anything-capture"
VERSION = 1


class CaptureError(Exception):
    """A capture file that cannot be read (the message names the file and the problem)."""


@dataclass
class Capture:
    """A tracked face over a shot. Camera space is OpenCV's (x right, y down, z forward), metres;
    2D positions are footage pixels with pixel centres at integer + 0.5. When the footage was
    undistorted first (settings["lens_distortion"], `lens_distortion.LensDistortion.of_capture`),
    everything here is in the undistorted frame; `lens_distortion.footage_xy` maps 2D positions
    back onto the footage as shot."""

    # the mesh's fixed topology (the template)
    template_name: str
    canonical_space: str
    rest_vertices: np.ndarray  # (V, 3) float32, head-local metres: the shot's neutral face (the
    # template's, moved by the identity the expression fit found; the template's without the fit)
    template_canonical: np.ndarray  # (V, 3) float32, each vertex's canonical coordinate
    faces: np.ndarray  # (F, 3) int32
    uvs: np.ndarray  # (F, 3, 2) float32, per face corner
    region_names: list[str]
    vertex_region: np.ndarray  # (V,) int16, index into region_names (-1: none)
    # per frame (N frames)
    frame_numbers: np.ndarray  # (N,) int64, the footage's own numbers
    positions: np.ndarray  # (N, V, 3) float32, camera space
    visibility: np.ndarray  # (N, V) bool: observed this frame (False: filled by the solve)
    head_pose: np.ndarray  # (N, 4, 4) float32: camera-from-head similarity (scale in rotation)
    intrinsics: np.ndarray  # (N, 3, 3) float64, footage pixels, as predicted per frame
    camera: np.ndarray  # (3, 3) float64, the shot camera (footage pixels)
    # markers (M)
    marker_names: list[str]
    marker_xy: np.ndarray  # (N, M, 2) float32, footage pixels
    marker_xyz: np.ndarray  # (N, M, 3) float32, camera space
    marker_visible: np.ndarray  # (N, M) bool
    marker_residual: np.ndarray  # (N, M) float32, canonical-space residual of the match
    # footage and provenance
    footage_name: str
    footage_size: tuple[int, int]  # (width, height)
    fps: float
    model_name: str
    contract_version: str
    depth_units: str
    settings: dict = field(default_factory=dict)
    # the expression fit (optional): per frame, the weight of each of the template's expression
    # targets (e.g. the 52 ARKit blendshapes), in [0, 1]; empty when the solve did not fit them
    expression_names: list[str] = field(default_factory=list)
    expression_weights: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 0), np.float32))  # (N, K) float32
    # the actor's face (optional): the weights of the template's identity shapes that move its
    # neutral face to `rest_vertices`, as the fit found them or was given (`ActorFace`); empty
    # when the shot kept the template's face
    identity_weights: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.float32))  # (J,) float32

    @property
    def frame_count(self) -> int:
        return len(self.frame_numbers)

    def validate(self) -> None:
        """Raises CaptureError when shapes disagree."""
        n, v, m = len(self.frame_numbers), len(self.rest_vertices), len(self.marker_names)
        expect = {
            "rest_vertices": (v, 3), "template_canonical": (v, 3), "faces": (len(self.faces), 3), "uvs": (len(self.faces), 3, 2),
            "vertex_region": (v,), "positions": (n, v, 3), "visibility": (n, v),
            "head_pose": (n, 4, 4), "intrinsics": (n, 3, 3), "camera": (3, 3),
            "marker_xy": (n, m, 2), "marker_xyz": (n, m, 3), "marker_visible": (n, m),
            "marker_residual": (n, m),
        }
        if self.expression_names or np.size(self.expression_weights):
            expect["expression_weights"] = (n, len(self.expression_names))
        for name, shape in expect.items():
            got = np.shape(getattr(self, name))
            if got != shape:
                raise CaptureError(f"capture field {name} has shape {got}, expected {shape}")
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= v):
            raise CaptureError("capture faces index vertices that do not exist")

    # ------------------------------------------------------------------ file

    def save(self, path) -> Path:
        """Write atomically: a temporary file in the same folder, then renamed over `path`."""
        self.validate()
        return write_record(self, path, FORMAT, VERSION)

    @classmethod
    def load(cls, path) -> "Capture":
        path = Path(path)
        if not path.is_file():
            raise CaptureError(f"capture file not found: {path}")
        try:
            meta, arrays = read_record(path)
        except READ_ERRORS as exc:
            raise CaptureError(f"{path.name} is not a readable capture file (truncated or "
                               f"another kind of file): {exc}") from None
        if meta.get("format") != FORMAT:
            raise CaptureError(f"{path.name} is not a Face Anything capture file")
        if meta.get("version") != VERSION:
            raise CaptureError(f"{path.name} is capture format version {meta.get('version')}; "
                               f"this add-on reads version {VERSION}")
        missing = missing_fields(cls, meta, arrays)
        if missing:
            raise CaptureError(f"{path.name} lacks {', '.join(missing)}")
        meta["footage_size"] = tuple(meta["footage_size"])
        capture = cls(**record_fields(cls, meta, arrays))
        capture.validate()
        return capture
