# SPDX-License-Identifier: GPL-3.0-or-later
"""Render frames (scene.Frame) into images and exact ground truth, batched, in torch.

Outputs per frame (see docs/synthetic-data.md): rgb (uint8), depth (camera z in metres of the
nearest surface, 0 where no geometry), canonical (template coordinate of the visible template
surface, 0 elsewhere), mask (1 where the visible surface is the template), region (template region
index, -1 elsewhere), intrinsics, vertex_xy (projection of every template vertex, pixels, centres
at +0.5) and vertex_visible (in front of the camera, inside the image and not hidden by anything,
tested exactly at its projected point).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import appearance as app
from . import props as props_mod
from .background import render_backgrounds
from .camera_effects import apply_effects
from .geometry import (axis_angle, head_to_camera, orthonormal_basis, rodrigues, rotation_xyz,
                       vertex_normals)
from .head_model import PARTS, HeadModel
from .make_template import canonical_frame
from .raster import project, query, rasterize
from .scene import Frame
from .shading import blinn_phong, pcf_lookup, sh_irradiance

# face materials
SKIN, EYE_L, EYE_R, TEETH, TONGUE = 0, 1, 2, 3, 4
HEAD_MATERIALS = {"body": SKIN, "eye_l": EYE_L, "eye_r": EYE_R, "teeth_upper": TEETH,
                  "teeth_lower": TEETH, "tongue": TONGUE}
# attribute channels
CANON, REF, MASKS, AO, LASH, COLOUR, NORMAL = (slice(0, 3), slice(3, 6), slice(6, 11), 11, 12,
                                               slice(13, 16), slice(16, 19))
MASK_NAMES = ("lips", "eyelids", "ears", "face", "mouth")
CHANNELS = 19
VISIBILITY_TOLERANCE = 1e-4  # relative depth slack of the vertex visibility test
SHADOW_RES = 192
SHADOW_HALF = 0.25  # metres: half the side of the shadow map's window, centred on the head
NECK_PIVOT = (0.0, -0.08, -0.05)  # head-local rotation centre of the neck (metres)
SKIN_WRAP = torch.tensor([0.35, 0.2, 0.15])  # wrap lighting per channel (cheap subsurface look)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0, 1)
    return t * t * (3 - 2 * t)


@dataclass
class SceneGeometry:
    """All triangles of a batch of frames, camera frame."""

    vertices: torch.Tensor  # (N, 3)
    faces: torch.Tensor  # (F, 3)
    face_image: torch.Tensor  # (F,)
    face_material: torch.Tensor  # (F,)
    face_template: torch.Tensor  # (F,) bool: a template triangle
    face_casts_shadow: torch.Tensor  # (F,) bool
    attributes: torch.Tensor  # (N, CHANNELS)
    head_vertices: torch.Tensor  # (B, Vr, 3) the head meshes
    head_rigid: torch.Tensor  # (B, 4, 4) head-local -> camera for rigidly moving (w = 1) points


class Renderer:
    """Holds the head model on a device; `render(frames, height, width)` draws a batch."""

    def __init__(self, model: HeadModel, device: str | torch.device = "cpu"):
        dev = self.device = torch.device(device)
        self.model = model
        self.vt, self.ft, self.vr = (model.template_vertex_count, model.template_face_count,
                                     model.vertex_count)
        self.faces = torch.as_tensor(model.faces, device=dev)
        self.deltas = model.torch_deltas(dev)
        self.base = torch.as_tensor(model.base_vertices(), device=dev)
        self.expr = torch.as_tensor(model.expression_deltas, device=dev)
        neutral = model.neutral
        centre, scale = canonical_frame(neutral[:self.vt])
        attr = np.zeros((self.vr, CHANNELS), np.float32)
        attr[:self.vt, CANON] = (neutral[:self.vt].astype(np.float64) - centre) / scale
        attr[:, REF] = neutral
        for k, name in enumerate(("lips", "eyelids", "ears", "face", "inside-mouth")):
            attr[:, MASKS.start + k] = model.uv_mask(name)
        attr[:, AO] = model.ao
        attr[:, LASH] = self._lash_weights(model)
        self.attr = torch.as_tensor(attr, device=dev)
        first = model.vertex_part[model.faces[:, 0]]
        material = np.array([HEAD_MATERIALS[PARTS[p]] for p in first])
        self.material = torch.as_tensor(material, device=dev)
        y, z = neutral[:, 1], neutral[:, 2]
        self.neck_weight = torch.as_tensor(_smoothstep(-0.175, -0.10, y + 0.5 * z),
                                           dtype=torch.float32, device=dev)
        self.pivot = torch.tensor(NECK_PIVOT, device=dev)
        self.features = app.FaceFeatures(model, dev)
        self.props = props_mod.PropBuilder(model, dev)
        self.region = torch.as_tensor(model.vertex_region.astype(np.int64), device=dev)
        self.eye_vertices = torch.as_tensor(np.flatnonzero(model.part_mask("eye_l", "eye_r")),
                                            device=dev)
        self.eye_rest = torch.as_tensor(neutral[model.part_mask("eye_l", "eye_r")].mean(0),
                                        device=dev)

    @staticmethod
    def _lash_weights(model: HeadModel) -> np.ndarray:
        """Dark lash line along the lid margins: 1 at the margin, fading over ~1.5 mm."""
        v = model.neutral
        lids = model.uv_mask("eyelids")
        skin = model.vertex_part == 0
        seam = v[skin & (lids > 0.3) & (lids < 0.7)]
        out = np.zeros(len(v), np.float32)
        near = np.flatnonzero(skin & (lids > 0.3))
        d = np.linalg.norm(v[near, None, :] - seam[None], axis=2).min(1)
        upper = v[near, 1] > model.eye_centres[0, 1] - 0.0015
        out[near] = np.exp(-(d / 0.0015) ** 2) * np.where(upper, 1.0, 0.35)
        return out

    # ---- geometry --------------------------------------------------------------------------------
    def head_shapes(self, frames: list[Frame]) -> tuple[torch.Tensor, torch.Tensor]:
        """Head-local vertices (B, Vr, 3): identity only, and identity with expression."""
        ids, rows = {}, []
        for f in frames:
            key = id(f.identity)
            if key not in ids:
                ids[key] = len(ids)
                rows.append(f.identity.weights)
            # identity computed once per distinct Identity object
        w = torch.as_tensor(np.stack(rows), dtype=torch.float32, device=self.device)
        shapes = self.base + (w @ self.deltas.reshape(len(self.deltas), -1)).reshape(-1, self.vr, 3)
        # macro targets move the whole head on the body: bring the eyes back to the origin
        shift = shapes[:, self.eye_vertices].mean(1) - self.eye_rest
        shapes = shapes - shift[:, None, :]
        which = torch.tensor([ids[id(f.identity)] for f in frames], device=self.device)
        e = torch.as_tensor(np.stack([f.expression for f in frames]), dtype=torch.float32,
                            device=self.device)
        ident = shapes[which]
        return ident, ident + (e @ self.expr.reshape(52, -1)).reshape(-1, self.vr, 3)

    def pose(self, frames: list[Frame]):
        """Per frame: head rotation R_h, torso rotation R_t, translation T, shake (camera frame)."""
        dev = self.device
        a = head_to_camera().to(dev)
        hr = torch.as_tensor(np.stack([f.head_rotation for f in frames]), dtype=torch.float32,
                             device=dev)
        tr = torch.as_tensor(np.stack([f.torso_rotation for f in frames]), dtype=torch.float32,
                             device=dev)
        r_h, r_t = a @ rotation_xyz(hr), a @ rotation_xyz(tr)
        pos = torch.as_tensor(np.stack([f.position for f in frames]), dtype=torch.float32,
                              device=dev)
        # the head-local origin (w = 1) lands at `position`: T = position - R_t p + R_h p
        t = pos - (r_t @ self.pivot) + (r_h @ self.pivot)
        shake = torch.as_tensor(np.stack([f.camera_rotation for f in frames]), dtype=torch.float32,
                                device=dev)
        return r_h, r_t, t, shake

    def place_head(self, local: torch.Tensor, r_h, r_t, t) -> torch.Tensor:
        """Head-local vertices (B, Vr, 3) -> world, the neck blending torso and head rotation."""
        rel = r_t.transpose(-1, -2) @ r_h
        vec = axis_angle(rel)  # (B, 3)
        per_vertex = rodrigues(vec[:, None, :] * self.neck_weight[None, :, None])  # (B, Vr, 3, 3)
        p = self.pivot
        bent = (per_vertex @ (local - p)[..., None])[..., 0] + p
        return bent @ r_t.transpose(-1, -2) + t[:, None, :]

    def geometry(self, frames: list[Frame]) -> SceneGeometry:
        dev = self.device
        b = len(frames)
        ident, local = self.head_shapes(frames)
        r_h, r_t, t, shake = self.pose(frames)
        world = self.place_head(local, r_h, r_t, t)
        head = world @ shake.transpose(-1, -2)
        normals = vertex_normals(head, self.faces)
        attr = self.attr.expand(b, -1, -1).clone()
        attr[..., NORMAL] = normals
        verts, faces, img, mat, tmpl, shadow, attrs = [head.reshape(-1, 3)], [], [], [], [], [], [
            attr.reshape(-1, CHANNELS)]
        fr = len(self.faces)
        offs = (torch.arange(b, device=dev) * self.vr)[:, None, None]
        faces.append((self.faces[None] + offs).reshape(-1, 3))
        img.append(torch.arange(b, device=dev).repeat_interleave(fr))
        mat.append(self.material.repeat(b))
        is_t = torch.zeros(fr, dtype=torch.bool, device=dev)
        is_t[:self.ft] = True
        tmpl.append(is_t.repeat(b))
        shadow.append(torch.ones(b * fr, dtype=torch.bool, device=dev))
        head_t = t + (r_t @ self.pivot) - (r_h @ self.pivot)
        rigid = torch.zeros(b, 4, 4, device=dev)
        rigid[:, :3, :3] = shake @ r_h
        rigid[:, :3, 3] = (shake @ head_t[..., None])[..., 0]
        rigid[:, 3, 3] = 1
        n_used = b * self.vr
        built: dict[tuple[int, int], props_mod.PropMesh | None] = {}
        for i, f in enumerate(frames):
            for prop in f.props:
                key = (id(prop), id(f.identity))
                if key not in built or prop.attach == "world":
                    built[key] = self.props.build(prop, ident[i], f)
                mesh = built[key]
                if mesh is None:
                    continue
                if prop.attach == "head":
                    rot, tr = r_h[i], head_t[i]
                elif prop.attach == "torso":
                    rot, tr = r_t[i], t[i]
                else:
                    rot, tr = torch.eye(3, device=dev), torch.zeros(3, device=dev)
                pv = (mesh.vertices @ rot.T + tr) @ shake[i].T
                pn = vertex_normals(pv, mesh.faces)
                a = torch.zeros(len(pv), CHANNELS, device=dev)
                a[:, REF] = mesh.vertices
                a[:, AO] = 1.0
                a[:, COLOUR] = mesh.colours
                a[:, NORMAL] = pn
                verts.append(pv)
                attrs.append(a)
                faces.append(mesh.faces + n_used)
                img.append(torch.full((len(mesh.faces),), i, device=dev))
                mat.append(torch.full((len(mesh.faces),), mesh.material, device=dev))
                tmpl.append(torch.zeros(len(mesh.faces), dtype=torch.bool, device=dev))
                shadow.append(torch.full((len(mesh.faces),), mesh.casts_shadow, device=dev))
                n_used += len(pv)
        return SceneGeometry(torch.cat(verts), torch.cat(faces), torch.cat(img), torch.cat(mat),
                             torch.cat(tmpl), torch.cat(shadow), torch.cat(attrs), head, rigid)

    # ---- the whole frame -----------------------------------------------------------------------
    def render(self, frames: list[Frame], height: int, width: int,
               effects: bool = True) -> dict[str, torch.Tensor]:
        """Render frames (any mix of clips) as one batch; see the module docstring."""
        dev = self.device
        b, hw = len(frames), height * width
        geo = self.geometry(frames)
        k = torch.as_tensor(np.stack([f.intrinsics for f in frames]), dtype=torch.float32,
                            device=dev)
        screen = project(geo.vertices, k[geo_vertex_image(geo, b, self.vr)])
        drawn = self._cull(geo)
        frags = rasterize(screen, geo.faces, geo.face_image, b, height, width, face_mask=drawn)
        # G-buffer of the hit pixels only
        pix = torch.nonzero(frags.hit.reshape(-1)).squeeze(1)
        face = frags.face.reshape(-1)[pix]
        bary = frags.bary.reshape(-1, 3)[pix]
        corner = geo.faces[face]
        gp = (geo.attributes[corner] * bary[..., None]).sum(1)
        in_template = geo.face_template[face]
        tpix = pix[in_template]
        canonical = torch.zeros(b * hw, 3, device=dev)
        canonical[tpix] = gp[in_template, CANON]
        mask = torch.zeros(b * hw, device=dev)
        mask[tpix] = 1.0
        region = torch.full((b * hw,), -1, dtype=torch.long, device=dev)
        best = torch.gather(corner[in_template], 1, bary[in_template].argmax(1, keepdim=True))[:, 0]
        region[tpix] = self.region[best % self.vr]
        out = {"depth": frags.depth, "canonical": canonical.view(b, height, width, 3),
               "mask": mask.view(b, height, width), "region": region.view(b, height, width),
               "intrinsics": k}
        colour = self.shade(frames, geo, pix, face, gp, frags.depth.reshape(-1)[pix], k,
                            height, width)
        linear = render_backgrounds([f.background for f in frames], height, width, dev)
        flat = linear.permute(0, 2, 3, 1).reshape(-1, 3)
        flat[pix] = colour
        linear = flat.view(b, height, width, 3).permute(0, 3, 1, 2)
        if effects:
            rgb = apply_effects(linear, [f.effects for f in frames], out["mask"])
        else:
            rgb = linear.clamp(0, 1) ** (1 / 2.2)
        out["rgb"] = (rgb * 255 + 0.5).clamp(0, 255).to(torch.uint8)
        xy, vis, vz = self.vertex_truth(geo, screen, drawn, b, height, width)
        out.update(vertex_xy=xy, vertex_visible=vis, vertex_depth=vz, head_pose=geo.head_rigid)
        out["blendshapes"] = torch.as_tensor(np.stack([f.expression for f in frames]),
                                             dtype=torch.float32, device=dev)
        return out

    def _cull(self, geo: SceneGeometry) -> torch.Tensor:
        """Triangles to draw: all but the back faces of the closed head surface (skin). Back faces
        of a closed surface are always hidden by its front, so this changes no visible pixel."""
        tri = geo.vertices[geo.faces]
        n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
        back = (n * tri[:, 0]).sum(-1) >= 0
        return ~(back & (geo.face_material == SKIN))

    def vertex_truth(self, geo: SceneGeometry, screen: torch.Tensor, drawn: torch.Tensor, b: int,
                     h: int, w: int):
        """Template vertices: pixel positions (B, Vt, 2), visibility (B, Vt), camera z (B, Vt)."""
        idx = (torch.arange(b, device=self.device)[:, None] * self.vr
               + torch.arange(self.vt, device=self.device)[None]).reshape(-1)
        pts = screen[idx]
        img = torch.arange(b, device=self.device).repeat_interleave(self.vt)
        z = pts[:, 2]
        inside = ((pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
                  & (z > 1e-3))
        # a vertex none of whose triangles is drawn lies on the far side of the closed skin,
        # where the ray to it must have entered the surface earlier: hidden, no test needed
        fronted = torch.zeros(geo.vertices.shape[0], dtype=torch.bool, device=self.device)
        fronted[geo.faces[drawn].reshape(-1)] = True
        sel = torch.nonzero(inside & fronted[idx]).squeeze(1)
        zs = z[sel]
        hit = query(screen, geo.faces, geo.face_image, b, h, w, pts[sel, :2], img[sel],
                    face_mask=drawn, point_depth=zs * (1 + VISIBILITY_TOLERANCE))
        # visible: a drawn triangle covers the point (its own, at least, when it faces the camera)
        # and nothing is nearer than the vertex itself
        ok = hit.hit & (zs <= hit.depth * (1 + VISIBILITY_TOLERANCE))
        visible = torch.zeros_like(inside)
        visible[sel] = ok
        return (pts[:, :2].reshape(b, self.vt, 2), visible.reshape(b, self.vt),
                z.reshape(b, self.vt))

    # ---- shading ---------------------------------------------------------------------------------
    def shade(self, frames: list[Frame], geo: SceneGeometry, pix: torch.Tensor,
              face: torch.Tensor, gp: torch.Tensor, depth: torch.Tensor, k: torch.Tensor,
              h: int, w: int) -> torch.Tensor:
        """Linear RGB (P, 3) of the hit pixels `pix` (flat indices into (B, H, W))."""
        dev = self.device
        if pix.numel() == 0:
            return torch.zeros(0, 3, device=dev)
        image = torch.div(pix, h * w, rounding_mode="floor")
        mat = geo.face_material[face]
        py = (torch.div(pix, w, rounding_mode="floor") % h).float() + 0.5
        px = (pix % w).float() + 0.5
        kk = k[image]
        pos = torch.stack([(px - kk[:, 0, 2]) / kk[:, 0, 0] * depth,
                           (py - kk[:, 1, 2]) / kk[:, 1, 1] * depth, depth], -1)
        view = -pos / pos.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        n = gp[:, NORMAL]
        n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        tri = geo.vertices[geo.faces[face]]
        fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
        n = torch.where(((fn * view).sum(-1) < 0)[:, None], -n, n)  # back faces: light our side
        albedo, spec, shin = self._materials(frames, image, mat, gp)
        ao = gp[:, AO].clamp(0, 1)
        light = self._lights(frames)
        colour = albedo * sh_irradiance(n, light["sh"][image]) * (0.25 + 0.75 * ao)[:, None]
        is_skin = ((mat == SKIN) | (mat == props_mod.HAND)).float()[:, None]
        wrap = is_skin * SKIN_WRAP.to(dev)  # light wraps round skin, red the furthest
        for li in range(light["dirs"].shape[1]):
            ldir = light["dirs"][image, li]
            lcol = light["cols"][image, li]
            ndl = (n * ldir).sum(-1)
            diff = ((ndl[:, None] + wrap) / (1 + wrap)).clamp_min(0)
            if li == 0:
                vis = torch.zeros_like(ndl)
                lit = torch.nonzero(ndl > -0.3).squeeze(1)
                vis[lit] = self._shadows(frames, geo, pos[lit], n[lit], image[lit], light)
            else:
                vis = 0.5 + 0.5 * ao
            colour = colour + albedo * lcol * diff * vis[:, None]
            lobe = blinn_phong(n, view, ldir, shin) * (ndl > 0).float()
            colour = colour + lcol * (spec * lobe * vis * (0.4 + 0.6 * ao))[:, None]
        return colour

    def _materials(self, frames: list[Frame], image: torch.Tensor, mat: torch.Tensor,
                   gp: torch.Tensor):
        """Albedo (P, 3), specular strength (P,) and shininess (P,) of every hit pixel, one look
        (identity) at a time."""
        dev = self.device
        albedo = gp[:, COLOUR].clone()
        spec = torch.full((len(mat),), 0.15, device=dev)
        shin = torch.full((len(mat),), 30.0, device=dev)
        ref = gp[:, REF]
        groups: dict[int, list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault(id(f.look), []).append(i)
        for members in groups.values():
            look = app.stack_looks([frames[members[0]].look], dev)
            if len(groups) == 1:
                sel = torch.arange(len(mat), device=dev)
            else:
                sel = torch.nonzero(torch.isin(image, torch.tensor(members, device=dev))).squeeze(1)
            m = mat[sel]
            skin = sel[m == SKIN]
            if skin.numel():
                masks = {name: gp[skin, MASKS.start + i] for i, name in enumerate(MASK_NAMES)}
                masks["lash"] = gp[skin, LASH]
                albedo[skin], spec[skin], shin[skin] = app.skin_albedo(ref[skin], masks, look,
                                                                       self.features)
            eye = sel[(m == EYE_L) | (m == EYE_R)]
            if eye.numel():
                albedo[eye], _ = app.eye_albedo(ref[eye], (mat[eye] == EYE_R).long(), look,
                                                self.features)
                spec[eye], shin[eye] = 0.6, 400.0
            teeth = sel[m == TEETH]
            albedo[teeth] = look["teeth"]
            spec[teeth], shin[teeth] = 0.3, 60.0
            tongue = sel[m == TONGUE]
            albedo[tongue] = torch.tensor([0.45, 0.12, 0.12], device=dev)
            spec[tongue], shin[tongue] = 0.25, 40.0
            props_mod.prop_albedo(m, ref[sel], albedo, spec, shin, look, sel)
        return albedo, spec, shin

    def _lights(self, frames: list[Frame]) -> dict[str, torch.Tensor]:
        dev = self.device
        nl = max(len(f.lighting.directions) for f in frames)
        dirs = torch.zeros(len(frames), nl, 3, device=dev)
        cols = torch.zeros(len(frames), nl, 3, device=dev)
        for i, f in enumerate(frames):
            m = len(f.lighting.directions)
            dirs[i, :m] = torch.as_tensor(f.lighting.directions, dtype=torch.float32)
            cols[i, :m] = torch.as_tensor(f.lighting.colours, dtype=torch.float32)
            dirs[i, m:, 2] = -1
        sh = torch.as_tensor(np.stack([f.lighting.sh for f in frames]), dtype=torch.float32,
                             device=dev)
        soft = torch.tensor([f.lighting.shadow_softness for f in frames], device=dev)
        return {"dirs": dirs, "cols": cols, "sh": sh, "soft": soft}

    def _shadows(self, frames, geo: SceneGeometry, pos, n, image, light) -> torch.Tensor:
        """Visibility (P,) of the first light at the shaded points, from one orthographic shadow
        map per frame centred on the head. Lookups start 2.5 texels off the surface along the
        normal, with a slope-scaled depth bias (no self-shadowing stripes)."""
        b = len(frames)
        centre = geo.head_rigid[:, :3, 3]
        half = SHADOW_HALF
        texel = 2 * half / SHADOW_RES
        d = light["dirs"][:, 0]
        vimg = geo_vertex_image(geo, b, self.vr)
        ls = _light_space_per_point(geo.vertices, d[vimg], centre[vimg], half, SHADOW_RES)
        tri = geo.vertices[geo.faces]
        fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
        away = (fn * d[geo.face_image]).sum(-1) <= 0  # skin facing away from the light: hidden
        casters = geo.face_casts_shadow & ~(away & (geo.face_material == SKIN))
        smap = rasterize(ls, geo.faces, geo.face_image, b, SHADOW_RES, SHADOW_RES,
                         perspective=False, face_mask=casters)
        cos = (n * d[image]).sum(-1).clamp(0.05, 1)
        slope = (1 - cos * cos).sqrt() / cos
        pl = _light_space_per_point(pos + n * 2.5 * texel, d[image], centre[image], half,
                                    SHADOW_RES)
        return pcf_lookup(smap.depth, image, pl[:, 0], pl[:, 1], pl[:, 2] - texel * (
            1 + 2 * slope.clamp(max=4)), light["soft"][image], bias=0.0)


def _light_space_per_point(points, direction, centre, half, res):
    """Orthographic light-view (u, v, depth) of points (P, 3) for per-point light directions and
    window centres (P, 3); see occlusion.light_space."""
    a, bvec = orthonormal_basis(direction)
    rel = points - centre
    scale = res / (2 * half)
    u = (rel * a).sum(-1) * scale + res / 2
    v = -(rel * bvec).sum(-1) * scale + res / 2
    depth = half * 4 - (rel * direction).sum(-1)
    return torch.stack([u, v, depth], -1)


def geo_vertex_image(geo: SceneGeometry, b: int, vr: int) -> torch.Tensor:
    """Image index of every vertex of the scene (heads first, then props in face order)."""
    n = geo.vertices.shape[0]
    img = torch.empty(n, dtype=torch.long, device=geo.vertices.device)
    img[:b * vr] = torch.arange(b, device=img.device).repeat_interleave(vr)
    if n > b * vr:
        # every prop vertex belongs to the image of a face that uses it
        fi = geo.faces.reshape(-1)
        img.scatter_(0, fi, geo.face_image.repeat_interleave(3))
    return img
