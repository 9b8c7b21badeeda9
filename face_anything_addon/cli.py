# SPDX-License-Identifier: GPL-3.0-or-later
"""Command line: footage in, a .blend with the tracked face, Alembic, markers and a preview out.

    python -m face_anything_addon FOOTAGE -o OUTDIR [options]      (with the bpy module)
    blender -b --python-expr "import sys; from face_anything_addon import cli; cli.main(sys.argv[sys.argv.index('--') + 1:])" -- FOOTAGE -o OUTDIR

Exit codes: 0 done; 2 bad input (footage, model, options); 3 the capture failed (e.g. no face);
130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_INPUT, EXIT_CAPTURE, EXIT_INTERRUPTED = 0, 2, 3, 130


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m face_anything_addon",
                                description="Markerless facial capture: footage to a tracked, "
                                            "animated face mesh in a .blend, Alembic and marker "
                                            "files.")
    p.add_argument("footage", help="an image sequence (folder or one numbered image) or a movie")
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument("--model", help="a Face Anything ONNX model (default: the bundled model)")
    p.add_argument("--frames", help="frame range to process, e.g. 1-120")
    p.add_argument("--resolution", type=int, default=0,
                   help="longest side of the network input, a multiple of 14 (default: model's)")
    p.add_argument("--window", type=int, default=1, help="frames per network window")
    p.add_argument("--face-region", default="auto",
                   help="auto, full, a box x0,y0,x1,y1 in footage pixels, or a CSV file of a "
                        "box per frame (lines frame,x0,y0,x1,y1, e.g. from another tracker; "
                        "frames between two boxes take the box interpolated)")
    p.add_argument("--lens", type=float, default=0.0, metavar="MM",
                   help="focal length the footage was shot with, mm (default: the network's "
                        "estimate)")
    p.add_argument("--sensor", type=float, default=36.0, metavar="MM",
                   help="sensor size along the frame's longer side, mm, for --lens (default 36: "
                        "full frame, or a 35 mm equivalent focal length)")
    p.add_argument("--principal", type=float, nargs=2, metavar=("X", "Y"),
                   help="the lens's principal point for --lens, footage pixels from the top "
                        "left (default: the frame's centre)")
    p.add_argument("--distortion", metavar="MODEL:C1,C2,...",
                   help="the lens's distortion, undone on every frame before the capture, in "
                        "Blender's tracking models and coefficients (Movie Clip Editor, Track > "
                        "Camera > Lens): POLYNOMIAL:k1,k2,k3, DIVISION:k1,k2, NUKE:k1,k2 or "
                        "BROWN:k1,k2,k3,k4,p1,p2, e.g. POLYNOMIAL:-0.12,0.02,0; needs --lens "
                        "(and --principal when the optical centre is off the frame's centre)")
    p.add_argument("--mesh", default="AUTO", choices=["AUTO", "TEMPLATE", "REFERENCE"])
    p.add_argument("--markers", type=int, default=0, help="extra evenly spread markers")
    p.add_argument("--smoothing", type=float, default=0.0, help="temporal filtering, frames")
    p.add_argument("--raw-mesh", action="store_true",
                   help="keep the tracked mesh as tracked, without the expression fit (the "
                        "template's ARKit targets and a head pose, fitted to each frame)")
    p.add_argument("--expression-prior", type=float, default=None, metavar="MM",
                   help="the expression fit's prior: the misfit (RMS, mm) one unit of weight is "
                        "worth; larger keeps the face nearer neutral (default 4)")
    p.add_argument("--neutral-face", action="store_true",
                   help="fit the expressions on the template's neutral face, not on the actor's "
                        "(by default the fit finds the actor's neutral face once per shot, from "
                        "the template's identity shapes)")
    p.add_argument("--actor-face", metavar="CAPTURE.npz",
                   help="use the actor's face of an earlier capture (its .capture.npz) as it "
                        "is, instead of fitting one to this shot: the same face in every shot "
                        "of the actor")
    p.add_argument("--depth-weight", type=float, default=None, metavar="W",
                   help="how much a tracked point's depth counts in the expression fit against "
                        "its place across the image, above 0 and at most 1 (default 0.3: the "
                        "network's depth is smoother than a face)")
    p.add_argument("--provider", default="AUTO", choices=["AUTO", "CUDA", "CPU"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the network")
    p.add_argument("--storage", default="SHAPE_KEYS", choices=["SHAPE_KEYS", "POINT_CACHE"])
    p.add_argument("--fps", type=float, default=0.0, help="footage frame rate (default: 24, or "
                                                          "the movie's)")
    p.add_argument("--name", help="base name of the output files (default: the footage's)")
    return p.parse_args(argv)


def settings_from(args):
    from .core.capture_run import CaptureSettings
    from .core.face_boxes import FaceBoxesError, read_face_boxes
    from .core.pipeline import PipelineSettings
    from .core.solve import ActorFace, SolveError, SolveSettings

    region = args.face_region
    if region.lower().endswith(".csv"):
        try:
            boxes = read_face_boxes(region)
        except FaceBoxesError as exc:
            raise ValueError(f"--face-region {exc}") from None
        region = tuple((n, *box) for n, box in sorted(boxes.items()))
    elif region not in ("auto", "full"):
        try:
            region = tuple(float(v) for v in region.split(","))
            assert len(region) == 4
        except (ValueError, AssertionError):
            raise ValueError(f"--face-region must be auto, full, x0,y0,x1,y1 or a .csv file of "
                             f"boxes per frame, not {args.face_region!r}") from None
    if not (args.lens >= 0 and args.sensor > 0):
        raise ValueError(f"--lens must be 0 or more mm (0: estimate it) and --sensor above 0 mm, "
                         f"not {args.lens} / {args.sensor}")
    if args.principal is not None and not args.lens:
        raise ValueError("--principal is the principal point of a known lens; give --lens too")
    if args.distortion is not None:
        if not args.lens:
            raise ValueError("--distortion is a known lens's distortion; give --lens (and "
                             "--sensor) too: the coefficients are in units of its focal length")
        distortion_spec(args.distortion)  # a bad spec fails before the footage is opened
    solve = SolveSettings(temporal_sigma=args.smoothing, marker_count=args.markers,
                          expressions=not args.raw_mesh)
    fit_options = {"--expression-prior": args.expression_prior is not None,
                   "--neutral-face": args.neutral_face,
                   "--actor-face": args.actor_face is not None,
                   "--depth-weight": args.depth_weight is not None}
    if args.raw_mesh and any(fit_options.values()):
        given = ", ".join(k for k, v in fit_options.items() if v)
        raise ValueError(f"{given}: for the expression fit; --raw-mesh turns it off")
    if args.expression_prior is not None:
        if not args.expression_prior > 0:
            raise ValueError(f"--expression-prior must be above 0 mm, not {args.expression_prior}")
        solve.expression_prior_mm = args.expression_prior
    if args.depth_weight is not None:
        if not 0 < args.depth_weight <= 1:
            raise ValueError(f"--depth-weight must be above 0 and at most 1, not "
                             f"{args.depth_weight}")
        solve.depth_weight = args.depth_weight
    if args.neutral_face:
        if args.actor_face is not None:
            raise ValueError("--neutral-face keeps the template's face, --actor-face uses an "
                             "earlier capture's: give one of them")
        solve.identity_rounds = 0
    if args.actor_face is not None:
        try:
            solve.actor_face = ActorFace.from_capture(Path(args.actor_face).resolve())
        except SolveError as exc:
            raise ValueError(f"--actor-face: {exc}") from None
    return CaptureSettings(
        pipeline=PipelineSettings(resolution=args.resolution, window=args.window,
                                  overlap=1 if args.window > 1 else 0, face_region=region,
                                  lens_mm=args.lens, sensor_mm=args.sensor,
                                  principal_px=tuple(args.principal) if args.principal else None),
        solve=solve, provider=args.provider, cpu_threads=args.threads, mesh=args.mesh)


def distortion_spec(text: str) -> tuple[str, tuple[float, ...]]:
    """'MODEL:C1,C2,...' -> (model, coefficients), the model one of Blender's (any case), as
    many coefficients as it takes; ValueError saying what is wrong."""
    from .core.lens_distortion import MODELS

    model, _, values = text.partition(":")
    model = model.strip().upper()
    if model not in MODELS:
        raise ValueError(f"--distortion {text!r}: the model must be one of "
                         f"{', '.join(MODELS)}, then a colon and its coefficients, e.g. "
                         "POLYNOMIAL:-0.12,0.02,0")
    try:
        coefficients = tuple(float(v) for v in values.split(","))
    except ValueError:
        coefficients = ()
    names = MODELS[model]
    if len(coefficients) != len(names) or not all(map(math.isfinite, coefficients)):
        raise ValueError(f"--distortion {text!r}: {model} takes {len(names)} numbers, "
                         f"{','.join(names)}")
    return model, coefficients


def distortion_from(args, size: tuple[int, int]):
    """The LensDistortion of --distortion for footage of `size` (None without it): focal length
    in pixels from --lens and --sensor (along the longer side), principal point from
    --principal or the frame's centre."""
    from .core.lens_distortion import LensDistortion

    if args.distortion is None:
        return None
    model, coefficients = distortion_spec(args.distortion)
    return LensDistortion.known(model, coefficients, args.lens, args.sensor, size,
                                args.principal)


