# SPDX-License-Identifier: GPL-3.0-or-later
"""What an animator gets: the captured face mesh against the true one, in millimetres.

    python -m training.evaluate_mesh MODEL.onnx [MODEL2.onnx ...] [--count 48] [--size 256]
        [--window 4] [--cache out/eval/mesh256_w4_n48.npz] [--out TABLE.md]

Each validation clip (validation identities, rendered at --size with every template vertex's
true camera-space position) goes through the add-on's whole capture path, `core.capture_run.
run_capture`: automatic face region, the pipeline, the capture solve with the bundled template
(the whole clip one window, as `training.evaluate --capture`). Every captured frame's mesh is
compared with the true mesh of that frame:
- `mesh_mm` / `mesh_mm_median`: mean / median vertex distance after the best similarity
  transform per frame (Umeyama), so the shape and the expression are judged, not where the head
  is or how large it came out; over all template vertices, seen or filled by the solve;
- `seen_mm`: the same over the vertices the frame observed;
- `neutral_mm`: the bundled neutral template aligned to the same truth the same way: the
  no-capture baseline (a capture must beat it to add anything);
- `gain`: 1 - mesh_mm / neutral_mm (the share of the neutral template's error the capture
  removes; 0: no better than the neutral template, negative: worse);
- `depth_ratio`: the captured mesh's extent along the camera's view axis over the true one's
  after the alignment's rotation, median over frames (1 is right; above 1, faces come out too
  deep for their width: a nose too long);
- `size_log2`: log2 of the captured head's size over the true one (the metric scale a
  relative-depth model's capture infers from the template), and `distance_rel`: the captured
  head centre's distance over the true one, minus 1;
- `no_face`: the share of clips the capture refused (no face found, or no vertex matched);
- `track_px`: the captured mesh projected through the capture's camera against the true pixel
  positions of the vertices the truth shows (the 2D tracks markers carry), median per frame;
- with the expression fit, its ARKit weights against the engine's true ones (clips rendered with
  them: a cache made since they are recorded): `weights_mae` (mean absolute error over the 52
  targets and the frames) next to `weights_mae_neutral` (the same for all-zero weights), and
  `weights_on_mae` / `weights_on_neutral`: the same over the targets the truth has above 0.1;
  `weights_corr`: each target's correlation between fitted and true weights over all frames of
  all clips, the mean over the targets whose truth varies (standard deviation above 0.02; 0:
  no signal, 1: the weights follow the truth up to scale), and `jaw_open_corr` for jawOpen, the
  target that moves the face the most.

The capture is the add-on's default, with the solve's expression fit (`core.expression_fit`);
`--raw-mesh` also scores the mesh as tracked, without it.

`--known-lens` captures each clip as an animator who knows the lens would (`PipelineSettings.
lens_mm`, from the clip's true focal length) instead of with the network's estimate of it.
"""
from __future__ import annotations

import argparse
from functools import lru_cache
from pathlib import Path

import numpy as np

from .evaluate import table, validation_windows

TRUTH_KEY = "vertex_xyz"
WEIGHTS_KEY = "blendshapes"  # the engine's true ARKit weights per frame (S, 52)


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: scale s, rotation R (3, 3), translation t with s R src + t ~ dst (both (V, 3))."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    e = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ e @ vt
    s = float(np.trace(np.diag(d) @ e) / max((a ** 2).sum(1).mean(), 1e-12))
    return s, r, md - s * r @ ms


