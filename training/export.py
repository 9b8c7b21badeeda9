# SPDX-License-Identifier: GPL-3.0-or-later
"""Export a trained checkpoint to ONNX per the model contract (docs/model-contract.md).

    python -m training.export runs/default/best.pt face_anything_addon/assets/face_anything_default.onnx

Dynamic N and S always; H and W dynamic unless `--fixed-size`; fp32 or `--fp16`;
`--mirror-average` exports the network averaged with its own prediction on the mirrored frames
(`training.network.mirror`: twice the inference cost), `--shift-average` with its prediction on
the frames moved by half a patch (`training.network.shift`: twice again). The export
wrapper (not a global patch of any library) puts the network into the contract's layout; attention
is written as plain matmul/softmax while exporting. After writing, the file is checked with the
add-on's `describe_model` and compared against torch in ONNX Runtime (`--no-parity` skips that).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .network import FaceAnythingNet
from .network.mirror import MirrorAveraged, symmetric_template
from .network.shift import ShiftAveraged

OUTPUTS = ("depth", "depth_conf", "canonical", "canonical_conf", "intrinsics", "mask")
CANONICAL_SPACE = "makehuman-hm08-head-v1"
# the metadata name when neither --name nor the .onnx being exported again names the model
DEFAULT_NAME = "Face Anything model (synthetic MakeHuman faces)"
TEMPLATE = (Path(__file__).resolve().parents[1] / "face_anything_addon" / "assets"
            / "template_makehuman_v1.npz")
# Parity tolerances, ONNX Runtime vs torch on the same input (fp32 / fp16 exports): maximum
# absolute error over pixels, relative to the spread (max - min) of the torch output, the spread
# taken as at least SPREAD_FLOOR of the output's magnitude: an output that hardly varies on the
# check's noise input (a trained model's confidences there: 1.0000 to 1.0001) cannot be judged
# below the precision of its type (fp16 steps by 1e-3 at 1.0, so 10 steps).
TOLERANCE = {"float32": 1e-3, "float16": 3e-2}
SPREAD_FLOOR = {"float32": 1e-3, "float16": 1e-2}


def spread(reference: np.ndarray, fp16: bool) -> float:
    """What a parity error is divided by: the reference output's max - min, at least
    SPREAD_FLOOR of its largest magnitude for the exported type."""
    floor = SPREAD_FLOOR["float16" if fp16 else "float32"]
    return max(float(reference.max() - reference.min()),
               floor * max(float(np.abs(reference).max()), 1e-6))


class ContractWrapper(nn.Module):
    """The network with the contract's outputs, in the contract's order."""

    def __init__(self, model: FaceAnythingNet):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        out = self.model(images)
        return tuple(out[k] for k in OUTPUTS)


def template_landmarks(path: Path = TEMPLATE) -> dict[str, list[float]]:
    """Landmark name -> canonical [x, y, z] from the bundled template ({} when unavailable)."""
    try:
        import sys
        sys.path.insert(0, str(path.parents[2]))
        from face_anything_addon.core.template import Template

        t = Template.load(path)
        return {n: [round(float(c), 5) for c in t.canonical[i]] for n, i in t.landmarks().items()}
    except Exception:  # noqa: BLE001 - landmarks are optional metadata
        return {}


def metadata(model: FaceAnythingNet, input_size: int, max_window: int, name: str,
             license_: str, landmarks: bool = True, depth_units: str = "metric") -> dict[str, str]:
    cfg = model.cfg
    meta = {"contract": "1", "patch_size": str(cfg.patch), "input_size": str(input_size),
            "mean": ",".join(str(v) for v in cfg.mean), "std": ",".join(str(v) for v in cfg.std),
            "max_window": str(max_window), "depth_units": depth_units,
            "canonical_space": CANONICAL_SPACE, "name": name, "license": license_}
    if landmarks:
        marks = template_landmarks()
        if marks:
            meta["landmarks"] = json.dumps(marks, separators=(",", ":"))
    return meta


def export(model: FaceAnythingNet, path: Path, input_size: int, *, fp16: bool = False,
           fixed_size: bool = False, max_window: int = 8, name: str = "Face Anything model",
           license_: str = "GPL-3.0-or-later", landmarks: bool = True,
           depth_units: str = "metric") -> Path:
    """Write a contract ONNX file for `model` and return its path."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else torch.float32
    wrapper = ContractWrapper(model).eval().to(dtype)
    axes = {"images": {0: "N", 1: "S"}}
    if not fixed_size:
        axes["images"].update({3: "H", 4: "W"})
    for k in OUTPUTS:
        axes[k] = {0: "N", 1: "S"} if fixed_size or k == "intrinsics" else {
            0: "N", 1: "S", 2: "H", 3: "W"}
    dummy = torch.zeros(1, 2, 3, input_size, input_size, dtype=dtype)
    with torch.no_grad():
        torch.onnx.export(wrapper, (dummy,), str(path), dynamo=False, input_names=["images"],
                          output_names=list(OUTPUTS), dynamic_axes=axes, opset_version=17)
    proto = onnx.load(str(path))
    for k, v in metadata(model, input_size, max_window, name, license_, landmarks,
                         depth_units).items():
        proto.metadata_props.add(key=f"faceanything.{k}", value=v)
    onnx.save(proto, str(path))
    model.float()
    return path


