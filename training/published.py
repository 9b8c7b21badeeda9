# SPDX-License-Identifier: GPL-3.0-or-later
"""The published Face Anything model, rebuilt from the `depth-anything-3` package, and its wrapper
into the model contract (docs/model-contract.md). Used by `training.export_published`.

The published model is Depth-Anything-3 (`da3-giant`) with one extra DPT head, `deformation_head`
(4 channels: canonical x, y, z, linear, and a confidence, `exp(x) + 1`), attached to the
`DepthAnything3Net` that the package's `DepthAnything3` wrapper holds as `.model`: the released
checkpoint's keys therefore read `model.backbone...`, `model.head...`, `model.deformation_head...`.
Only the package's model modules are imported (no Hugging Face download, no heavy extras); what
blocks an ONNX export is solved in `ContractWrapper` below, never by patching the package:

- the backbone's layer loop is run here, with the reference-view choice of windows of 3+ frames
  written without Python branches on the window length (one graph for every S);
- patch positions (the package builds them with `cartesian_prod`) and the position embedding
  (bicubic resize) are computed once, in torch, for the fixed export resolution;
- heads run without frame chunking; intrinsics come from the ray map by a closed-form fit that
  replaces the package's RANSAC + SVD + QR (not expressible in ONNX), or from the camera head.

Nothing of the authors' code is used; docs/published-checkpoint.md describes the result.
"""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

PUBLISHED_CONFIG = "da3-giant"
CANONICAL_SPACE = "faceanything-flame-normalised-v1"
WEIGHTS_LICENSE = "CC-BY-NC-4.0"
PATCH = 14
MEAN = (0.485, 0.456, 0.406)  # ImageNet, as the package's input processor
STD = (0.229, 0.224, 0.225)
OUTPUTS = ("depth", "depth_conf", "canonical", "canonical_conf", "intrinsics", "mask")
DEFORMATION = "deformation_head"
# Parts of the published model the contract export does not use: name -> why.
UNUSED = {
    "gs_head": "3D-Gaussian head (not part of the contract)",
    "cam_enc": "camera encoder (used only when cameras are given as input)",
    "cam_dec": "camera decoder (used only with --intrinsics camera-head)",
}
REQUIRED = ("backbone", "head", DEFORMATION)
PARTS = tuple(p + "." for p in REQUIRED + tuple(UNUSED))
REF_VIEW_MIN_FRAMES = 3  # the package picks a reference view from this window length on
INTRINSICS = ("rays", "camera-head")
REF_VIEW = ("saddle_balanced", "first")


class CheckpointError(Exception):
    """The checkpoint cannot be turned into the published model; the message says why."""


def _da3():
    """The package's model-building pieces, imported without its app/export modules."""
    os.environ.setdefault("DA3_LOG_LEVEL", "WARN")  # the package's own logger: no INFO lines
    try:
        from depth_anything_3.cfg import create_object, load_config
        from depth_anything_3.model import dpt
        from depth_anything_3.model.dinov2.layers import swiglu_ffn
        from depth_anything_3.registry import MODEL_REGISTRY
    except ImportError as exc:
        raise CheckpointError(
            f"the depth-anything-3 package is not importable here ({exc}): run "
            f"`python3 build.py setup`, which installs it into .venv "
            f"(requirements/published.txt)") from None
    if swiglu_ffn.XFORMERS_AVAILABLE:
        raise CheckpointError("xformers is installed in this environment; its fused kernels do "
                              "not export to ONNX: run the exporter in .venv, which has none")
    return create_object, load_config, dpt, MODEL_REGISTRY


def architecture_config(name: str = PUBLISHED_CONFIG):
    """The package's config for `name` (da3-small ... da3-giant), without the 3D-Gaussian parts."""
    _, load_config, _, registry = _da3()
    if name not in registry:
        known = ", ".join(k for k in registry if k.startswith("da3-"))
        raise CheckpointError(f"unknown architecture '{name}' (the package has {known})")
    cfg = load_config(registry[name])
    for key in ("gs_head", "gs_adapter"):
        if key in cfg:
            cfg.pop(key)
    return cfg


