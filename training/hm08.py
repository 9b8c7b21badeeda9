# SPDX-License-Identifier: GPL-3.0-or-later
"""The MakeHuman hm08 base mesh (`mpfb2/3dobjs/base.obj`): vertices, quads, UVs, face groups."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DECIMETRE = 0.1  # hm08 units are decimetres; everything in training/ is metres


@dataclass
class BaseMesh:
    vertices: np.ndarray  # (19158, 3) float64, decimetres, x = subject's left, y = up, z = forward
    uvs: np.ndarray  # (T, 2) float64 texture coordinates
    quads: np.ndarray  # (Q, 4) int64 vertex indices (hm08 faces are all quads)
    quad_uvs: np.ndarray  # (Q, 4) int64 indices into uvs
    quad_group: np.ndarray  # (Q,) int64 index into groups
    groups: list[str]  # OBJ group names ("body", "helper-l-eye", ...)

    def group_quads(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.quad_group == self.groups.index(name))


def parse_obj(text: str) -> BaseMesh:
    """Parse the hm08 OBJ (v, vt, g, f lines with v/vt pairs; quads only)."""
    verts, uvs, quads, quad_uvs, quad_group, groups = [], [], [], [], [], []
    group = -1
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "v":
            verts.append(rest)
        elif tag == "vt":
            uvs.append(rest)
        elif tag == "g":
            groups.append(rest.strip())
            group = len(groups) - 1
        elif tag == "f":
            corners = [c.split("/") for c in rest.split()]
            if len(corners) != 4:
                raise ValueError("hm08 faces are expected to be quads")
            quads.append([int(c[0]) - 1 for c in corners])
            quad_uvs.append([int(c[1]) - 1 for c in corners])
            quad_group.append(group)
    return BaseMesh(
        vertices=np.array(" ".join(verts).split(), np.float64).reshape(-1, 3),
        uvs=np.array(" ".join(uvs).split(), np.float64).reshape(-1, 2),
        quads=np.array(quads, np.int64), quad_uvs=np.array(quad_uvs, np.int64),
        quad_group=np.array(quad_group, np.int64), groups=groups)


def split_quads(quads: np.ndarray) -> np.ndarray:
    """(Q, 4) -> (2Q, 3) triangles (a, b, c), (a, c, d), keeping the winding; quad q gives rows
    2q and 2q + 1."""
    tris = np.stack([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]], axis=1)
    return tris.reshape(-1, 3)
