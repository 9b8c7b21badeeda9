# SPDX-License-Identifier: GPL-3.0-or-later
"""Canonical templates: the fixed-topology face mesh whose vertices the capture tracks.

A template lives in one canonical space (the space a model's `canonical` output is expressed in).
File format: one .npz (see `Template.save`), small enough to ship in the add-on's assets.

Canonical coordinates are the neutral head's metric positions, centred and scaled so the head fits
[-1, 1]^3: canonical = (metric - centre) / scale, so metric = canonical * scale + centre.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .npz_record import READ_ERRORS, missing_fields, read_record, record_fields, write_record

FORMAT = "face-anything-template"
VERSION = 1


class TemplateError(Exception):
    """A template file that cannot be used (the message says why)."""


@dataclass
class Template:
    name: str
    canonical_space: str  # must equal the model's faceanything.canonical_space
    canonical: np.ndarray  # (V, 3) float32, canonical coordinates
    faces: np.ndarray  # (F, 3) int32
    uvs: np.ndarray  # (F, 3, 2) float32, per face corner
    centre: np.ndarray  # (3,) float32, metres: metric = canonical * scale + centre
    scale: float  # metres per canonical unit
    region_names: list[str] = field(default_factory=list)
    vertex_region: np.ndarray | None = None  # (V,) int16, index into region_names, -1 none
    landmark_names: list[str] = field(default_factory=list)
    landmark_vertex: np.ndarray | None = None  # (L,) int32
    blendshape_names: list[str] = field(default_factory=list)  # e.g. the 52 ARKit names
    blendshape_deltas: np.ndarray | None = None  # (K, V, 3) float16, metres, metric space
    license: str = ""
    # (J, V, 3) float16 metres: how heads differ from the neutral one, each shape one standard
    # deviation (the capture solve fits the actor's face with them; none: the neutral face)
    identity_deltas: np.ndarray | None = None

    def __post_init__(self):
        v = len(self.canonical)
        if self.vertex_region is None:
            self.vertex_region = np.full(v, -1, np.int16)
        if self.landmark_vertex is None:
            self.landmark_vertex = np.zeros(0, np.int32)
        if self.blendshape_deltas is None:
            self.blendshape_deltas = np.zeros((0, v, 3), np.float16)
        if self.identity_deltas is None:
            self.identity_deltas = np.zeros((0, v, 3), np.float16)
        self.validate()

    @property
    def vertex_count(self) -> int:
        return len(self.canonical)

    @property
    def metric(self) -> np.ndarray:
        """(V, 3) float32 neutral positions in metres, head-local."""
        return (self.canonical * self.scale + self.centre).astype(np.float32)

    def landmarks(self) -> dict[str, int]:
        return dict(zip(self.landmark_names, self.landmark_vertex.tolist()))

    def validate(self) -> None:
        v = len(self.canonical)
        checks = [
            (self.canonical.ndim == 2 and self.canonical.shape[1] == 3, "canonical must be (V, 3)"),
            (self.faces.ndim == 2 and self.faces.shape[1] == 3, "faces must be (F, 3)"),
            (len(self.faces) == 0 or (self.faces.min() >= 0 and self.faces.max() < v),
             "faces index missing vertices"),
            (self.uvs.shape == (len(self.faces), 3, 2), "uvs must be (F, 3, 2)"),
            (self.vertex_region.shape == (v,), "vertex_region must be (V,)"),
            (len(self.landmark_names) == len(self.landmark_vertex), "landmark names and vertices "
                                                                     "differ in number"),
            (len(self.landmark_vertex) == 0 or self.landmark_vertex.max() < v,
             "landmarks index missing vertices"),
            (self.blendshape_deltas.shape == (len(self.blendshape_names), v, 3),
             "blendshape_deltas must be (K, V, 3)"),
            (self.identity_deltas.ndim == 3 and self.identity_deltas.shape[1:] == (v, 3),
             "identity_deltas must be (J, V, 3)"),
            (np.shape(self.centre) == (3,) and self.scale > 0, "centre (3,) and scale > 0 needed"),
        ]
        for ok, problem in checks:
            if not ok:
                raise TemplateError(f"template {self.name!r}: {problem}")

    def save(self, path) -> Path:
        return write_record(self, path, FORMAT, VERSION, compressed=True)

    @classmethod
    def load(cls, path) -> "Template":
        path = Path(path)
        try:
            meta, arrays = read_record(path)
        except READ_ERRORS as exc:
            raise TemplateError(f"{path.name} is not a readable template file: {exc}") from None
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise TemplateError(f"{path.name} is not a version-{VERSION} Face Anything template")
        missing = missing_fields(cls, meta, arrays)
        if missing:
            raise TemplateError(f"{path.name} lacks {', '.join(missing)}")
        return cls(**record_fields(cls, meta, arrays))