@dataclass(frozen=True)
class HeadSpec:
    """The deformation head's construction: the package's `DPT`, as the published code builds it
    (`DPT(dim_in, output_dim=4, head_name="deformation", use_sky_head=False,
    activation="linear")`, every other argument at its default)."""

    dim_in: int
    output_dim: int = 4
    features: int = 256
    out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    use_ln_for_heads: bool = False
    norm_type: str = "idt"

    def build(self) -> nn.Module:
        dpt = _da3()[2]
        return dpt.DPT(self.dim_in, output_dim=self.output_dim, head_name="deformation",
                       use_sky_head=False, activation="linear", features=self.features,
                       out_channels=self.out_channels, use_ln_for_heads=self.use_ln_for_heads,
                       norm_type=self.norm_type)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor], default: "HeadSpec") -> "HeadSpec":
        """The head the checkpoint's tensors describe (keys without prefix), else `default`."""
        p = DEFORMATION + "."
        try:
            projects = [sd[f"{p}projects.{i}.weight"] for i in range(4)]
            features = sd[f"{p}scratch.layer1_rn.weight"].shape[0]
        except KeyError:
            return default
        ln = f"{p}scratch.output_conv2.2.weight" in sd and sd[
            f"{p}scratch.output_conv2.2.weight"].ndim == 1
        last = sd.get(f"{p}scratch.output_conv2.{5 if ln else 2}.weight")
        return cls(dim_in=int(projects[0].shape[1]),
                   output_dim=int(last.shape[0]) if last is not None else default.output_dim,
                   features=int(features),
                   out_channels=tuple(int(w.shape[0]) for w in projects),
                   use_ln_for_heads=ln,
                   norm_type="layer" if f"{p}norm.weight" in sd else "idt")


def build_network(config: str = PUBLISHED_CONFIG, head: HeadSpec | None = None) -> nn.Module:
    """`DepthAnything3Net` from the package's config, with the deformation head attached."""
    create_object = _da3()[0]
    cfg = architecture_config(config)
    net = create_object(cfg)
    net.deformation_head = (head or HeadSpec(int(cfg.head.dim_in))).build()
    return net.eval()


# --------------------------------------------------------------------------- checkpoints

@dataclass
class KeyReport:
    """How a checkpoint's tensors matched the architecture."""

    source: str = ""  # how the state dict was found in the file
    prefix: str = ""  # stripped from every key (the published wrapper's is "model.")
    loaded: int = 0
    missing: list[str] = field(default_factory=list)  # needed by the export, absent
    unexpected: list[str] = field(default_factory=list)  # in the file, unknown to the model
    ignored: dict[str, int] = field(default_factory=dict)  # unused part -> tensor count
    not_tensors: list[str] = field(default_factory=list)
    head: HeadSpec | None = None

    def lines(self, limit: int = 8) -> list[str]:
        out = [f"checkpoint: {self.source}, key prefix '{self.prefix}'"]
        for part, n in sorted(self.ignored.items()):
            out.append(f"  ignored: {n} tensors of {part} - {UNUSED.get(part, 'not used')}")
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("not tensors, skipped", self.not_tensors)):
            if keys:
                shown = ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)"
                                                   if len(keys) > limit else "")
                out.append(f"  {title}: {len(keys)} keys: {shown}")
        return out


