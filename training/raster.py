# SPDX-License-Identifier: GPL-3.0-or-later
"""A vectorised triangle rasteriser in torch (CPU and CUDA), exact z-buffer, no per-pixel loops.

Screen space: `u` to the right, `v` down, in pixels of the image; the centre of pixel (row i,
column j) is (j + 0.5, i + 0.5), the contract's convention. A sample is inside a triangle when all
its barycentric coordinates are >= -EPS (so samples on shared edges are never lost). Depth test:
the nearest fragment wins, ties go to the lowest triangle index, so results do not depend on the
order of floating-point reductions. Perspective views interpolate with perspective-correct
barycentrics (attributes are exact linear functions on each 3D triangle); orthographic views
(shadow maps) interpolate linearly.

Many images are rasterised at once: every triangle carries the index of the image it belongs to.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

EPS = 1e-5  # barycentric slack at triangle edges
MAX_FRAGMENTS = 1 << 22  # fragments enumerated per chunk (bounds memory)
SPAN_SLACK = 0.01  # pixels added to each scanline span (covers the EPS slack of the inside test)
_EMPTY = torch.iinfo(torch.int64).max


@dataclass
class Fragments:
    """The visible surface at each sample."""

    face: torch.Tensor  # (...,) int64, index of the winning triangle, -1 where nothing was hit
    bary: torch.Tensor  # (..., 3) float32, barycentrics of the sample in that triangle
    depth: torch.Tensor  # (...,) float32, camera z (or orthographic depth), 0 where empty

    @property
    def hit(self) -> torch.Tensor:
        return self.face >= 0


def project(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pinhole projection of camera-space points (..., 3) with intrinsics K (..., 3, 3) -> (..., 3)
    holding (u, v, z). K must broadcast against the points' leading dimensions."""
    z = points[..., 2]
    safe = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
    u = K[..., 0, 0] * points[..., 0] / safe + K[..., 0, 1] * points[..., 1] / safe + K[..., 0, 2]
    v = K[..., 1, 1] * points[..., 1] / safe + K[..., 1, 2]
    return torch.stack([u, v, z], dim=-1)


def _barycentric(tri: torch.Tensor, px: torch.Tensor, py: torch.Tensor, perspective: bool):
    """Barycentrics and depth of points (px, py) in triangles tri (n, 3, 3) of (u, v, z)."""
    ax, ay = tri[:, 0, 0] - px, tri[:, 0, 1] - py
    bx, by = tri[:, 1, 0] - px, tri[:, 1, 1] - py
    cx, cy = tri[:, 2, 0] - px, tri[:, 2, 1] - py
    la, lb, lc = bx * cy - by * cx, cx * ay - cy * ax, ax * by - ay * bx
    area = la + lb + lc
    area = torch.where(area == 0, torch.ones_like(area), area)
    lam = torch.stack([la, lb, lc], dim=-1) / area[:, None]
    inside = (lam >= -EPS).all(dim=-1)
    if perspective:
        w = lam / tri[:, :, 2]
        zinv = w.sum(dim=-1)
        zinv = torch.where(zinv > 0, zinv, torch.full_like(zinv, 1e-30))
        depth = 1.0 / zinv
        bary = w * depth[:, None]
    else:
        depth = (lam * tri[:, :, 2]).sum(dim=-1)
        bary = lam
    return bary, depth, inside


def _prepare(screen, faces, face_image, perspective, near, face_mask):
    tri = screen[faces]  # (T, 3, 3)
    ok = torch.isfinite(tri).all(dim=(1, 2))
    if perspective:
        ok &= (tri[:, :, 2] > near).all(dim=1)
    u, v = tri[:, :, 0], tri[:, :, 1]
    area = (u[:, 1] - u[:, 0]) * (v[:, 2] - v[:, 0]) - (u[:, 2] - u[:, 0]) * (v[:, 1] - v[:, 0])
    ok &= area.abs() > 1e-12
    if face_mask is not None:
        ok &= face_mask
    return tri, ok


