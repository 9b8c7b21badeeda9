# SPDX-License-Identifier: GPL-3.0-or-later
"""Export the published Face Anything checkpoint to an ONNX model of the contract.

    python3 build.py export-published --checkpoint checkpoint.pt -o face_anything_published.onnx
    .venv/bin/python -m training.export_published --checkpoint checkpoint.pt [--res 504] \\
        [--fp16] [--window 4] -o OUT.onnx

Builds Depth-Anything-3 (`--config`, default da3-giant) from the `depth-anything-3` package's own
config (no download), attaches the deformation head, loads the checkpoint with
`torch.load(weights_only=True)`, wraps it into the model contract (training/published.py) and
exports it with the TorchScript exporter (opset 17): fixed H x W = --res, N and S (frames per
window) dynamic. Files over 2 GB keep their weights in OUT.onnx.data beside OUT.onnx. Then the
add-on's own checker reads the file and a parity check compares ONNX Runtime with torch on one
input: max and mean absolute error per output; above the tolerance it exits with status 3.
Exit status 2: the checkpoint or the options are unusable (the message says why).
See docs/published-checkpoint.md (licence: the exported file inherits CC BY-NC 4.0).
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .export import spread
from .published import (CANONICAL_SPACE, INTRINSICS, MEAN, PATCH, PUBLISHED_CONFIG, REF_VIEW,
                        STD, WEIGHTS_LICENSE, CheckpointError, ContractWrapper, load_published)

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL_DATA_ABOVE = 1_800_000_000  # bytes of weights; protobuf's hard limit is 2 GiB
# Parity: maximum absolute error over the output, divided by the output's spread (max - min,
# at least a floor of its largest magnitude: `export.spread`), ONNX Runtime against torch float32
# on the same input.
TOLERANCE = {"float32": 1e-3, "float16": 5e-2}
DEFAULT_NAME = "Face Anything (published checkpoint, {config})"


def log(message: str) -> None:
    print(f"export-published: {message}", flush=True)


def sample_images(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth, image-like test input [1, S, 3, H, W], normalised as the contract says."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(frames, 3, 6, 6, generator=g)
    rgb = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic",
                                          align_corners=False).clamp(0, 1)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return ((rgb - mean) / std)[None]


def metadata(args, window: int) -> dict[str, str]:
    return {
        "contract": "1", "patch_size": str(PATCH), "input_size": str(args.res),
        "mean": ",".join(str(v) for v in MEAN), "std": ",".join(str(v) for v in STD),
        "max_window": str(window), "depth_units": "relative",
        "canonical_space": CANONICAL_SPACE,
        "name": args.name or DEFAULT_NAME.format(config=args.config),
        "license": WEIGHTS_LICENSE,
    }


def trace_to_onnx(wrapper: ContractWrapper, raw: Path, trace_frames: int, fp16: bool) -> None:
    """The TorchScript exporter's graph (opset 17), N and S dynamic, into `raw` (with per-tensor
    external-data files beside it when the weights pass 2 GB)."""
    names = list(wrapper.output_names)
    axes = {"images": {0: "N", 1: "S"}}
    axes.update({k: {0: "N", 1: "S"} for k in names})
    dtype = torch.float16 if fp16 else torch.float32
    dummy = sample_images(trace_frames, wrapper.height, wrapper.width).to(dtype)
    t = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        # expected: the trace fixes H x W (asserts and sizes in the package's code become
        # constants); N and S stay dynamic. The legacy exporter is chosen on purpose.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # of the TorchScript exporter
        torch.onnx.export(wrapper, (dummy,), str(raw), dynamo=False, input_names=["images"],
                          output_names=names, dynamic_axes=axes, opset_version=17)
    log(f"traced and exported in {time.perf_counter() - t:.0f} s (H x W fixed at "
        f"{wrapper.height} x {wrapper.width}; N and S dynamic)")


def save_contract_model(raw: Path, out: Path, meta: dict[str, str],
                        external: bool | None) -> list[Path]:
    """`raw` with the contract's metadata, saved as OUT.onnx, or OUT.onnx + OUT.onnx.data
    (`external`; None: when the weights pass 1.8 GB). Returns the files written."""
    import onnx

    proto = onnx.load(str(raw))  # with any external data the exporter wrote beside it
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=f"faceanything.{k}", value=v)
    size = sum(len(i.raw_data) for i in proto.graph.initializer)
    if external is None:
        external = size > EXTERNAL_DATA_ABOVE
    data = out.with_name(out.name + ".data")
    for stale in (out, data):
        stale.unlink(missing_ok=True)
    if external:
        onnx.save_model(proto, str(out), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data.name, size_threshold=1024)
        return [out, data]
    onnx.save_model(proto, str(out))
    return [out]


def reference(wrapper: ContractWrapper, frames: int) -> tuple[torch.Tensor, list]:
    """The parity input and torch's float32 outputs for it."""
    x = sample_images(frames, wrapper.height, wrapper.width, seed=1)
    with torch.no_grad():
        return x, [t.numpy().astype(np.float64) for t in wrapper(x)]


def parity(session, names, x: torch.Tensor, expected: list, fp16: bool) -> dict[str, tuple]:
    """ONNX Runtime (through the add-on's session) against torch float32 on one input:
    output -> (max abs error, mean abs error, max error / spread)."""
    got = session.run(x.numpy().astype(np.float16 if fp16 else np.float32))
    errors = {}
    for name, r in zip(names, expected):
        g = got[name].astype(np.float64)
        if g.shape != r.shape:
            errors[name] = (np.inf, np.inf, np.inf)
            log(f"parity: output {name} has shape {g.shape}, torch {r.shape}")
            continue
        diff = np.abs(g - r)
        diff[~np.isfinite(diff)] = np.inf
        errors[name] = (float(diff.max()), float(diff.mean()), float(diff.max()) / spread(r, fp16))
    return errors