def read_checkpoint(path, allow_globals: tuple[str, ...] = ()) -> tuple[dict, str]:
    """The state dict in `path` (a dict with a 'model' or 'state_dict' entry, or a bare state
    dict) and where it was found. Loaded with `weights_only=True`: a file that needs any other
    pickled object (code, classes) is refused, except classes named in `allow_globals`
    ("module.Class") by a user who trusts the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    safe = [_import_global(name) for name in allow_globals]
    obj = None
    for mmap in (True, False):  # mmap: a 15 GB file is paged in lazily, not copied into memory
        try:
            with torch.serialization.safe_globals(safe):
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            break
        except pickle.UnpicklingError as exc:
            names = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(exc))))
            what = f" ({', '.join(names)})" if names else ""
            raise CheckpointError(
                f"{path.name} holds pickled Python objects other than tensors{what}; loading "
                f"them would run code from the file, so it is refused (torch.load with "
                f"weights_only=True). If you trust the file's source, name each such class with "
                f"--allow-global MODULE.CLASS to let only that class through") from None
        except RuntimeError as exc:
            if mmap and "mmap" in str(exc):
                continue  # a file in torch's legacy (non-zip) format: read it whole
            raise CheckpointError(f"{path.name} is not a readable torch checkpoint: "
                                  f"{str(exc).splitlines()[0]}") from None
        except (EOFError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path.name} is not a readable torch checkpoint "
                                  f"(truncated or another format): {exc}") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            return dict(obj[key]), f"dict with a '{key}' entry"
    if isinstance(obj, Mapping) and any(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), "bare state dict"
    top = sorted(map(str, obj))[:10] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(f"{path.name} holds no state dict (found {top}); the published "
                          f"checkpoint is a dict with a 'model' entry or a bare state dict")


def _import_global(name: str):
    module, _, attr = name.rpartition(".")
    if not module:
        raise CheckpointError(f"--allow-global wants MODULE.CLASS, got '{name}'")
    import importlib

    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        raise CheckpointError(f"--allow-global {name}: no such class") from None


def _strip_prefix(sd: dict) -> tuple[dict, str]:
    """Remove the prefix (published wrapper 'model.', DDP 'module.', none) under which most
    keys name a part of DepthAnything3Net; keys outside it get a leading NUL (never matched)."""
    best, best_n = "", -1
    for prefix in ("model.", "", "module.model.", "module."):
        n = sum(1 for k in sd if k.startswith(prefix) and k[len(prefix):].startswith(PARTS))
        if n > best_n:
            best, best_n = prefix, n
    return {(k[len(best):] if k.startswith(best) else "\0" + k): v for k, v in sd.items()}, best


def load_published(path, config: str = PUBLISHED_CONFIG, intrinsics: str = "rays",
                   allow_globals: tuple[str, ...] = (),
                   log: Callable[[str], None] = print) -> tuple[nn.Module, KeyReport]:
    """Build the architecture, attach the deformation head and load the checkpoint's weights.

    Raises CheckpointError when the deformation head (or another part the export needs) is
    missing, when tensors do not fit the architecture, or when the file is refused."""
    raw, source = read_checkpoint(path, allow_globals)
    report = KeyReport(source=source)
    tensors = {}
    for k, v in raw.items():
        if isinstance(v, torch.Tensor):
            tensors[str(k)] = v
        else:
            report.not_tensors.append(str(k))
    cfg = architecture_config(config)
    default_head = HeadSpec(int(cfg.head.dim_in))
    sd, report.prefix = _strip_prefix(tensors)
    spec = HeadSpec.from_state_dict(sd, default_head)
    report.head = spec
    if spec != default_head:
        log(f"deformation head differs from the published construction: {spec}")
    if spec.output_dim != 4:
        raise CheckpointError(f"the checkpoint's deformation head has {spec.output_dim} output "
                              f"channels; the published model's has 4 (x, y, z, confidence)")
    log(f"building {config} from the depth-anything-3 package's config (no download)")
    net = build_network(config, spec)
    net.cam_enc = None
    if intrinsics != "camera-head":
        net.cam_dec = None
    wanted = net.state_dict()
    for k in sd:
        if k in wanted:
            continue
        part = k.split(".", 1)[0]
        if part in UNUSED:
            report.ignored[part] = report.ignored.get(part, 0) + 1
        else:  # as named in the file
            report.unexpected.append(k[1:] if k.startswith("\0") else report.prefix + k)
    missing = [k for k in wanted if k not in sd]
    report.missing = [report.prefix + k for k in missing]
    mismatched = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in wanted.items()
                  if k in sd and sd[k].shape != v.shape]
    for line in report.lines():
        log(line)
    head_missing = [k for k in missing if k.startswith(DEFORMATION + ".")]
    if head_missing:
        raise CheckpointError(
            f"the checkpoint has no (or an incomplete) deformation head: {len(head_missing)} of "
            f"its {sum(1 for k in wanted if k.startswith(DEFORMATION + '.'))} tensors are missing "
            f"(e.g. {report.prefix}{head_missing[0]}). A plain Depth-Anything-3 checkpoint is "
            f"not Face Anything's: its canonical map would be untrained")
    if mismatched:
        k, got, want = mismatched[0]
        raise CheckpointError(f"{len(mismatched)} tensors do not fit the {config} architecture, "
                              f"e.g. {report.prefix}{k}: {list(got)} in the checkpoint, "
                              f"{list(want)} in {config}; pass the --config it was trained with")
    needed = [k for k in missing if k.split(".", 1)[0] in REQUIRED + ("cam_dec",)]
    if needed:
        raise CheckpointError(f"{len(needed)} tensors the export needs are missing, e.g. "
                              f"{report.prefix}{needed[0]}")
    net.load_state_dict({k: v for k, v in sd.items() if k in wanted}, strict=False, assign=True)
    report.loaded = sum(1 for k in sd if k in wanted)
    log(f"loaded {report.loaded} tensors "
        f"({sum(v.numel() for v in net.state_dict().values()) / 1e6:.1f} M parameters)")
    return net.float().eval(), report


def make_random_checkpoint(path, config: str = "da3-small", *, head: HeadSpec | None = None,
                           wrapped: bool = True, deformation: bool = True,
                           extra: Mapping[str, torch.Tensor] = (), seed: int = 0,
                           tweak: Callable[[nn.Module], None] | None = None) -> Path:
    """A checkpoint in the published layout with random weights, for tests: keys of the
    package's `DepthAnything3` wrapper ('model.' + DepthAnything3Net's), saved as
    `{"model": sd}` (`wrapped`) or bare. `head`: the deformation head (default: the published
    construction); `tweak(net)` may edit the network first."""
    torch.manual_seed(seed)
    net = build_network(config, head)
    if tweak:
        tweak(net)
    sd = {"model." + k: v.detach().clone() for k, v in net.state_dict().items()
          if deformation or not k.startswith(DEFORMATION + ".")}
    sd.update(dict(extra))
    path = Path(path)
    torch.save({"model": sd} if wrapped else sd, path)
    return path


# --------------------------------------------------------------------------- the contract

def rays_to_intrinsics(ray: torch.Tensor, conf: torch.Tensor, height: int, width: int,
                       z_threshold: float = 1e-4, reproj_threshold: float = 0.2) -> torch.Tensor:
    """Pinhole intrinsics (B, S, 3, 3), pixels of the H x W input, from the ray map
    `ray` (B, S, h, w, 6: direction, origin) and its confidence (B, S, h, w).

    The package (`get_extrinsic_from_camray`) fits a homography from the cells of an identity
    camera on a 2 x 2 image to the predicted directions (confidence-weighted DLT inside RANSAC,
    inlier error < 0.2), splits it as Q L (QL decomposition, L lower triangular) and reads the
    focal length from diag(L) and the principal point from L's last row. The same here without
    SVD, QR or random sampling, none of which ONNX has: a weighted least-squares homography with
    H[2, 2] = 1 (normal equations solved by Gauss-Jordan elimination, in float64), refitted once on
    the points within the same inlier error, and the QL factor by Gram-Schmidt. On exact rays
    both give the same numbers; on noisy ones the RANSAC sample may differ slightly."""
    b, s, h, w = ray.shape[:4]
    d = ray[..., :3].double().reshape(b, s, -1, 3)
    wt = conf.double().reshape(b, s, -1)
    gx = (torch.arange(w, dtype=torch.float64) * 2 + 1) / w - 1
    gy = (torch.arange(h, dtype=torch.float64) * 2 + 1) / h - 1
    x = gx.view(1, -1).expand(h, -1).reshape(1, 1, -1)
    y = gy.view(-1, 1).expand(-1, w).reshape(1, 1, -1)
    z = d[..., 2]
    valid = z.abs() > z_threshold
    z = torch.where(valid, z, torch.ones_like(z))
    u, v = d[..., 0] / z, d[..., 1] / z
    wt = wt * valid.to(wt.dtype)
    x, y = x.expand_as(u), y.expand_as(u)
    zero, one = torch.zeros_like(u), torch.ones_like(u)
    a1 = torch.stack([-x, -y, -one, zero, zero, zero, x * u, y * u], -1)  # (b, s, P, 8)
    a2 = torch.stack([zero, zero, zero, -x, -y, -one, x * v, y * v], -1)

    def fit(weight):
        m = (a1 * weight[..., None]).transpose(-1, -2) @ a1 + \
            (a2 * weight[..., None]).transpose(-1, -2) @ a2
        r = -((a1 * (weight * u)[..., None]).sum(-2) + (a2 * (weight * v)[..., None]).sum(-2))
        return _solve_spd(m, r)

    hvec = fit(wt)
    hmat = torch.cat([hvec, torch.ones_like(hvec[..., :1])], -1)
    px = hmat[..., 0:1] * x + hmat[..., 1:2] * y + hmat[..., 2:3]
    py = hmat[..., 3:4] * x + hmat[..., 4:5] * y + hmat[..., 5:6]
    pz = hmat[..., 6:7] * x + hmat[..., 7:8] * y + hmat[..., 8:9]
    pz = torch.where(pz.abs() > 1e-12, pz, torch.full_like(pz, 1e-12))
    err = ((px / pz - u) ** 2 + (py / pz - v) ** 2).sqrt()
    inliers = wt * (err < reproj_threshold).to(wt.dtype)
    enough = (inliers > 0).to(wt.dtype).sum(-1, keepdim=True) >= 8
    hvec = torch.where(enough, fit(torch.where(enough, inliers, wt)), hvec)
    hm = torch.cat([hvec, torch.ones_like(hvec[..., :1])], -1).reshape(b, s, 3, 3)
    # QL by Gram-Schmidt on the columns in reverse order (unique with a positive diagonal; the
    # sign of H, which the package flips for a proper rotation, does not change L)
    c0, c1, c2 = hm[..., 0], hm[..., 1], hm[..., 2]
    r11 = c2.norm(dim=-1)
    q1 = c2 / r11[..., None]
    r12 = (q1 * c1).sum(-1)
    u2 = c1 - r12[..., None] * q1
    r22 = u2.norm(dim=-1)
    q2 = u2 / r22[..., None]
    r13 = (q1 * c0).sum(-1)
    r23 = (q2 * c0).sum(-1)
    r33 = (c0 - r13[..., None] * q1 - r23[..., None] * q2).norm(dim=-1)
    # L = [[r33, 0, 0], [r23, r22, 0], [r13, r12, r11]], normalised by L[2, 2] = r11:
    # focal (normalised to a 2-wide image) = 1 / diag, principal point = last row + 1
    fx = r11 / r33 * (width / 2)
    fy = r11 / r22 * (height / 2)
    cx = (r13 / r11 + 1) * (width / 2)
    cy = (r12 / r11 + 1) * (height / 2)
    return _pinhole(fx, fy, cx, cy).float()


def _solve_spd(m: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """m x = r for symmetric positive definite m (..., n, n): Gauss-Jordan elimination without
    pivoting (stable for such m), one whole-matrix step per row (a small ONNX graph)."""
    n = m.shape[-1]
    aug = torch.cat([m, r.unsqueeze(-1)], dim=-1)  # (..., n, n + 1)
    eye = torch.eye(n, dtype=m.dtype)
    for k in range(n):
        pivot = aug[..., k:k + 1, k:k + 1]
        pivot = torch.where(pivot.abs() > 1e-300, pivot, torch.full_like(pivot, 1e-300))
        row = aug[..., k:k + 1, :] / pivot  # row k scaled to a leading 1
        # every row i loses aug[i, k] * row; row k (aug[k, k] * row) becomes row itself
        aug = aug - (aug[..., :, k:k + 1] - eye[:, k:k + 1]) * row
    return aug[..., :, n]


def _pinhole(fx, fy, cx, cy) -> torch.Tensor:
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([torch.stack([fx, zero, cx], -1), torch.stack([zero, fy, cy], -1),
                        torch.stack([zero, zero, one], -1)], -2)


def camera_head_intrinsics(pose_enc: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The package's `pose_encoding_to_extri_intri` for intrinsics only: fields of view at
    pose_enc[..., 7:9], principal point at the image centre."""
    fy = (height / 2.0) / torch.clamp(torch.tan(pose_enc[..., 7] / 2.0), min=1e-6)
    fx = (width / 2.0) / torch.clamp(torch.tan(pose_enc[..., 8] / 2.0), min=1e-6)
    return _pinhole(fx, fy, torch.full_like(fx, width / 2), torch.full_like(fy, height / 2))