def _expand(counts: torch.Tensor, limit: int):
    """Split the triangles into chunks of at most `limit` fragments: yields (ids, local offsets)."""
    ids = torch.nonzero(counts > 0).squeeze(1)
    if ids.numel() == 0:
        return
    c = counts[ids]
    ends = torch.cumsum(c, 0)
    start = 0
    while start < ids.numel():
        base = ends[start - 1] if start > 0 else ends.new_zeros(())
        stop = int(torch.searchsorted(ends, base + limit, right=True))
        stop = max(stop, start + 1)
        cid, cc = ids[start:stop], c[start:stop]
        rep = torch.repeat_interleave(torch.arange(cid.numel(), device=counts.device), cc)
        first = torch.cumsum(cc, 0) - cc
        local = torch.arange(int(cc.sum()), device=counts.device) - first[rep]
        yield cid[rep], local
        start = stop


def _key(depth: torch.Tensor, tri_ids: torch.Tensor) -> torch.Tensor:
    bits = depth.clamp_min(0).to(torch.float32).view(torch.int32).to(torch.int64)
    return (bits << 32) | tri_ids


def rasterize(screen: torch.Tensor, faces: torch.Tensor, face_image: torch.Tensor, images: int,
              height: int, width: int, perspective: bool = True, near: float = 1e-3,
              face_mask: torch.Tensor | None = None) -> Fragments:
    """Rasterise triangles at the pixel centres of `images` images of height x width.

    screen: (N, 3) per vertex (u, v, depth); faces: (T, 3) int64 vertex indices; face_image: (T,)
    int64 image of each triangle; face_mask: optional (T,) bool, triangles to draw (e.g. culling).
    With `perspective`, triangles with a vertex nearer than `near` are dropped (not clipped).
    Returns Fragments of shape (images, height, width).
    """
    dev = screen.device
    tri, ok = _prepare(screen, faces, face_image, perspective, near, face_mask)
    u, v = tri[:, :, 0], tri[:, :, 1]
    x0 = torch.ceil(u.min(1).values - 0.5).clamp(0, width).long()
    x1 = torch.floor(u.max(1).values - 0.5).clamp(-1, width - 1).long()
    y0 = torch.ceil(v.min(1).values - 0.5).clamp(0, height).long()
    y1 = torch.floor(v.max(1).values - 0.5).clamp(-1, height - 1).long()
    nx, ny = (x1 - x0 + 1).clamp_min(0), (y1 - y0 + 1).clamp_min(0)
    rows = torch.where(ok & (nx > 0), ny, torch.zeros_like(ny))
    best = torch.full((images * height * width,), _EMPTY, dtype=torch.int64, device=dev)
    for rid, row in _expand(rows, MAX_FRAGMENTS):
        # scanlines: the span of each triangle on each pixel-centre row, widened by SPAN_SLACK
        # so it holds every centre the barycentric test (with its EPS) can accept
        py_row = y0[rid] + row
        xl, xr = _row_span(tri[rid], py_row.to(tri.dtype) + 0.5)
        sx0 = torch.maximum(torch.ceil(xl - 0.5 - SPAN_SLACK).long(), x0[rid])
        sx1 = torch.minimum(torch.floor(xr - 0.5 + SPAN_SLACK).long(), x1[rid])
        span = (sx1 - sx0 + 1).clamp_min(0)
        for k, local in _expand(span, MAX_FRAGMENTS):
            tid = rid[k]
            px = sx0[k] + local
            py = py_row[k]
            _, depth, inside = _barycentric(tri[tid], px + 0.5, py + 0.5, perspective)
            _accumulate(best, tid, px, py, depth, inside, face_image, height, width)
    return _resolve(best, tri, images, height, width, perspective, screen.dtype)