def _fail(code: int, message: str) -> int:
    print(f"face_anything: error: {message}", file=sys.stderr)
    return code


class TerminalProgress:
    """A bar redrawn in place on a terminal; on a pipe or log file, a line per tenth of the job."""

    def __init__(self, stream=None):
        stream = stream or sys.stderr  # the stream of the moment, not the one at import
        self.stream, self.last = stream, ""
        self.tty = stream.isatty()
        self.logged = -1

    def __call__(self, status, final: bool = False) -> None:
        width = 30
        filled = int(width * status.factor)
        bar = f"[{'#' * filled}{' ' * (width - filled)}] {status.text()}"
        if not self.tty:
            tenth = int(10 * status.factor)
            if tenth != self.logged or final:
                self.logged = tenth
                self.stream.write(bar + "\n")
                self.stream.flush()
            return
        line = "\r" + bar
        if line != self.last:
            self.stream.write(line.ljust(len(self.last)))
            self.stream.flush()
            self.last = line

    def end(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")


def run(args) -> int:
    import bpy

    from .blender.export import export_alembic, export_markers
    from .blender.footage import open_footage
    from .blender.job import ReconstructJob
    from .blender.preview import write_preview
    from .blender.scene import build_scene
    from .core.capture_run import DEFAULT_MODEL
    from .core.contract import ContractError, describe_model
    from .core.errors import FootageError
    from .core.face_boxes import write_face_boxes
    from .core.pipeline import boxes_on_frames

    out = Path(args.output)
    frame_range = None
    if args.frames:
        try:
            a, b = (int(v) for v in args.frames.split("-"))
            frame_range = (a, b)
        except ValueError:
            return _fail(EXIT_INPUT, f"--frames must look like 1-120, not {args.frames!r}")
    try:
        settings = settings_from(args)
    except ValueError as exc:
        return _fail(EXIT_INPUT, str(exc))
    try:
        footage = open_footage(Path(args.footage).resolve(), frame_range)
        describe_model(args.model or DEFAULT_MODEL)
    except (FootageError, ContractError) as exc:
        return _fail(EXIT_INPUT, str(exc))
    try:
        settings.lens_distortion = distortion_from(args, footage.size)
    except ValueError as exc:  # a lens the footage's size makes invalid
        return _fail(EXIT_INPUT, str(exc))
    region = settings.pipeline.face_region
    if not isinstance(region, str) and isinstance(region[0], tuple):  # boxes per frame
        try:
            settings.pipeline.face_region, missing = boxes_on_frames(
                {row[0]: row[1:] for row in region}, footage.frame_numbers)
        except ValueError:
            return _fail(EXIT_INPUT, f"--face-region {args.face_region}: no box on the frames "
                                     f"being captured ({footage.frame_numbers[0]}-"
                                     f"{footage.frame_numbers[-1]})")
        if missing:
            print(f"face_anything: note: {missing} of {len(footage)} frames have no box in "
                  f"{args.face_region}; theirs is interpolated (held before the first box "
                  "and after the last)", file=sys.stderr)
    fps = args.fps or 24.0
    name = args.name or footage.name.rsplit(".", 1)[0]
    print(f"face_anything: {footage.name}: {len(footage)} frames, "
          f"{footage.size[0]} x {footage.size[1]}", file=sys.stderr)
    job = ReconstructJob(footage, settings, args.model, fps=fps)
    bar = TerminalProgress()
    job.start()
    try:
        while not job.tick():
            bar(job.status)
            time.sleep(0.002)
    except KeyboardInterrupt:
        job.cancel()
        while not job.tick():
            time.sleep(0.01)
        bar.end()
        return _fail(EXIT_INTERRUPTED, "interrupted")
    bar(job.status, final=True)
    bar.end()
    if job.status.note:
        print(f"face_anything: note: {job.status.note}", file=sys.stderr)
    for warning in job.status.warnings:
        print(f"face_anything: warning: {warning}", file=sys.stderr)
    if job.error is not None:
        code = EXIT_INPUT if isinstance(job.error, (FootageError, ContractError)) else \
            EXIT_CAPTURE
        return _fail(code, str(job.error))
    capture = job.capture
    out.mkdir(parents=True, exist_ok=True)
    capture_file = capture.save(out / f"{name}.capture.npz")
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = int(round(fps))
    collection = build_scene(bpy.context, capture, Path(args.footage).resolve(),
                             storage=args.storage, capture_path=capture_file)
    blend = out / f"{name}.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    abc = export_alembic(bpy.context, collection, out / f"{name}.abc")
    csv = export_markers(capture, out / f"{name}_markers.csv")
    js = export_markers(capture, out / f"{name}_markers.json")
    boxes = write_face_boxes(capture, out / f"{name}_face_boxes.csv")
    preview = write_preview(capture, footage, out / f"{name}_preview.png")
    for path in (blend, abc, csv, js, boxes, capture_file, preview):
        print(f"face_anything: wrote {path}", file=sys.stderr)
    return EXIT_OK


def main(argv=None) -> int:
    return run(parse(sys.argv[1:] if argv is None else argv))