def confidence_mask(canonical_conf: torch.Tensor) -> torch.Tensor:
    """The published model has no face mask (its pipeline runs a separate matting network): a
    mask from the canonical confidence, `(conf - 1) / its maximum in the frame`, the same rule
    the add-on applies to a model without a mask (pipeline.face_weight). Relative, so a frame
    always has some 'face': the add-on's face detection threshold (0.5) then keeps the pixels
    at least half as confident as the best one."""
    c = (canonical_conf - 1.0).clamp(min=0.0)
    top = c.amax(dim=(-2, -1), keepdim=True).clamp(min=1e-6)
    return c / top


def reference_order(x: torch.Tensor, strategy: str = "saddle_balanced"):
    """Gather indices (B, S) that put the reference view first, and those that undo it, for
    tokens x (B, S, n, C): the package's select_reference_view / reorder_by_reference /
    restore_original_order. The package reorders only windows of 3+ frames: here the choice is
    computed for every S and replaced by view 0 (no reordering) below 3, so one ONNX graph
    serves every window length."""
    b = x.shape[0]
    ones = torch.ones_like(x[0, :, 0, 0], dtype=torch.long)
    positions = (ones.cumsum(0) - 1).unsqueeze(0).expand(b, -1)  # (B, S)
    count = ones.sum()
    if strategy == "first":
        ref = torch.zeros_like(positions[:, 0])
    else:
        cls = x[:, :, 0].float()
        feat = cls / cls.norm(dim=-1, keepdim=True)
        sim = feat @ feat.transpose(1, 2)
        # (sim - I).sum(-1) / (S - 1), as the package; S - 1 floored at 1 for S = 1
        sim_score = (sim.sum(-1) - 1.0) / (count - 1).clamp(min=1).to(sim.dtype)

        def unit(metric):
            lo = metric.min(dim=1, keepdim=True).values
            hi = metric.max(dim=1, keepdim=True).values
            return (metric - lo) / (hi - lo + 1e-8)

        balance = ((unit(sim_score) - 0.5).abs() + (unit(cls.norm(dim=-1)) - 0.5).abs()
                   + (unit(feat.var(dim=-1)) - 0.5).abs())
        ref = balance.argmin(dim=1)
        ref = ref * (count >= REF_VIEW_MIN_FRAMES).to(ref.dtype)
    ref = ref.unsqueeze(1)
    forward = torch.where((positions > 0) & (positions <= ref), positions - 1, positions)
    forward = torch.where(positions == 0, ref.expand_as(positions), forward)
    back = torch.where(positions < ref, positions + 1, positions)
    back = torch.where(positions == ref, torch.zeros_like(positions), back)
    return forward, back