def aligned_error(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Per-vertex distance (V,) after aligning src onto dst, the scale, and the rotation."""
    s, r, t = similarity(src, dst)
    return np.linalg.norm(src @ (s * r).T + t - dst, axis=1), s, r


def true_positions(window: dict) -> np.ndarray:
    """(S, V, 3) float32 camera-space truth from the renderer's vertex_xy, vertex_depth and
    intrinsics."""
    xy, z, k = window["vertex_xy"], window["vertex_depth"], window["intrinsics"]
    x = (xy[..., 0] - k[:, None, 0, 2]) / k[:, None, 0, 0] * z
    y = (xy[..., 1] - k[:, None, 1, 2]) / k[:, None, 1, 1] * z
    return np.stack([x, y, z], -1).astype(np.float32)


def mesh_windows(size: int, window: int, count: int, cache: Path | None,
                 seed: int = 12345) -> list[dict]:
    """The validation windows of `training.evaluate` with each vertex's true position added,
    rendered once into `cache` (a file of its own: the evaluation's caches lack the truth).
    Another `seed` draws other clips (of validation identities too): a set to tune the solve's
    settings on that the scores are not measured on."""
    def add_truth(sample: dict, w: dict) -> None:
        w[TRUTH_KEY] = true_positions({"vertex_xy": w["vertex_xy"], "intrinsics": w["intrinsics"],
                                       "vertex_depth": sample["vertex_depth"].numpy()})
        if WEIGHTS_KEY in sample:  # the engine's (a dataset source may lack them)
            w[WEIGHTS_KEY] = np.asarray(sample[WEIGHTS_KEY], np.float32)

    wins = validation_windows(size, window, count, seed=seed, cache=cache, extra=add_truth)
    if not all(TRUTH_KEY in w for w in wins):
        raise SystemExit(f"{cache} has no {TRUTH_KEY}: give a new --cache file")
    return wins


def capture_clip(model: Path, images: np.ndarray, threads: int, lens_mm: float = 0.0,
                 expressions: bool = True, solve: dict | None = None):
    """The add-on's capture of one clip (S, 3, H, W) in [0, 1], or None when the capture
    refuses it (no face found, or no template vertex matched in any frame). `lens_mm` > 0: the
    lens is known (focal length in mm on a 36 mm sensor along the longer side). expressions:
    the solve's expression fit (the add-on's default) or the mesh as tracked. solve: other
    `SolveSettings` fields (name -> value) than the defaults."""
    from face_anything_addon.core.capture_run import CaptureSettings, run_capture
    from face_anything_addon.core.contract import describe_model
    from face_anything_addon.core.frames import Frame
    from face_anything_addon.core.pipeline import PipelineError, PipelineSettings
    from face_anything_addon.core.solve import SolveError, SolveSettings

    s, _, h, w = images.shape
    frames = [Frame(i, np.ascontiguousarray(images[i].transpose(1, 2, 0), np.float32))
              for i in range(s)]
    window = min(s, describe_model(model).max_window)
    settings = CaptureSettings(pipeline=PipelineSettings(window=window, pipelined=False,
                                                         lens_mm=lens_mm, sensor_mm=36.0),
                               solve=SolveSettings(expressions=expressions, **(solve or {})),
                               provider="CPU", cpu_threads=threads)
    try:
        return run_capture(frames, footage_name="validation", footage_size=(w, h), fps=30.0,
                           frame_count=s, model_path=model, settings=settings)
    except (PipelineError, SolveError):  # no face found, or no vertex of it matched
        return None


def fit_true_tracks(window: dict, solve: dict | None = None):
    """The capture solve's expression fit (its settings: the defaults, or `solve`) of a clip's
    true meshes, every vertex seen: what the fit makes of a perfect network's tracks, the
    ceiling the solve itself sets. A Capture's fields as `score` reads them."""
    truth = np.asarray(window[TRUTH_KEY], np.float64)
    return fitted_capture(truth, np.ones(truth.shape[:2], bool), np.arange(len(truth)), solve)


def refit(capture, solve: dict | None = None):
    """A capture made without the expression fit (the mesh as tracked), fitted as the solve
    with settings `solve` would have: the network's work done once for many settings."""
    return fitted_capture(np.asarray(capture.positions, np.float64), capture.visibility,
                          capture.frame_numbers, solve, getattr(capture, "camera", None))


def fitted_capture(positions: np.ndarray, seen: np.ndarray, frame_numbers: np.ndarray,
                   solve: dict | None = None, camera: np.ndarray | None = None):
    """The solve's expression fit (bundled template, `SolveSettings(**solve)`) of meshes
    (N, V, 3) whose vertices `seen` (N, V) were observed, as a Capture's fields `score` reads."""
    from types import SimpleNamespace

    from face_anything_addon.core.solve import CaptureSolver, SolveSettings

    template = bundled_template()
    fit = CaptureSolver(template, SolveSettings(**(solve or {}))).fit_expressions(positions, seen)
    out = SimpleNamespace(frame_numbers=np.asarray(frame_numbers), positions=fit.positions,
                          visibility=seen, canonical_space=template.canonical_space,
                          expression_names=list(template.blendshape_names),
                          expression_weights=fit.weights)
    if camera is not None:
        out.camera = camera
    return out


def bundled_template():
    """The add-on's bundled template (the MakeHuman head)."""
    from .make_template import CANONICAL_SPACE

    return template_of(CANONICAL_SPACE)


@lru_cache(maxsize=4)
def template_of(space: str):
    """The add-on's bundled template of canonical space `space`, read once."""
    from face_anything_addon.core.capture_run import bundled_templates
    from face_anything_addon.core.template import Template

    return Template.load(bundled_templates()[space])


def frame_metrics(got: np.ndarray, true: np.ndarray, seen: np.ndarray,
                  rest: np.ndarray) -> dict[str, float]:
    """One frame's numbers (see the module doc): captured (V, 3) and true (V, 3) camera-space
    positions in metres, the vertices the frame observed (V,), the neutral template (V, 3)."""
    err, scale, rot = aligned_error(got, true)
    depth_got = (got @ (scale * rot).T)[:, 2]  # the view axis in the truth's frame
    row = {"mesh_mm": 1000 * err.mean(), "mesh_mm_median": 1000 * np.median(err),
           "neutral_mm": 1000 * aligned_error(rest, true)[0].mean(),
           "depth_ratio": np.ptp(depth_got) / np.ptp(true[:, 2]),
           "size_log2": -np.log2(scale),
           "distance_rel": np.linalg.norm(got.mean(0)) / np.linalg.norm(true.mean(0)) - 1}
    if seen.any():
        row["seen_mm"] = 1000 * err[seen].mean()
    return {k: float(v) for k, v in row.items()}


def track_metrics(positions: np.ndarray, camera: np.ndarray, true_xy: np.ndarray,
                  visible: np.ndarray) -> dict[str, float]:
    """One frame's mesh projected through the capture's camera against the true pixel positions
    of the vertices the truth shows (what the marker empties and 2D exports carry): median px."""
    if not visible.any():
        return {}
    p = np.asarray(positions, np.float64)[visible] @ np.asarray(camera, np.float64).T
    xy = p[:, :2] / p[:, 2:]
    return {"track_px": float(np.median(np.linalg.norm(xy - true_xy[visible], axis=1)))}


def weight_metrics(got: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """One frame's expression weights (52,) against the engine's: mean absolute error, the same
    for the neutral face (all 0), and over the targets the truth has on (above 0.1) only."""
    on = true > 0.1
    row = {"weights_mae": float(np.abs(got - true).mean()),
           "weights_mae_neutral": float(np.abs(true).mean())}
    if on.any():
        row["weights_on_mae"] = float(np.abs(got - true)[on].mean())
        row["weights_on_neutral"] = float(true[on].mean())
    return row


def weight_correlations(got: np.ndarray, true: np.ndarray, names) -> dict[str, float]:
    """Fitted weights (F, K) against the true ones (F, K) over F frames: the mean per-target
    correlation over the targets whose truth varies, and jawOpen's."""
    got, true = np.asarray(got, np.float64), np.asarray(true, np.float64)
    varies = true.std(0) > 0.02
    g, t = got - got.mean(0), true - true.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (g * t).sum(0) / np.sqrt((g * g).sum(0) * (t * t).sum(0))
    corr = np.nan_to_num(corr)  # a target the fit never moves: no signal
    out = {"weights_corr": float(corr[varies].mean()) if varies.any() else float("nan")}
    names = list(names)
    if "jawOpen" in names and varies[names.index("jawOpen")]:
        out["jaw_open_corr"] = float(corr[names.index("jawOpen")])
    out.update({f"{TARGET_PREFIX}{n}": float(c) for n, c, v in zip(names, corr, varies) if v})
    return out


TARGET_PREFIX = "corr:"  # score's keys for each target's correlation (their own table)


def target_table(results: dict[str, dict[str, float]]) -> str:
    """The targets' correlations with the truth (the `corr:` keys): a markdown table, one row
    per target, one column per scored model, rows by the first model's correlation, highest
    first. Empty when no model has them."""
    models = [m for m, r in results.items() if any(k.startswith(TARGET_PREFIX) for k in r)]
    if not models:
        return ""
    first = results[models[0]]
    names = sorted({k for m in models for k in results[m] if k.startswith(TARGET_PREFIX)},
                   key=lambda k: -first.get(k, -2.0))
    lines = ["| ARKit target | " + " | ".join(models) + " |", "| --- |" + " --- |" * len(models)]
    for k in names:
        lines.append(f"| {k[len(TARGET_PREFIX):]} | " + " | ".join(
            f"{results[m].get(k, float('nan')):.2f}" for m in models) + " |")
    return "\n".join(lines) + "\n"


def true_lens_mm(window: dict) -> float:
    """A clip's true focal length as mm on a 36 mm sensor along the frame's longer side."""
    _, _, h, w = np.shape(window["images"])
    return float(np.median(np.asarray(window["intrinsics"])[..., 0, 0])) / max(w, h) * 36.0


def template_rest(space: str) -> np.ndarray:
    """The neutral face (V, 3) of the bundled template of canonical space `space` (the
    capture's own rest mesh is the actor's face it fitted)."""
    return template_of(space).metric.astype(np.float64)


def score(model: Path | None, windows: list[dict], threads: int = 0,
          known_lens: bool = False, expressions: bool = True,
          solve: dict | None = None) -> dict[str, float]:
    """The table's numbers for `model`'s captures of `windows` (solve: `SolveSettings` fields
    other than the defaults); model None: the expression fit of the true meshes."""
    def captures():
        for win in windows:
            lens = true_lens_mm(win) if known_lens else 0.0
            if model is None:
                yield fit_true_tracks(win, solve)
            else:
                yield capture_clip(model, np.asarray(win["images"], np.float32), threads, lens,
                                   expressions, solve=solve)
    return score_captures(windows, captures())


def score_captures(windows: list[dict], captures) -> dict[str, float]:
    """The table's numbers for one capture (or None: refused) of each of `windows`."""
    rows: dict[str, list[float]] = {}
    no_face = 0
    weights_got, weights_true, names = [], [], []
    for win, capture in zip(windows, captures):
        if capture is None:
            no_face += 1
            continue
        truth = np.asarray(win[TRUTH_KEY], np.float64)
        v = truth.shape[1]
        rest = template_rest(capture.canonical_space)[:v]
        fitted = len(capture.expression_names) > 0 and WEIGHTS_KEY in win
        if fitted:
            names = list(capture.expression_names)
        for i, number in enumerate(capture.frame_numbers):
            row = frame_metrics(capture.positions[i, :v].astype(np.float64), truth[int(number)],
                                capture.visibility[i, :v], rest)
            if fitted:
                true_weights = np.asarray(win[WEIGHTS_KEY])[int(number)]
                row.update(weight_metrics(capture.expression_weights[i], true_weights))
                weights_got.append(capture.expression_weights[i])
                weights_true.append(true_weights)
            if "vertex_xy" in win and hasattr(capture, "camera"):
                row.update(track_metrics(capture.positions[i, :v], capture.camera,
                                         np.asarray(win["vertex_xy"])[int(number)],
                                         np.asarray(win["vertex_visible"])[int(number)] > 0.5))
            for k, x in row.items():
                rows.setdefault(k, []).append(x)
    res = {k: float(np.median(v) if k == "depth_ratio" else np.mean(v)) for k, v in rows.items()}
    if "mesh_mm" in res:
        res["gain"] = 1 - res["mesh_mm"] / res["neutral_mm"]
    if weights_got:
        res.update(weight_correlations(np.array(weights_got), np.array(weights_true), names))
    res["no_face"] = no_face / max(len(windows), 1)
    return res


def solve_overrides(pairs: list[str]) -> dict:
    """["FIELD=VALUE", ...] -> {field: value} of `SolveSettings`, each value of its field's
    type; an unknown field or a bad value is refused with the fields there are."""
    from dataclasses import fields

    from face_anything_addon.core.solve import SolveSettings

    types = {f.name: type(getattr(SolveSettings(), f.name)) for f in fields(SolveSettings)}
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in types or not value:
            raise SystemExit(f"--solve {pair}: give FIELD=VALUE, FIELD one of "
                             f"{', '.join(types)}")
        kind = types[name]
        try:
            out[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
        except ValueError:
            raise SystemExit(f"--solve {pair}: {value!r} is not a {kind.__name__}") from None
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("models", type=Path, nargs="+")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--count", type=int, default=48)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--cache", type=Path, default=None, help="rendered clips with the truth (.npz)")
    p.add_argument("--seed", type=int, default=12345,
                   help="the clips' seed (another one: other clips, e.g. to tune settings on)")
    p.add_argument("--out", type=Path, help="also write the table here (and .json beside it)")
    p.add_argument("--known-lens", action="store_true",
                   help="also capture each clip with its true lens given (rows '... known lens')")
    p.add_argument("--raw-mesh", action="store_true",
                   help="also score the mesh as tracked, without the expression fit (rows "
                        "'... raw mesh')")
    p.add_argument("--true-tracks", action="store_true",
                   help="also score the expression fit of the true meshes (row 'true tracks': "
                        "what the solve makes of a perfect network's tracks)")
    p.add_argument("--solve", action="append", default=[], metavar="FIELD=VALUE",
                   help="a capture solve setting other than the add-on's default (repeatable; "
                        "core.solve.SolveSettings), e.g. identity_rounds=0 or depth_weight=1")
    args = p.parse_args(argv)
    solve = solve_overrides(args.solve)
    wins = mesh_windows(args.size, args.window, args.count, args.cache, args.seed)
    results = {}
    if args.true_tracks:
        results["true tracks"] = score(None, wins, solve=solve)
    for m in args.models:
        results[m.name] = score(m, wins, args.threads, solve=solve)
        if args.known_lens:
            results[f"{m.name}, known lens"] = score(m, wins, args.threads, known_lens=True,
                                                     solve=solve)
        if args.raw_mesh:
            results[f"{m.name}, raw mesh"] = score(m, wins, args.threads, expressions=False,
                                                   solve=solve)
    report(results, args.out)


def report(results: dict[str, dict[str, float]], out: Path | None = None,
           by_target: bool = True) -> None:
    """Print the scores' table (and, by_target, each ARKit target's correlation in a table of
    its own); with `out`, also write it there and the scores as .json beside it."""
    text = table({m: {k: v for k, v in r.items() if not k.startswith(TARGET_PREFIX)}
                  for m, r in results.items()}).rstrip("\n") + "\n"
    targets = target_table(results) if by_target else ""
    if targets:  # each ARKit target's correlation, the weights' table's mean taken apart
        text += "\nEach target's correlation with the truth over all frames (the targets " \
            "whose truth varies):\n\n" + targets
    print(text, end="")
    if out:
        import json

        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