def _row_span(tri: torch.Tensor, yc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x extent (left, right) of triangles (n, 3, 3) on the horizontal lines y = yc (n,)."""
    lo = torch.full_like(yc, float("inf"))
    hi = torch.full_like(yc, float("-inf"))
    for i, j in ((0, 1), (1, 2), (2, 0)):
        xi, yi, xj, yj = tri[:, i, 0], tri[:, i, 1], tri[:, j, 0], tri[:, j, 1]
        crosses = ((yi - yc) * (yj - yc) <= 0) & (yi != yj)
        t = ((yc - yi) / torch.where(yi != yj, yj - yi, torch.ones_like(yj))).clamp(0, 1)
        x = xi + t * (xj - xi)
        lo = torch.where(crosses, torch.minimum(lo, x), lo)
        hi = torch.where(crosses, torch.maximum(hi, x), hi)
    # rows that only graze a vertex or a horizontal edge: fall back to the bounding box
    none = lo > hi
    lo = torch.where(none, tri[:, :, 0].min(1).values, lo)
    hi = torch.where(none, tri[:, :, 0].max(1).values, hi)
    return lo, hi


def _accumulate(best, tid, px, py, depth, inside, face_image, height, width) -> None:
    tid, px, py, depth = tid[inside], px[inside], py[inside], depth[inside]
    pix = (face_image[tid] * height + py) * width + px
    best.scatter_reduce_(0, pix, _key(depth, tid), reduce="amin", include_self=True)


def _resolve(best, tri, images, height, width, perspective, dtype) -> Fragments:
    dev = best.device
    hit = best != _EMPTY
    face = torch.where(hit, best & 0xFFFFFFFF, torch.full_like(best, -1))
    pix = torch.nonzero(hit).squeeze(1)
    bary = torch.zeros(best.numel(), 3, device=dev)
    depth = torch.zeros(best.numel(), device=dev)
    if pix.numel():
        px = (pix % width).to(dtype) + 0.5
        py = (torch.div(pix, width, rounding_mode="floor") % height).to(dtype) + 0.5
        b, d, _ = _barycentric(tri[face[pix]], px, py, perspective)
        bary[pix], depth[pix] = b.float(), d.float()
    shape = (images, height, width)
    return Fragments(face.view(shape), bary.view(*shape, 3), depth.view(shape))


def query(screen: torch.Tensor, faces: torch.Tensor, face_image: torch.Tensor, images: int,
          height: int, width: int, points: torch.Tensor, point_image: torch.Tensor,
          perspective: bool = True, near: float = 1e-3,
          face_mask: torch.Tensor | None = None, cell: int = 2,
          point_depth: torch.Tensor | None = None) -> Fragments:
    """The visible surface at arbitrary sub-pixel points (Q, 2) (u, v) of images point_image (Q,).

    Same triangles, depth test and tie rule as `rasterize`; points outside the image hit nothing.
    Points are bucketed into square cells of `cell` pixels; each triangle is tested against the
    points of the cells its bounding box overlaps. With `point_depth` (Q,) (an occlusion test:
    is anything nearer than this depth?), triangles lying entirely behind every point of a cell
    are skipped there, so the returned surface is exact wherever it is nearer than point_depth
    and may be missing where it is not. Returns Fragments of shape (Q,).
    """
    dev = screen.device
    q = points.shape[0]
    tri, ok = _prepare(screen, faces, face_image, perspective, near, face_mask)
    inside_img = ((points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0)
                  & (points[:, 1] < height) & torch.isfinite(points).all(1))
    height, width = (height + cell - 1) // cell, (width + cell - 1) // cell
    points_c = points / cell
    tri = tri.clone()
    tri[:, :, :2] = tri[:, :, :2] / cell  # cell units (barycentrics are unchanged by the scale)
    # bucket the query points by the cell they fall in
    cx, cy = torch.floor(points_c[:, 0]).long(), torch.floor(points_c[:, 1]).long()
    cid = torch.where(inside_img, (point_image * height + cy) * width + cx,
                      torch.full_like(cx, images * height * width))
    order = torch.argsort(cid)
    per_cell = torch.bincount(cid, minlength=images * height * width + 1)[:-1]
    cell_start = torch.cumsum(per_cell, 0) - per_cell
    # the farthest query point of each cell: triangles entirely behind it cannot matter there
    # unless the query asks for the nearest surface itself (point_depth None: all are tested)
    far = None
    if point_depth is not None:
        far = torch.full((images * height * width + 1,), float("-inf"), device=dev)
        far.scatter_reduce_(0, cid, point_depth.to(far.dtype), reduce="amax", include_self=True)
    # cells overlapped by each triangle's bounding box
    u, v = tri[:, :, 0], tri[:, :, 1]
    umin, umax = u.min(1).values, u.max(1).values
    vmin, vmax = v.min(1).values, v.max(1).values
    x0 = torch.floor(umin).clamp(0, width).long()
    x1 = torch.floor(umax).clamp(-1, width - 1).long()
    y0 = torch.floor(vmin).clamp(0, height).long()
    y1 = torch.floor(vmax).clamp(-1, height - 1).long()
    nx, ny = (x1 - x0 + 1).clamp_min(0), (y1 - y0 + 1).clamp_min(0)
    counts = torch.where(ok, nx * ny, torch.zeros_like(nx))
    tri_near = tri[:, :, 2].min(1).values
    best = torch.full((q,), _EMPTY, dtype=torch.int64, device=dev)
    for tid, local in _expand(counts, MAX_FRAGMENTS):
        px = x0[tid] + local % nx[tid]
        py = y0[tid] + torch.div(local, nx[tid], rounding_mode="floor")
        c = (face_image[tid] * height + py) * width + px
        n = per_cell[c]
        keep = n > 0
        if far is not None:
            keep &= tri_near[tid] <= far[c]
        tid, c, n = tid[keep], c[keep], n[keep]
        if tid.numel() == 0:
            continue
        rep = torch.repeat_interleave(torch.arange(tid.numel(), device=dev), n)
        first = torch.cumsum(n, 0) - n
        k = torch.arange(rep.numel(), device=dev) - first[rep]
        pid = order[cell_start[c[rep]] + k]
        tid = tid[rep]
        # cheap bounding-box test before the barycentric one
        qx, qy = points_c[pid, 0], points_c[pid, 1]
        inbox = ((qx >= umin[tid] - 1e-4) & (qx <= umax[tid] + 1e-4)
                 & (qy >= vmin[tid] - 1e-4) & (qy <= vmax[tid] + 1e-4))
        pid, tid = pid[inbox], tid[inbox]
        _, depth, inside = _barycentric(tri[tid], points_c[pid, 0], points_c[pid, 1], perspective)
        best.scatter_reduce_(0, pid[inside], _key(depth[inside], tid[inside]), reduce="amin",
                             include_self=True)
    hit = best != _EMPTY
    face = torch.where(hit, best & 0xFFFFFFFF, torch.full_like(best, -1))
    bary = torch.zeros(q, 3, device=dev)
    depth = torch.zeros(q, device=dev)
    idx = torch.nonzero(hit).squeeze(1)
    if idx.numel():
        b, d, _ = _barycentric(tri[face[idx]], points_c[idx, 0], points_c[idx, 1], perspective)
        bary[idx], depth[idx] = b.float(), d.float()
    return Fragments(face, bary, depth)


def interpolate(attributes: torch.Tensor, faces: torch.Tensor, frags: Fragments) -> torch.Tensor:
    """Interpolate per-vertex attributes (N, C) at the fragments -> (..., C); 0 where empty."""
    f = frags.face.clamp_min(0)
    corner = faces[f]  # (..., 3)
    vals = (attributes[corner] * frags.bary[..., None]).sum(dim=-2)
    return torch.where(frags.hit[..., None], vals, torch.zeros_like(vals))
