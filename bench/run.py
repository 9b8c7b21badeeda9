# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs every benchmark, each in a fresh process, and records bench/results.json + bench/RESULTS.md.

    python3 build.py bench          (or: .venv/bin/python -m bench.run [--quick])
    .venv/bin/python -m bench.run --only pipeline,reading   reruns those parts, keeps the others
    .venv/bin/python -m bench.run --only model              the bundled model's speed (a minute)
    .venv/bin/python -m bench.run --only pipeline --models face_anything_default
                                        reruns the pipeline rows of the bundled model only
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BUNDLED = ROOT / "face_anything_addon" / "assets" / "face_anything_default.onnx"
MODELS = ("vit-tiny", "vit-small", "face_anything_default")  # the pipeline part's models


def bundled_name() -> str:
    """The bundled model's name (its metadata), recorded with its rows."""
    from face_anything_addon.core.contract import describe_model

    return describe_model(BUNDLED).name


def child(module: str, *args: str) -> dict:
    """Run `python -m module args` and return the JSON object on its last output line."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{module} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    print(f"  {module} {' '.join(args)}", flush=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import numpy
    import onnxruntime

    return {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "numpy": numpy.__version__,
            "onnxruntime": onnxruntime.__version__, "date": time.strftime("%Y-%m-%d")}


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = ["# Benchmark results", "",
             f"Recorded {m['date']} on {m['cpu_count']} CPU cores ({m['processor']}), Python "
             f"{m['python']}, numpy {m['numpy']}, ONNX Runtime {m['onnxruntime']} (CPU provider). "
             "Rerun: `python3 build.py bench`.", "",
             "## Pipeline overhead over bare `session.run` (1080p footage, CPU)", "",
             "Same frames, same model inputs; the pipeline adds crop, resize, normalisation, "
             "intrinsics mapping, depth-scale chaining. Network thread: yes = the default (the "
             "network runs in a worker thread while the next window is prepared), no = one after "
             "the other. Measured in adjacent pairs (pipeline, bare) on a shared machine: seconds "
             "are medians, the overhead is the median of the pairs' ratios, with their range; CPU "
             "time overhead: the same for the process's CPU time (all threads); load: the 1-minute "
             "load average when the row was recorded (2 cores). Frames in: 1080p arrays = "
             "full-size frames made before timing; reader = frames as the add-on's readers give "
             "them: asked by the pipeline for the reduction its smallest crop allows, they are "
             "copied out of Blender's buffer as means of n x n blocks (`from_blender_pixels`), "
             "also before timing; what that copy costs against the plain copy every reader makes "
             "is in the last column (ms per 1080p frame). Pipeline's own work: the pipeline run "
             "with the network replaced by its recorded outputs (best of the runs), per frame and "
             "as a share of bare session.run: the steadier figure, what running one after the "
             "other must add at least. Goal: at most 10%.", "",
             "| model | input | face region | frames in | network thread | frames | pipeline s | "
             "bare session.run s | overhead | pairs' range | CPU time overhead | load | "
             "pipeline's own work, ms per frame (share) | reader's copy ms: plain / in blocks |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results.get("overhead", []):
        shape = "x".join(map(str, r["input_shape"][-2:]))
        thread = {True: "yes", False: "no"}.get(r.get("pipelined"), "-")
        spread = "{}% to {}%".format(*r["overhead_pct_range"]) if "overhead_pct_range" in r \
            else "-"
        cpu = f"{r['cpu_overhead_pct']}%" if "cpu_overhead_pct" in r else "-"
        copies = " / ".join(str(v) for v in r["reader_copy_ms"].values()) \
            if "reader_copy_ms" in r else "-"
        own = f"{r['own_ms_per_frame']} ({r['own_pct']}%)" if "own_pct" in r else "-"
        lines.append(f"| {r['model']} | {shape} | {r['region']} | "
                     f"{r.get('frames_in', '1080p arrays')} | {thread} | {r['frames']} | "
                     f"{r['pipeline_s']} | {r['bare_session_run_s']} | {r['overhead_pct']}% | "
                     f"{spread} | {cpu} | {r.get('load_average_1min', '-')} | {own} | {copies} |")
    lines += ["", "## Peak memory vs sequence length (1080p footage, CPU)", "",
              "Resident memory added to the process beyond the loaded, warmed-up model while the "
              "pipeline streams the whole sequence (frames generated on the fly, predictions "
              "consumed and dropped). Goal: 2,000 frames add less than 200 MB.", "",
              "| model | input side | face region | frames | added MB | seconds |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in results.get("memory", []):
        lines.append(f"| {r['model']} | {r['resolution']} | {r['region']} | {r['frames']} | "
                     f"{r['added_mb']} | {r['seconds']} |")
    reading = dict(results.get("reading", {}))
    if reading:
        lines += ["", f"## Frame reading speed (1080p, Blender {reading.pop('blender')} "
                  "decoders)", "",
                  "Frames whose longest side is above 2048 pixels are reduced inside Blender as "
                  "they are read (8K rows).", "",
                  "| footage | frames | ms per frame |", "| --- | --- | --- |"]
        for name, r in reading.items():
            lines.append(f"| {name} | {r['frames']} | {r['ms_per_frame']} |")
    g = results.get("geometry")
    if g:
        m = g["main"]
        lines += ["", "## Geometry core vs the published approach (exact rasterised maps)", "",
                  f"{m['size']} x {m['size']} maps, {m['vertices']} template vertices, "
                  f"{m['frames']} frames of a talking, turning head. Reference: a k-d tree "
                  "(scipy cKDTree) over every confident pixel's canonical coordinate per frame, "
                  "nearest pixel centre within 0.02 (the published tracking). Ours: "
                  "`core/inversion.py` + lift + pose + fill + markers (`core/solve.py`). "
                  "Goals: inversion at least 10x faster than the reference, at least 3x lower "
                  "median 2D error, the whole core at least 200 frames per second.", "",
                  "| | ours | reference |", "| --- | --- | --- |",
                  f"| tracking step, ms per frame | {m['ours_inversion_ms_per_frame']} "
                  f"({m['speedup_inversion_vs_reference']}x faster) | "
                  f"{m['reference_ms_per_frame']} |",
                  f"| whole geometry core, ms per frame | {m['ours_ms_per_frame']} "
                  f"({m['ours_fps']} fps) | |",
                  f"| median 2D error, px | {m['ours_median_px']} | {m['reference_median_px']} "
                  f"({m['error_ratio']}x ours) |", ""]
        if "ours_stage_ms" in m:  # what the whole-core figure covers, and where the time goes
            lines += ["Whole core: everything from one frame's predictions (depth, canonical and "
                      "face maps, intrinsics) to its complete mesh and markers, i.e. "
                      "`CaptureSolver.add` for each frame after the first plus each frame's share "
                      "of `CaptureSolver.finish`; making the maps is not timed. Best of "
                      f"{m['passes']} passes on the same frames (fresh solver each); median pass "
                      f"{m['ours_ms_per_frame_median']} ms, CPU time of the process "
                      f"{m['ours_cpu_ms_per_frame']} ms per frame; 1-minute load average "
                      f"{m['load_average_1min']} (2 cores, shared). First frame (cold start: "
                      f"voxel-hash search for every vertex): {m['ours_cold_first_frame_ms']} ms. "
                      f"99th percentile 2D error {m['ours_p99_px']} px; unseen (filled) vertices "
                      f"{m['ours_hidden_median_mm']} mm median from the truth. Tracking step: "
                      "`invert` alone warm-started from the last frame's answer (best of 20; "
                      f"median {m['ours_inversion_ms_per_frame_median']} ms); the reference's "
                      "time excludes importing scipy.", "",
                      "| stage (ms per frame, separate pass with timers) | ms |", "| --- | --- |"]
            lines += [f"| {k} | {v} |" for k, v in m["ours_stage_ms"].items()]
            lines += [""]
        lines += ["Error under noise (i.i.d. Gaussian on canonical and relative depth) and "
                  "occlusion (a band over the face), 256 x 256, 2,601 vertices:", "",
                  "| noise | occluded | ours median px | reference median px | seen by ours | "
                  "ours ms/frame |", "| --- | --- | --- | --- | --- | --- |"]
        for c in g["curves"]:
            lines.append(f"| {c['noise']} | {c['occluded_fraction']} | {c['ours_median_px']} | "
                         f"{c['reference_median_px']} | {c['ours_visible_fraction']} | "
                         f"{c['ours_ms_per_frame']} |")
    ex = results.get("expressions")
    if ex:
        lines += ["", "## The expression fit (capture solve, bundled template)", "",
                  f"`core/expression_fit.py` as the capture solve runs it, on "
                  f"{ex['vertices']:,} vertices, {ex['targets']} ARKit targets and "
                  f"{ex['identity_shapes']} identity shapes; its defaults: prior "
                  f"{ex['prior_mm']:g} mm, the actor's face fitted in {ex['identity_rounds']} "
                  f"rounds (identity prior {ex['identity_prior_mm']:g} mm), depth weight "
                  f"{ex['depth_weight']:g}. Synthetic frames of one actor (the template's face "
                  "moved by its identity shapes, weights from a unit Gaussian): random "
                  "expression weights (each target on with probability 0.2, weight 0.2-0.9), "
                  "random head poses, the far half of the head unseen, Gaussian noise per "
                  "coordinate. Face: `actor`, the add-on's default (the actor's neutral face "
                  "fitted first), or `template` (the template's neutral face, "
                  "`identity_rounds=0`). Tracked / fitted: mean vertex distance from the truth "
                  "of the noisy input and of the fit; neutral face: the fit's neutral face "
                  "against the actor's; weight error: mean absolute, per target and frame (the "
                  "priors shrink weights towards neutral: the price of the noise they remove; "
                  "they are set for the bundled model's maps, noisier than any row here, so even "
                  "noise-free frames come out about 4 mm off, and the weight error stays at the "
                  "all-zero weights' level, as it was before the actor's face). "
                  "ms per frame: best of 3 passes, with the process's CPU time; 1-minute load "
                  f"average {ex['load_average_1min']} (2 cores, shared).", "",
                  "| face | noise mm | frames | ms per frame | CPU ms per frame | weight error | "
                  "tracked mm | fitted mm | neutral face mm |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in ex["rows"]:
            lines.append(f"| {r['face']} | {r['noise_mm']:g} | {r['frames']} | "
                         f"{r['ms_per_frame']} | {r['cpu_ms_per_frame']} | {r['weight_error']} | "
                         f"{r['tracked_mm']} | {r['fitted_mm']} | {r['neutral_face_mm']} |")
    mb = results.get("model")
    if mb:
        lines += ["", "## The bundled model's speed (CPU)", "",
                  f"`{mb['model']}` ({mb['name']}, {mb['bytes'] / 1e6:.1f} MB), opened as the "
                  "add-on opens it (all cores). Network: bare `session.run` at the model's input "
                  "size, frames per second over windows of 1 and 4 frames, median and best of "
                  f"{mb['network'][0]['reps']} runs of {mb['network'][0]['frames_per_rep']} "
                  "frames. Capture: the add-on's whole prediction pipeline on 1080p frames "
                  "as the readers give them (reduced in pixel blocks where the pipeline asks; "
                  "copies made on an untimed first run), face region automatic (a face-finding pass on "
                  "whole frames, then each frame on its face crop), window 1 (the add-on's "
                  "default): frames of footage per second, both passes included. 1-minute load "
                  f"average {mb['load_average_1min']} (2 cores). Goal: at least 5 frames per "
                  "second at the model's default resolution.", "",
                  "| what | input | window | fps, median | fps, best |",
                  "| --- | --- | --- | --- | --- |"]
        for r in mb["network"]:
            lines.append(f"| network | {r['input'][1]}x{r['input'][0]} | {r['window']} | "
                         f"{r['fps_median']} | {r['fps_best']} |")
        for key, how in (("capture", ""), ("capture_undistorted",
                                           ", a lens's distortion undone (Polynomial)")):
            c = mb.get(key)
            if c is None:
                continue
            region = "face crops" if c["face_found"] else "whole frames (no face found)"
            lines.append(f"| capture, {c['frames']} frames of {c['footage']}, {region}{how} | - "
                         f"| 1 | {c['fps_median']} | {c['fps_best']} |")
    bundled = next((r["model_name"] for r in results.get("overhead", [])
                    if r.get("model_name")), "")
    s = results.get("scene")
    if s:
        lines += ["", "## Scene building (see SCENE.md for the whole table)", "",
                  "```", json.dumps(s), "```"]
    lines += ["", "Models: random-weight stand-ins of the paper's backbone family "
              "(`bench/standin_model.py`: patch-14 ViT, vit-tiny = width 192 x 6 blocks, "
              "vit-small = width 384 x 12 blocks): their cost is a real network's, their output "
              "meaningless; face_anything_default is the bundled model, run at 196, the input "
              "size its metadata declares" + (f"; the pipeline tables above measured it when it "
                                              f"was {bundled}" if bundled else "") + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="fewer frames (a smoke run)")
    p.add_argument("--only", default="pipeline,reading,geometry,expressions,scene,model",
                   help="comma-separated parts to run (pipeline, reading, geometry, expressions, "
                        "scene, "
                        "model); the others are kept from the recorded results")
    p.add_argument("--models", default=",".join(MODELS),
                   help="pipeline part: comma-separated models to measure (vit-tiny, vit-small, "
                        "face_anything_default); the rows of the others are kept as recorded")
    a = p.parse_args(argv)
    parts = set(a.only.split(","))
    sys.path.insert(0, str(ROOT))
    from bench.standin_model import export

    name = "results-quick" if a.quick else "results"
    recorded = BENCH / f"{name}.json"
    results = json.loads(recorded.read_text()) if recorded.exists() else {}
    results["machine"] = machine()
    if "pipeline" in parts:
        chosen = [m for m in MODELS if m in a.models.split(",")]
        kept = [r for r in results.get("overhead", []) if r["model"] not in chosen]
        overhead = []
        with tempfile.TemporaryDirectory(prefix="fa-bench-") as tmp:
            models = {size: export(Path(tmp) / f"{size}.onnx", size)
                      for size in ("vit-tiny", "vit-small") if size in chosen}
            models["face_anything_default"] = BUNDLED
            name = bundled_name() if "face_anything_default" in chosen else ""
            # frames and measured pairs per model, about 2 s of network per run or more: with
            # fewer (10 frames of vit-tiny, 0.9 s) the pairs' overheads spread over 15 points;
            # the bundled model, mirror- and shift-averaged, runs at about 9 fps at 196 on 2 cores
            counts = {"vit-tiny": ("30", "7"), "vit-small": ("10", "5"),
                      "face_anything_default": ("40", "11")}
            if a.quick:
                counts = {size: ("3", "3") for size in counts}
            for size, region, side, source in (
                    ("vit-tiny", "box", "504", []), ("vit-tiny", "full", "504", []),
                    ("vit-tiny", "full", "504", ["--reader"]), ("vit-small", "box", "504", []),
                    ("face_anything_default", "box", "196", []),
                    ("face_anything_default", "full", "196", []),
                    ("face_anything_default", "box", "196", ["--reader"]),
                    ("face_anything_default", "full", "196", ["--reader"])):
                if size not in chosen:
                    continue
                count = counts[size]
                for mode in ([], ["--serial"]):
                    row = child("bench.pipeline_bench", "overhead", "--model", str(models[size]),
                                "--frames", count[0], "--reps", count[1], "--region", region,
                                "--resolution", side, *source, *mode)
                    if size == "face_anything_default":
                        row["model_name"] = name
                    overhead.append(row)
            # the table keeps the models' order; rows of models not rerun stay as recorded
            results["overhead"] = sorted(kept + overhead, key=lambda r: MODELS.index(r["model"]))
            if "vit-tiny" in chosen:
                results["memory"] = []
                lengths = ("20", "100") if a.quick else ("100", "500", "2000")
                for frames in lengths:
                    results["memory"].append(child(
                        "bench.pipeline_bench", "memory", "--model", str(models["vit-tiny"]),
                        "--frames", frames, "--resolution", "224", "--region", "box"))
                results["memory"].append(child(
                    "bench.pipeline_bench", "memory", "--model", str(models["vit-tiny"]),
                    "--frames", lengths[-2], "--resolution", "224", "--region", "auto"))
    if "reading" in parts:
        results["reading"] = child("bench.reading_bench", "--frames", "6" if a.quick else "24")
    if "geometry" in parts:
        results["geometry"] = child("bench.geometry_bench", *(
            ["--frames", "4", "--size", "256", "--grid", "51"] if a.quick else []))
    if "expressions" in parts:
        results["expressions"] = child("bench.expression_bench", *(
            ["--frames", "16", "--passes", "1"] if a.quick else []))
    if "model" in parts:
        results["model"] = child("bench.model_bench", *(
            ["--frames", "8", "--reps", "2"] if a.quick else []))
    if "scene" in parts and not a.quick:
        results["scene"] = child("bench.scene_bench")
    recorded.write_text(json.dumps(results, indent=1) + "\n")
    (BENCH / ("RESULTS-quick.md" if a.quick else "RESULTS.md")).write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