def gather_views(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, S, ...) with its views in the order index (B, S) gives."""
    idx = index.reshape(index.shape + (1,) * (x.dim() - 2)).expand(index.shape + x.shape[2:])
    return torch.gather(x, 1, idx)


class ContractWrapper(nn.Module):
    """images [N, S, 3, H, W] (normalised) -> the contract's outputs, for one fixed H x W.

    `backbone_dtype` float16 runs the ViT in half precision while the heads, the intrinsics fit
    and all outputs stay float32 (the published code likewise runs the heads with autocast off).
    """

    def __init__(self, net: nn.Module, height: int, width: int, *, intrinsics: str = "rays",
                 ref_view: str = "saddle_balanced", mask: bool = True,
                 backbone_dtype: torch.dtype = torch.float32):
        super().__init__()
        if height % PATCH or width % PATCH:
            raise ValueError(f"{height} x {width} is not a multiple of the patch size {PATCH}")
        if intrinsics not in INTRINSICS:
            raise ValueError(f"intrinsics must be one of {INTRINSICS}")
        if ref_view not in REF_VIEW:
            raise ValueError(f"ref_view must be one of {REF_VIEW}")
        if intrinsics == "camera-head" and net.cam_dec is None:
            raise ValueError("the network has no camera decoder")
        self.net = net
        self.height, self.width = height, width
        self.intrinsics, self.ref_view, self.with_mask = intrinsics, ref_view, mask
        self.out_layers = list(net.backbone.out_layers)
        vit = net.backbone.pretrained
        if vit.register_tokens is not None:
            raise ValueError("backbones with register tokens are not supported")
        gh, gw = height // PATCH, width // PATCH
        with torch.no_grad():
            tokens = torch.zeros(1, 1 + gh * gw, vit.embed_dim)
            pos_embed = vit.interpolate_pos_encoding(tokens, height, width).float()
        self.register_buffer("pos_embed", pos_embed, persistent=False)
        # RoPE positions of one frame (the package's PositionGetter + _prepare_rope): the cls /
        # camera token at (0, 0), patches at (row + 1, col + 1); "no difference" positions of
        # global attention: every patch at (1, 1)
        yy, xx = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        grid = torch.stack([yy.reshape(-1), xx.reshape(-1)], -1) + 1
        special = torch.zeros(1, 2, dtype=torch.long)
        self.register_buffer("rope_pos", torch.cat([special, grid]), persistent=False)
        self.register_buffer("rope_pos_nodiff", torch.cat([special, torch.ones_like(grid)]),
                             persistent=False)
        self.set_backbone_dtype(backbone_dtype)

    def set_backbone_dtype(self, dtype: torch.dtype) -> "ContractWrapper":
        self.net.backbone.to(dtype)
        self.backbone_dtype = dtype
        return self

    # ------------------------------------------------------------------ backbone

    def _tokens(self, images: torch.Tensor) -> torch.Tensor:
        vit = self.net.backbone.pretrained
        b, s = images.shape[0], images.shape[1]
        x = vit.patch_embed(images.reshape(b * s, 3, self.height, self.width))
        cls = vit.cls_token.expand(b * s, -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed.to(x.dtype)
        return x.reshape(b, s, x.shape[1], x.shape[2])

    def features(self, images: torch.Tensor):
        """The backbone's output as DinoV2.forward returns it: [(tokens, camera token)] for
        each output layer; the package's layer loop without Python branches on S."""
        vit = self.net.backbone.pretrained
        b, s = images.shape[0], images.shape[1]
        x = self._tokens(images.to(self.backbone_dtype))
        n = x.shape[2]
        pos = self.rope_pos.expand(b, s, n, 2)
        pos_nodiff = self.rope_pos_nodiff.expand(b, s, n, 2)
        take = set(self.out_layers)
        back, local_x, outputs = None, x, []
        for i, blk in enumerate(vit.blocks):
            if i < vit.rope_start or vit.rope is None:
                g_pos, l_pos = None, None
            else:
                g_pos, l_pos = pos_nodiff, pos
            if vit.alt_start != -1 and i == vit.alt_start - 1:
                forward, back = reference_order(x, self.ref_view)
                x, local_x = gather_views(x, forward), gather_views(local_x, forward)
            if vit.alt_start != -1 and i == vit.alt_start:
                ref_token = vit.camera_token[:, :1].expand(b, -1, -1)
                src_token = vit.camera_token[:, 1:].expand(b, s - 1, -1)
                cam = torch.cat([ref_token, src_token], dim=1).to(x.dtype)
                x = torch.cat([cam.unsqueeze(2), x[:, :, 1:]], dim=2)  # package: x[:, :, 0] = cam
            if vit.alt_start != -1 and i >= vit.alt_start and i % 2 == 1:
                x = vit.process_attention(x, blk, "global", pos=g_pos)
            else:
                x = vit.process_attention(x, blk, "local", pos=l_pos)
                local_x = x
            if i in take:
                out_x = torch.cat([local_x, x], dim=-1) if vit.cat_token else x
                if back is not None:
                    out_x = gather_views(out_x, back)
                outputs.append((out_x[:, :, 0], out_x))
        c = vit.embed_dim
        feats = []
        for cam, out in outputs:
            if out.shape[-1] == c:
                out = vit.norm(out)
            else:
                out = torch.cat([out[..., :c], vit.norm(out[..., c:])], dim=-1)
            feats.append((out[..., 1:, :].float(), cam.float()))
        return feats

    # ------------------------------------------------------------------ heads

    def forward(self, images: torch.Tensor):
        h, w = self.height, self.width
        feats = self.features(images)
        main = self.net.head(feats, h, w, patch_start_idx=0, chunk_size=None)
        deform = self.net.deformation_head(feats, h, w, patch_start_idx=0, chunk_size=None)
        if self.intrinsics == "camera-head":
            k = camera_head_intrinsics(self.net.cam_dec(feats[-1][1]), h, w)
        else:
            k = rays_to_intrinsics(main["ray"], main["ray_conf"], h, w)
        out = [main["depth"], main["depth_conf"], deform["deformation"],
               deform["deformation_conf"], k]
        if self.with_mask:
            out.append(confidence_mask(deform["deformation_conf"]))
        return tuple(out)

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUTS if self.with_mask else OUTPUTS[:-1]