def main(argv: list[str] | None = None, sessions: list | None = None) -> int:  # noqa: C901
    """The command line; returns the exit status. `sessions`, when given, receives the add-on's
    session of the export that the parity check ran (for a caller that runs the model next)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="the released checkpoint.pt (a dict with a 'model' entry, or a bare "
                        "state dict)")
    p.add_argument("-o", "--output", type=Path, required=True, help="OUT.onnx")
    p.add_argument("--res", type=int, default=504,
                   help="input height = width in pixels, a multiple of 14 (default 504, as the "
                        "published code)")
    p.add_argument("--fp16", action="store_true",
                   help="half-precision backbone weights and input (heads and outputs float32)")
    p.add_argument("--window", type=int, default=4,
                   help="largest number of frames per window the add-on may send (metadata "
                        "max_window; S is dynamic in the graph); 1: frame by frame")
    p.add_argument("--config", default=PUBLISHED_CONFIG,
                   help=f"the package's architecture config (default {PUBLISHED_CONFIG})")
    p.add_argument("--intrinsics", choices=INTRINSICS, default="rays",
                   help="from the ray map, as the published code (default), or from DA3's "
                        "camera head")
    p.add_argument("--ref-view", choices=REF_VIEW, default="saddle_balanced",
                   help="reference view of windows of 3+ frames (published default: "
                        "saddle_balanced)")
    p.add_argument("--no-mask", action="store_true",
                   help="leave out the mask output derived from canonical confidence")
    p.add_argument("--external-data", choices=("auto", "yes", "no"), default="auto",
                   help="weights in OUT.onnx.data: auto = when over 1.8 GB")
    p.add_argument("--name", default="", help="model name in the metadata")
    p.add_argument("--allow-global", action="append", default=[], metavar="MODULE.CLASS",
                   help="let torch.load construct this class (only for a file you trust)")
    p.add_argument("--parity-frames", type=int, default=0,
                   help="frames in the parity input (default: min(window, 3))")
    p.add_argument("--no-parity", action="store_true", help="skip the parity check")
    p.add_argument("--threads", type=int, default=0, help="torch and ONNX Runtime CPU threads")
    a = p.parse_args(argv)
    if a.res <= 0 or a.res % PATCH:
        p.error(f"--res {a.res} is not a positive multiple of the patch size {PATCH}")
    if a.window < 1:
        p.error("--window must be at least 1")
    if a.threads:
        torch.set_num_threads(a.threads)
    started = time.perf_counter()
    try:
        net, _ = load_published(a.checkpoint, a.config, a.intrinsics, tuple(a.allow_global),
                                log=log)
    except CheckpointError as exc:
        log(f"error: {exc}")
        return 2
    wrapper = ContractWrapper(net, a.res, a.res, intrinsics=a.intrinsics, ref_view=a.ref_view,
                              mask=not a.no_mask).eval()
    frames = a.parity_frames or min(a.window, 3)
    if not a.no_parity:  # torch's float32 answer first: an fp16 export is compared against it
        t = time.perf_counter()
        x, expected = reference(wrapper, frames)
        log(f"torch float32 forward of 1 x {frames} frames: {time.perf_counter() - t:.0f} s")
    if a.fp16:
        wrapper.set_backbone_dtype(torch.float16)
    external = {"auto": None, "yes": True, "no": False}[a.external_data]
    names = wrapper.output_names
    a.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=a.output.parent, prefix=".export-published-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        trace_to_onnx(wrapper, raw, min(a.window, 2), a.fp16)
        del wrapper, net  # the torch model's memory, before the ONNX file is loaded
        gc.collect()
        files = save_contract_model(raw, a.output, metadata(a, a.window), external)
    size = sum(f.stat().st_size for f in files)
    log(f"wrote {', '.join(str(f) for f in files)} ({size / 1e6:.1f} MB)")

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from face_anything_addon.core.contract import ContractError, describe_model
    from face_anything_addon.core.session import open_session

    try:
        desc = describe_model(a.output)
    except ContractError as exc:
        log(f"error: the add-on refuses the export: {exc}")
        return 1
    log(f"contract {desc.contract}: input {desc.input_type} {desc.fixed_size}, window "
        f"{desc.max_window}, depth {desc.depth_units}, canonical space {desc.canonical_space}, "
        f"mask {desc.has_mask}, licence {desc.license}, external {list(desc.external_files)}")
    if a.no_parity:
        log(f"done in {time.perf_counter() - started:.0f} s (parity check skipped)")
        return 0
    t = time.perf_counter()
    session = open_session(desc, "CPU", a.threads, warm_up=False)
    log(f"ONNX Runtime opened it in {time.perf_counter() - t:.0f} s")
    if sessions is not None:
        sessions.append(session)
    t = time.perf_counter()
    errors = parity(session, names, x, expected, a.fp16)
    tol = TOLERANCE["float16" if a.fp16 else "float32"]
    log(f"parity, ONNX Runtime vs torch float32, 1 x {frames} frames of {a.res} x {a.res} "
        f"({time.perf_counter() - t:.0f} s); tolerance: max error / spread <= {tol}")
    for name, (mx, mean, rel) in errors.items():
        log(f"  {name:15s} max {mx:.3e}  mean {mean:.3e}  max/spread {rel:.3e}"
            f"{'  FAILED' if not rel <= tol else ''}")
    if not all(rel <= tol for _, _, rel in errors.values()):
        log("error: parity check failed: the ONNX model does not reproduce torch")
        return 3
    log(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
