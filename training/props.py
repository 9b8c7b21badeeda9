# SPDX-License-Identifier: GPL-3.0-or-later
"""Occluders and background objects as small procedural meshes (never part of the template).

Kinds (scene.Prop.kind) and what `params` holds (all sampled in `training.sampling`):
- "hair": strands lying on the head; params: mode ("fringe", "sides", "long"), count, length,
  width, offset (metres off the skin), seed.
- "hat": a dome over the skull; params: rim (head-local y of its lower edge), brim (visor length,
  0 for none), seed.
- "glasses": frames (and opaque lenses for sunglasses); params: half_w, half_h, roundness,
  thickness, lift, sunglasses (bool), lens (rgb tint of sunglass lenses).
- "hand": palm and fingers near the face; params: target (landmark name), gap, angle, spread,
  curl, seed.
- "microphone": handheld (ball on a handle) or headset boom; params: style, distance, drop, seed.
- "torso": a garment lofted from the bust's cross-sections down to the hips, with sleeved arms
  (every clip has one; it hides the bust's cut edges); params: none.
- "wall": a large textured plane behind the subject (world frame); params: distance, tilt (2,),
  pattern, scale.
- "box": a box in the world frame; params: centre (3,), size (3,), angles (3,).
Hair, hats, glasses and headsets move with the head; hands and microphones with the torso or
head as sampled; walls and boxes stay in the world (they move only with camera shake).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .geometry import rotation_xyz
from .meshes import box, ellipsoid, grid_faces, quad_grid, ribbon, tube
from .noise import noise3

HAIR, CLOTH, PLASTIC, HAND, METAL, BACKDROP = 5, 6, 7, 8, 9, 10


@dataclass
class PropMesh:
    vertices: torch.Tensor  # (n, 3) in the attach frame (head-local, torso-local or world)
    faces: torch.Tensor  # (m, 3)
    colours: torch.Tensor  # (n, 3) linear albedo
    material: int
    casts_shadow: bool = True


class PropBuilder:
    """Builds prop meshes fitted to a frame's head (identity shape, neutral expression)."""

    def __init__(self, model, device):
        self.device = device
        vt = model.template_vertex_count
        skin = (model.vertex_part[:vt] == 0) & (model.ao[:vt] > 0.3)
        self.surface = torch.as_tensor(np.flatnonzero(skin), device=device)
        self.lm = model.landmarks()
        self.body = torch.as_tensor(np.arange(vt, model.vertex_count), device=device)
        v = model.neutral[:vt][skin]
        self.centre = torch.tensor([0.0, float(v[:, 1].min() + v[:, 1].max()) / 2 + 0.02,
                                    float(v[:, 2].min() + v[:, 2].max()) / 2], device=device)

    def build(self, prop, head, frame) -> PropMesh | None:
        """prop: scene.Prop; head: (Vr, 3) identity head (head-local); frame: scene.Frame."""
        fn = getattr(self, "_" + prop.kind, None)
        if fn is None:
            raise ValueError(f"unknown prop kind {prop.kind!r}")
        return fn(prop, head, frame)

    # ---- helpers -------------------------------------------------------------------------------
    def _surface_along(self, head: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """Where rays from the head centre along unit dirs (Q, 3) meet the head surface (Q, 3):
        at the distance of the skin vertex seen in the closest direction from the centre."""
        pts = head[self.surface] - self.centre
        dist = pts.norm(dim=-1)
        best = (dirs @ (pts / dist[:, None]).T).argmax(1)
        return self.centre + dirs * dist[best, None]

    def _landmark(self, head: torch.Tensor, name: str) -> torch.Tensor:
        return head[self.lm[name]]

    def _colour(self, prop, n: int, jitter: float, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        base = torch.as_tensor(prop.colour, dtype=torch.float32)
        c = base * (1 + jitter * (torch.rand(n, 1, generator=g) * 2 - 1))
        return c.clamp(0, 1).to(self.device)

    # ---- kinds ---------------------------------------------------------------------------------
    def _hair(self, prop, head, frame) -> PropMesh:
        p = prop.params
        g = np.random.default_rng(p["seed"])
        count, steps = int(p["count"]), 10
        mode = p["mode"]
        if mode == "fringe":  # from the hairline down to the brows at most
            az = g.uniform(-0.75, 0.75, count)
            el0 = g.uniform(0.85, 1.05, count)
            el1 = np.maximum(el0 - p["length"] / 0.1 * g.uniform(0.7, 1.0, count), 0.05)
        else:
            side = np.where(g.random(count) < 0.5, -1.0, 1.0)
            az = side * g.uniform(0.9, 2.2, count)
            el0 = g.uniform(0.6, 1.1, count)
            el1 = el0 - g.uniform(0.9, 1.6, count)
        t = np.linspace(0, 1, steps)
        el = el0[:, None] + (el1 - el0)[:, None] * t[None]
        wig = g.normal(0, 0.04, (count, 1)) * np.sin(t * math.pi)[None]
        a = az[:, None] + wig
        dirs = np.stack([np.cos(el) * np.sin(a), np.sin(el), np.cos(el) * np.cos(a)], -1)
        d = torch.as_tensor(dirs, dtype=torch.float32, device=self.device).reshape(-1, 3)
        surf = self._surface_along(head, d)
        off = p["offset"] * (1 + 0.8 * torch.as_tensor(t, dtype=torch.float32, device=self.device)
                             ).repeat(count)
        pts = (surf + d * off[:, None]).reshape(count, steps, 3)
        if mode == "long":  # fall under gravity below the last point
            drop = torch.as_tensor(g.uniform(0.5, 1.0, count) * max(p["length"], 0.05) * 2,
                                   dtype=torch.float32,
                                   device=self.device)
            fall = torch.stack([torch.zeros_like(drop), -drop, -0.02 * torch.ones_like(drop)], -1)
            steps_down = torch.linspace(0, 1, 6, device=self.device)[None, 1:, None]
            tail = pts[:, -1:] + steps_down * fall[:, None]
            tail[..., 0] = tail[..., 0] + torch.sign(pts[:, -1:, 0]) * 0.01
            pts = torch.cat([pts, tail], 1)
        tangent = torch.zeros_like(pts)
        tangent[:, 1:] = pts[:, 1:] - pts[:, :-1]
        tangent[:, 0] = tangent[:, 1]
        out = (pts - self.centre)
        side = torch.cross(tangent, out, dim=-1)
        side = side / side.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        n = pts.shape[1]
        taper = torch.linspace(1.0, 0.3, n, device=self.device)
        width = torch.as_tensor(g.uniform(0.5, 1.0, (count, 1)) * p["width"], dtype=torch.float32,
                                device=self.device) * taper
        verts, faces = ribbon(pts, side, width)
        colours = self._colour(prop, count, 0.15, p["seed"]).repeat_interleave(2 * n, 0)
        return PropMesh(verts, faces, colours, HAIR)

    def _hat(self, prop, head, frame) -> PropMesh:
        p = prop.params
        skull = head[self.surface]
        top = skull[skull[:, 1] > p["rim"] - 0.01]
        lo, hi = top.min(0).values, top.max(0).values
        centre = torch.stack([(lo[0] + hi[0]) / 2, torch.as_tensor(p["rim"], device=self.device),
                              (lo[2] + hi[2]) / 2])
        radii = torch.stack([(hi[0] - lo[0]) / 2 * 1.12, (hi[1] - p["rim"]) * 1.1 + 0.01,
                             (hi[2] - lo[2]) / 2 * 1.1])
        verts, faces = ellipsoid(centre, radii, rings=10, segments=20, theta_max=math.pi / 2)
        parts_v, parts_f = [verts], [faces]
        if p["brim"] > 0:  # a visor in front
            zero = torch.zeros((), device=self.device)
            front = centre + torch.stack([zero, zero, radii[2] * 0.98])
            v2, f2 = quad_grid(front - torch.stack([radii[0] * 0.8, zero, zero]),
                               torch.stack([radii[0] * 1.6, zero, zero]),
                               torch.tensor([0.0, -0.012, float(p["brim"])], device=self.device),
                               n=5)
            parts_v.append(v2)
            parts_f.append(f2 + len(verts))
        v = torch.cat(parts_v)
        f = torch.cat(parts_f)
        return PropMesh(v, f, self._colour(prop, len(v), 0.05, p["seed"]), CLOTH)

    def _glasses(self, prop, head, frame) -> PropMesh:
        p = prop.params
        dev = self.device
        parts_v, parts_f, lens_parts = [], [], []
        pupil = self._landmark(head, "pupil_l")
        ang = torch.linspace(0, 2 * math.pi, 33, device=dev)[:-1]
        r = p["roundness"]
        ex = torch.sign(ang.cos()) * ang.cos().abs() ** r
        ey = torch.sign(ang.sin()) * ang.sin().abs() ** r
        z_lens = None
        for s in (1.0, -1.0):
            cx = s * (pupil[0] + 0.002)
            cy = pupil[1] + p["lift"]
            outline = torch.stack([cx + p["half_w"] * ex, cy + p["half_h"] * ey], -1)
            if z_lens is None:  # in front of everything behind the lens outline
                d = torch.cat([outline, torch.full_like(outline[:, :1], 0.0)], -1) - self.centre
                d[:, 2] = 0.08
                d = d / d.norm(dim=-1, keepdim=True)
                z_lens = self._surface_along(head, d)[:, 2].max() + 0.007
            pts = torch.cat([outline, z_lens.expand(len(outline), 1)], -1)
            pts = torch.cat([pts, pts[:1]])
            radial = torch.cat([pts[:, :2] - torch.stack([cx, cy]), torch.zeros(len(pts), 1,
                                                                               device=dev)], -1)
            radial = radial / radial.norm(dim=-1, keepdim=True).clamp_min(1e-9)
            v, f = ribbon(pts[None], radial[None], torch.full((1, len(pts)), p["thickness"],
                                                              device=dev))
            parts_v.append(v)
            parts_f.append(f)
            if p["sunglasses"]:  # an opaque tinted lens
                centre = torch.stack([cx, cy, z_lens + 0.001])
                disk = torch.cat([centre[None], pts[:-1] + torch.tensor([0, 0, 0.001], device=dev)])
                k = torch.arange(len(pts) - 1, device=dev)
                fd = torch.stack([torch.zeros_like(k), k + 1, (k + 1) % (len(pts) - 1) + 1], -1)
                parts_v.append(disk)
                parts_f.append(fd)
                lens_parts.append(len(parts_v) - 1)
            # temple arm: from the outer edge back to above the ear
            ear = self._landmark(head, "ear_top_l" if s > 0 else "ear_top_r")
            start = torch.stack([cx + s * p["half_w"], cy + 0.004, z_lens])
            end = ear + torch.tensor([s * 0.006, -0.004, 0.0], device=dev)
            line = start + torch.linspace(0, 1, 6, device=dev)[:, None] * (end - start)
            line[:, 0] = line[:, 0] + s * 0.006 * torch.sin(torch.linspace(0, math.pi, 6,
                                                                            device=dev))
            v, f = tube(line, torch.full((6,), p["thickness"] * 0.4, device=dev), sides=6)
            parts_v.append(v)
            parts_f.append(f)
        # bridge over the nose
        inner = pupil[0] + 0.002 - p["half_w"]
        bridge = torch.stack([torch.linspace(-1, 1, 7, device=dev) * inner,
                              pupil[1] + p["lift"] + 0.005 + 0.004 * torch.cos(
                                  torch.linspace(-1.4, 1.4, 7, device=dev)),
                              z_lens.expand(7)], -1)
        v, f = tube(bridge, torch.full((7,), p["thickness"] * 0.4, device=dev), sides=6)
        parts_v.append(v)
        parts_f.append(f)
        offsets = np.cumsum([0] + [len(v) for v in parts_v[:-1]])
        verts = torch.cat(parts_v)
        faces = torch.cat([f + int(o) for f, o in zip(parts_f, offsets)])
        colours = torch.as_tensor(prop.colour, dtype=torch.float32, device=dev)
        colours = colours.expand(len(verts), 3).clone()
        tint = torch.as_tensor(p.get("lens", (0.02, 0.02, 0.025)), dtype=torch.float32, device=dev)
        for k in lens_parts:
            colours[int(offsets[k]):int(offsets[k]) + len(parts_v[k])] = tint
        return PropMesh(verts, faces, colours, PLASTIC)

    def _hand(self, prop, head, frame) -> PropMesh:
        p = prop.params
        dev = self.device
        g = np.random.default_rng(p["seed"])
        target = self._landmark(head, p["target"])
        out = target - self.centre
        out = out / out.norm()
        # hand frame: z towards the face (palm faces it), y = fingers' direction
        z_axis = -out
        up = torch.tensor([math.sin(p["angle"]), math.cos(p["angle"]), 0.0], device=dev)
        y_axis = up - (up @ z_axis) * z_axis
        y_axis = y_axis / y_axis.norm()
        x_axis = torch.cross(y_axis, z_axis, dim=0)
        rot = torch.stack([x_axis, y_axis, z_axis], 1)
        origin = target + out * (0.014 + p["gap"]) - y_axis * 0.05
        parts_v, parts_f = [], []
        palm = torch.tensor([0.042, 0.048, 0.014], device=dev)
        v, f = ellipsoid(torch.zeros(3, device=dev), palm, rings=8, segments=12)
        parts_v.append(v)
        parts_f.append(f)
        for k, (fx, length) in enumerate([(-0.027, 0.07), (-0.009, 0.08), (0.009, 0.078),
                                          (0.026, 0.062)]):
            t = torch.linspace(0, 1, 6, device=dev)
            spread = p["spread"] * (k - 1.5)
            curl = p["curl"] * t ** 2
            pts = torch.stack([fx + spread * t * length, 0.035 + t * length * torch.cos(curl),
                               -t * length * torch.sin(curl) * 0.6], -1)
            rad = torch.full((6,), 0.0085, device=dev) * (1 - 0.2 * t)
            v, f = tube(pts, rad, sides=8)
            parts_v.append(v)
            parts_f.append(f)
        thumb = torch.stack([-0.04 - torch.linspace(0, 0.03, 5, device=dev),
                             torch.linspace(-0.02, 0.03, 5, device=dev),
                             torch.linspace(0, -0.015, 5, device=dev)], -1)
        v, f = tube(thumb, torch.full((5,), 0.01, device=dev), sides=8)
        parts_v.append(v)
        parts_f.append(f)
        offsets = np.cumsum([0] + [len(v) for v in parts_v[:-1]])
        verts = torch.cat(parts_v) @ rot.T + origin
        faces = torch.cat([f + int(o) for f, o in zip(parts_f, offsets)])
        colours = self._colour(prop, 1, 0.0, int(g.integers(1 << 30))).expand(len(verts), 3)
        return PropMesh(verts, faces, colours.clone(), HAND)

    def _microphone(self, prop, head, frame) -> PropMesh:
        p = prop.params
        dev = self.device
        mouth = (self._landmark(head, "mouth_corner_l")
                 + self._landmark(head, "mouth_corner_r")) / 2
        if p["style"] == "headset":
            ear = self._landmark(head, "ear_front_l")
            end = mouth + torch.tensor([0.02, -0.005, 0.012], device=dev)
            t = torch.linspace(0, 1, 8, device=dev)[:, None]
            line = ear + (end - ear) * t
            line[:, 2] = line[:, 2] + 0.02 * torch.sin(t[:, 0] * math.pi)
            line[:, 0] = line[:, 0] + 0.01 * torch.sin(t[:, 0] * math.pi)
            v, f = tube(line, torch.full((8,), 0.0022, device=dev), sides=6)
            v2, f2 = ellipsoid(end, torch.tensor([0.006, 0.006, 0.008], device=dev), rings=5,
                               segments=8)
            verts, faces = torch.cat([v, v2]), torch.cat([f, f2 + len(v)])
        else:
            ball = mouth + torch.tensor([0.0, -p["drop"], p["distance"]], device=dev)
            v, f = ellipsoid(ball, torch.full((3,), 0.03, device=dev), rings=8, segments=12)
            direction = torch.tensor([0.0, -0.8, 0.6], device=dev)
            direction = direction / direction.norm()
            line = ball + torch.linspace(0.02, 0.2, 6, device=dev)[:, None] * direction
            rad = torch.linspace(0.02, 0.016, 6, device=dev)
            v2, f2 = tube(line, rad, sides=10)
            verts, faces = torch.cat([v, v2]), torch.cat([f, f2 + len(v)])
        colours = torch.as_tensor(prop.colour, dtype=torch.float32, device=dev)
        return PropMesh(verts, faces, colours.expand(len(verts), 3).clone(), METAL)

    def _torso(self, prop, head, frame) -> PropMesh:
        """Rings lofted from the bust's cross-sections (slightly inside it) down to the hips."""
        dev = self.device
        body = head[self.body]
        band_y = torch.tensor([-0.17, -0.21, -0.25, -0.28], device=dev)
        rings = []
        for y in band_y:
            dist = (body[:, 1] - y).abs()
            sel = body[dist < 0.015]
            if len(sel) < 3:  # a short or unusual bust: the band's nearest vertices instead
                sel = body[dist.topk(min(16, len(dist)), largest=False).indices]
            lo, hi = sel.min(0).values, sel.max(0).values
            rings.append(torch.stack([(lo[0] + hi[0]) / 2, y, (lo[2] + hi[2]) / 2,
                                      (hi[0] - lo[0]) / 2, (hi[2] - lo[2]) / 2]))
        rings = torch.stack(rings)
        last = rings[-1]
        scale = torch.tensor([0.96, 0.99, 1.02, 1.03, 1.02, 1.0, 0.98], device=dev)
        ys = torch.tensor([-0.17, -0.21, -0.25, -0.3, -0.45, -0.7, -1.2], device=dev)
        prof = torch.cat([rings, last.expand(3, 5)])
        prof[4:, 1] = ys[4:]
        prof[4:, 4] = last[4] * torch.tensor([1.0, 1.05, 1.1], device=dev)
        prof[:, 3:] = prof[:, 3:] * scale[:, None]
        seg = 24
        ang = torch.arange(seg, device=dev) * (2 * math.pi / seg)
        c, s_ = ang.cos(), ang.sin()
        sx = c.sign() * c.abs() ** 0.7
        sz = s_.sign() * s_.abs() ** 0.7
        verts = torch.stack([prof[:, None, 0] + prof[:, None, 3] * sx[None],
                             prof[:, None, 1].expand(-1, seg),
                             prof[:, None, 2] + prof[:, None, 4] * sz[None]], -1).reshape(-1, 3)
        faces = grid_faces(len(prof), seg, dev, closed=True)
        parts_v, parts_f = [verts], [faces]
        for s in (1.0, -1.0):  # sleeved arms hanging from the shoulders
            top = torch.stack([prof[1, 0] + s * prof[1, 3] * 0.92, prof[1, 1] + 0.02, prof[1, 2]])
            t = torch.linspace(0, 1, 6, device=dev)[:, None]
            line = top + t * torch.tensor([s * 0.12, -0.55, 0.02], device=dev)
            v, f = tube(line, torch.linspace(0.05, 0.035, 6, device=dev), sides=10)
            parts_v.append(v)
            parts_f.append(f + sum(len(p) for p in parts_v[:-1]))
        verts, faces = torch.cat(parts_v), torch.cat(parts_f)
        colours = torch.as_tensor(prop.colour, dtype=torch.float32, device=dev)
        return PropMesh(verts, faces, colours.expand(len(verts), 3).clone(), CLOTH)

    def _wall(self, prop, head, frame) -> PropMesh:
        p = prop.params
        dev = self.device
        k = frame.intrinsics
        z = float(frame.position[2]) + p["distance"]
        hw = float(z * 2 * k[0, 2] / k[0, 0] * 1.6)
        hh = float(z * 2 * k[1, 2] / k[1, 1] * 1.6)
        rot = rotation_xyz(torch.tensor([p["tilt"][0], p["tilt"][1], 0.0])).to(dev)
        centre = torch.tensor([0.0, 0.0, z], device=dev)
        du = rot @ torch.tensor([2 * hw, 0.0, 0.0], device=dev)
        dv = rot @ torch.tensor([0.0, 2 * hh, 0.0], device=dev)
        verts, faces = quad_grid(centre - du / 2 - dv / 2, du, dv, n=12)
        base = torch.as_tensor(prop.colour, dtype=torch.float32, device=dev)
        shade = 0.75 + 0.25 * noise3(verts * p["scale"], int(p["seed"]))
        colours = (base * shade[:, None]).clamp(0, 1)
        return PropMesh(verts, faces, colours, BACKDROP, casts_shadow=False)

    def _box(self, prop, head, frame) -> PropMesh:
        p = prop.params
        dev = self.device
        rot = rotation_xyz(torch.tensor(p["angles"], dtype=torch.float32)).to(dev)
        verts, faces = box(torch.tensor(p["centre"], dtype=torch.float32, device=dev),
                           torch.tensor(p["size"], dtype=torch.float32, device=dev), rot)
        colours = torch.as_tensor(prop.colour, dtype=torch.float32, device=dev).expand(8, 3)
        return PropMesh(verts, faces, colours.clone(), BACKDROP, casts_shadow=False)


def prop_albedo(mat: torch.Tensor, ref: torch.Tensor, albedo: torch.Tensor, spec: torch.Tensor,
                shin: torch.Tensor, look: dict[str, torch.Tensor], sel: torch.Tensor) -> None:
    """Per-pixel detail and specular of prop materials, written in place into albedo / spec /
    shin at the pixels `sel` (mat and ref are already restricted to them)."""
    hair = mat == HAIR
    if hair.any():
        streak = 0.8 + 0.2 * noise3(ref[hair] * torch.tensor([1500.0, 150.0, 1500.0],
                                                             device=ref.device), 41)
        idx = sel[hair]
        albedo[idx] = albedo[idx] * streak[:, None]
        spec[idx], shin[idx] = 0.12, 20.0
    cloth = mat == CLOTH
    if cloth.any():
        idx = sel[cloth]
        albedo[idx] = albedo[idx] * (0.9 + 0.1 * noise3(ref[cloth] * 800.0, 43))[:, None]
        spec[idx], shin[idx] = 0.02, 5.0
    idx = sel[mat == PLASTIC]
    spec[idx], shin[idx] = 0.5, 80.0
    hand = mat == HAND
    if hand.any():
        idx = sel[hand]
        albedo[idx] = look["skin"] * (0.95 + 0.08 * noise3(ref[hand] * 120.0, 47))[:, None]
        spec[idx], shin[idx] = 0.06, 20.0
    metal = mat == METAL
    if metal.any():
        idx = sel[metal]
        grille = 0.85 + 0.15 * (torch.sin(ref[metal] * 2500.0).prod(-1) > 0).float()
        albedo[idx] = albedo[idx] * grille[:, None]
        spec[idx], shin[idx] = 0.6, 60.0
    idx = sel[mat == BACKDROP]
    spec[idx], shin[idx] = 0.05, 10.0