def parity(model: FaceAnythingNet, path: Path, size: tuple[int, int], n: int = 1, s: int = 2,
           seed: int = 0) -> dict[str, float]:
    """Max abs error of each output, ONNX Runtime vs torch fp32, relative to the output's spread."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fp16 = sess.get_inputs()[0].type == "tensor(float16)"
    x = torch.randn(n, s, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = ContractWrapper(model.float().eval())(x)
    got = sess.run(list(OUTPUTS), {"images": x.numpy().astype(np.float16 if fp16 else np.float32)})
    errors = {}
    for k, r, g in zip(OUTPUTS, ref, got):
        r = r.numpy()
        errors[k] = float(np.abs(g.astype(np.float32) - r).max()) / spread(r, fp16)
    return errors


def check(path: Path) -> None:
    """The add-on's own checks: contract description and an ONNX Runtime session."""
    from face_anything_addon.core.contract import describe_model
    from face_anything_addon.core.session import open_session

    desc = describe_model(path)
    session = open_session(desc, "CPU")
    print(f"{path.name}: contract {desc.contract}, input {desc.input_type}, fixed {desc.fixed_size},"
          f" input_size {desc.input_size}, window {desc.max_window}, {desc.depth_units},"
          f" {desc.canonical_space}, mask {desc.has_mask}, providers {session.providers}")


def main(argv: list[str] | None = None) -> None:
    from .train import load_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint", type=Path,
                   help="a training checkpoint (.pt), or an exported model (.onnx, with "
                        "--config) to export again, e.g. with other averaging or as fp16")
    p.add_argument("output", type=Path)
    p.add_argument("--input-size", type=int, default=0, help="default: the training size")
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--fixed-size", action="store_true", help="fix H = W = input size")
    p.add_argument("--max-window", type=int, default=8)
    p.add_argument("--name", default=None,
                   help="the name in the file's metadata (default: for an .onnx CHECKPOINT the "
                        f"name that file declares, else '{DEFAULT_NAME}')")
    p.add_argument("--license", default="GPL-3.0-or-later")
    p.add_argument("--no-parity", action="store_true")
    p.add_argument("--mirror-average", action="store_true",
                   help="average each prediction with the one on the mirrored frames, mirrored "
                        "back (the canonical template must be symmetric about x = 0)")
    p.add_argument("--config", default=None,
                   help="the network config of an .onnx CHECKPOINT (its weights are read back "
                        "and checked against it: training.network.weights)")
    p.add_argument("--shift-average", action="store_true",
                   help="average each prediction with the one on the frames moved by half a "
                        "patch, moved back (on top of --mirror-average: four predictions)")
    p.add_argument("--depth-units", choices=("metric", "relative"), default=None,
                   help="what to promise: the network predicts metres; declare 'relative' when "
                        "its measured absolute error (evaluate: metric_absrel) is too large "
                        "(default: metric; for an .onnx CHECKPOINT, what that file declares)")
    a = p.parse_args(argv)
    if a.checkpoint.suffix == ".onnx":
        from face_anything_addon.core.contract import ContractError, describe_model

        from .network import get_config
        from .network.weights import WeightsError, load_onnx_weights
        if not a.config:
            raise SystemExit(f"{a.checkpoint.name}: to export an .onnx file again, name its "
                             f"network config with --config (the bundled model's: cpu-deep)")
        try:
            model = load_onnx_weights(a.checkpoint, get_config(a.config))
            source = describe_model(a.checkpoint)
            ckpt = {"size": source.input_size}
            a.depth_units = a.depth_units or source.depth_units
            a.name = a.name or source.name
        except (WeightsError, ContractError, KeyError) as exc:
            raise SystemExit(f"{a.checkpoint}: {exc}") from exc
    else:
        model, ckpt = load_model(a.checkpoint)
    if a.mirror_average:
        if not symmetric_template(np.load(TEMPLATE)["canonical"]):
            raise SystemExit(f"--mirror-average: the template {TEMPLATE.name} is not symmetric "
                             f"about x = 0, so a mirrored face's canonical coordinates are unknown")
        model = MirrorAveraged(model).eval()
    if a.shift_average:
        model = ShiftAveraged(model).eval()
    size = a.input_size or int(ckpt.get("size", 224))
    export(model, a.output, size, fp16=a.fp16, fixed_size=a.fixed_size, max_window=a.max_window,
           name=a.name or DEFAULT_NAME, license_=a.license,
           depth_units=a.depth_units or "metric")
    check(a.output)
    print(f"size: {a.output.stat().st_size / 1e6:.2f} MB")
    if not a.no_parity:
        errors = parity(model, a.output, (size, size))
        tol = TOLERANCE["float16" if a.fp16 else "float32"]
        print("parity (max abs error / output spread):",
              {k: f"{v:.2e}" for k, v in errors.items()}, f"tolerance {tol}")
        if max(errors.values()) > tol:
            raise SystemExit("parity check failed")


if __name__ == "__main__":
    main()
