# SPDX-License-Identifier: GPL-3.0-or-later
"""A small check on real photographs: does the model's face mask land on the head, and does the
add-on's automatic face box find it?

    python -m training.real_images MODEL.onnx [MODEL2.onnx ...] --data DIR [--out TABLE.md]

DIR holds scikit-image's sample photographs (`skimage/data/` of the scikit-image 0.24.0 wheel:
`pip download scikit-image==0.24.0 --no-deps` and unzip it). Each image has a hand-drawn head box
(hair to chin, back of the head or ear to ear; footage pixels), rough by a few pixels:
- astronaut.png: a colour portrait, the orange suit and the flag are face-coloured distractors;
- camera.png: a greyscale wide shot, the head in profile, about 1/25 of the frame;
- coffee.png: no face at all.

Per image, from the whole image at the model's input size (as the add-on's face-finding pass
sees it): `on_head`, the share of the mask's pixels (> 0.5) inside the head box (1 is best);
`mask_share`, the mask's share of the whole image (for the faceless image: 0 is best); and
`box_iou`, the intersection over union of the add-on's automatic face box (`core.pipeline`'s
detection pass, before its margin) with the head box ("none" where it finds no face, which is
right for the faceless image). Three photographs are a sanity check, not a benchmark.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .evaluate import OnnxPredictor, load_image

IMAGES = {  # name: head box (x0, y0, x1, y1) in image pixels, or None for no face
    "astronaut.png": (155, 15, 300, 190),
    "camera.png": (158, 68, 262, 200),
    "coffee.png": None,
}


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def auto_box(predictor: OnnxPredictor, rgb: np.ndarray):
    """The add-on's face box for a one-frame clip (no margin, no smoothing), or None."""
    from face_anything_addon.core.frames import Frame
    from face_anything_addon.core.pipeline import Pipeline, PipelineError, PipelineSettings

    settings = PipelineSettings(window=1, pipelined=False, box_margin=0.0, box_smoothing=0.0)
    try:
        boxes = Pipeline(predictor.session, settings).detect_boxes([Frame(0, rgb)], total=1)
    except PipelineError:
        return None
    return boxes[0]


def score(model: Path, data: Path, threads: int = 0) -> dict[str, dict[str, float | None]]:
    predictor = OnnxPredictor(model, threads)
    rows = {}
    for name, head in IMAGES.items():
        rgb = np.ascontiguousarray(load_image(data / name), np.float32)
        mask = predictor(rgb.transpose(2, 0, 1)[None])["mask"][0] > 0.5  # back at h x w
        row: dict[str, float | None] = {"mask_share": float(mask.mean())}
        box = auto_box(predictor, rgb)
        if head is not None:
            x0, y0, x1, y1 = head
            inside = mask[y0:y1, x0:x1].sum()
            row["on_head"] = float(inside / max(mask.sum(), 1))
            row["box_iou"] = box_iou(box, head) if box is not None else None
        else:
            row["box_found"] = float(box is not None)
        rows[name] = row
    return rows


def table(results: dict[str, dict[str, dict]]) -> str:
    lines = ["| model | image | on_head | mask_share | auto box IoU |", "| --- | --- | --- | --- | --- |"]
    for model, rows in results.items():
        for name, r in rows.items():
            on = f"{r['on_head']:.2f}" if "on_head" in r else "-"
            if "box_iou" in r:
                box = "none" if r["box_iou"] is None else f"{r['box_iou']:.2f}"
            else:
                box = "a box (wrong)" if r["box_found"] else "none (right)"
            lines.append(f"| {model} | {name} | {on} | {r['mask_share']:.3f} | {box} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("models", type=Path, nargs="+")
    p.add_argument("--data", type=Path, required=True, help="folder with the photographs")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the table here")
    args = p.parse_args(argv)
    missing = [n for n in IMAGES if not (args.data / n).is_file()]
    if missing:
        raise SystemExit(f"{args.data} lacks {', '.join(missing)}: unzip skimage/data/ of the "
                         f"scikit-image 0.24.0 wheel there")
    text = table({m.name: score(m, args.data, args.threads) for m in args.models})
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
