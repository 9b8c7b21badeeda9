# SPDX-License-Identifier: GPL-3.0-or-later
"""The model contract (docs/model-contract.md) and its checker.

`describe_model(path)` reads a model file's header (no weights loaded) and returns a
`ModelDescription`, or raises one `ContractError` that says exactly what is wrong and what to do.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .onnx_file import OnnxFileError, TensorInfo, read_header

CONTRACT_VERSIONS = ("1",)
PREFIX = "faceanything."
INPUT = "images"
FLOAT_TYPES = ("float32", "float16")

# name -> (rank, fixed trailing sizes)
REQUIRED_OUTPUTS = {
    "depth": (4, ()),
    "depth_conf": (4, ()),
    "canonical": (5, (3,)),
    "canonical_conf": (4, ()),
    "intrinsics": (4, (3, 3)),
}
OPTIONAL_OUTPUTS = {"mask": (4, ())}
REQUIRED_METADATA = ("contract", "patch_size", "input_size", "mean", "std", "max_window",
                     "depth_units", "canonical_space")
DEPTH_UNITS = ("metric", "relative")
MIN_OPSET = 17


class ContractError(Exception):
    """A model file that the add-on cannot run; the message names the file and the problem."""


@dataclass(frozen=True)
class ModelDescription:
    path: Path
    contract: str
    input_type: str  # "float32" | "float16"
    fixed_size: tuple[int, int] | None  # (H, W) when the graph fixes them
    patch_size: int
    input_size: int  # preferred longest side
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    max_window: int
    depth_units: str
    canonical_space: str
    has_mask: bool
    landmarks: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    name: str = ""
    license: str = ""
    external_files: tuple[str, ...] = ()

    @property
    def metric(self) -> bool:
        return self.depth_units == "metric"


def describe_model(path) -> ModelDescription:
    path = Path(path)
    fail = _Failer(path)
    if not path.is_file():
        raise fail(f"no such file{' (it is a folder)' if path.is_dir() else ''}")
    try:
        header = read_header(path)
    except OnnxFileError as exc:
        reason = str(exc)
        if reason == "truncated":
            raise fail("the file is truncated (cut off part-way): download or export it again") from None
        raise fail("not an ONNX model file") from None
    for location, needed in header.external_files.items():
        data = path.parent / location
        if not data.is_file():
            raise fail(f"its weights are in an external-data file '{location}' that is missing: "
                       f"keep it in the same folder as the model")
        if data.stat().st_size < needed:
            raise fail(f"external-data file '{location}' is truncated "
                       f"({data.stat().st_size} of {needed} bytes)")
    opset = header.opsets.get("", header.opsets.get("ai.onnx", 0))
    if opset and opset < MIN_OPSET:
        raise fail(f"opset {opset} is older than the contract's minimum {MIN_OPSET}: re-export it")

    meta = _metadata(header.metadata, fail)
    fixed = _check_input(header, meta["patch_size"], fail)
    outputs = {o.name: o for o in header.outputs}
    for name, spec in REQUIRED_OUTPUTS.items():
        if name not in outputs:
            raise fail(f"missing output '{name}' (outputs are {sorted(outputs) or 'none'})")
        _check_output(outputs[name], *spec, fail)
    has_mask = "mask" in outputs
    if has_mask:
        _check_output(outputs["mask"], *OPTIONAL_OUTPUTS["mask"], fail)
    return ModelDescription(path=path, input_type=_input(header, fail).element_type,
                            fixed_size=fixed, has_mask=has_mask,
                            external_files=tuple(header.external_files), **meta)


class _Failer:
    def __init__(self, path: Path):
        self.path = path

    def __call__(self, problem: str) -> ContractError:
        return ContractError(f"Model '{self.path.name}': {problem}. (See docs/model-contract.md)")


def _metadata(raw: dict[str, str], fail) -> dict:
    meta = {k[len(PREFIX):]: v for k, v in raw.items() if k.startswith(PREFIX)}
    if "contract" not in meta:
        raise fail(f"no '{PREFIX}contract' metadata: this is not a Face Anything model "
                   f"(export it with the project's exporter)")
    if meta["contract"] not in CONTRACT_VERSIONS:
        raise fail(f"contract version {meta['contract']} is unknown to this add-on, which "
                   f"understands version {', '.join(CONTRACT_VERSIONS)}: update the add-on or "
                   f"re-export the model")
    missing = [PREFIX + k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise fail(f"missing metadata {', '.join(missing)}")

    def integer(key: str, minimum: int = 1) -> int:
        try:
            value = int(meta[key])
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise fail(f"metadata {PREFIX}{key} = '{meta[key]}' is not an integer >= {minimum}")
        return value

    def triple(key: str, positive: bool) -> tuple[float, float, float]:
        try:
            values = tuple(float(v) for v in meta[key].split(","))
        except ValueError:
            values = ()
        if len(values) != 3 or (positive and min(values) <= 0):
            raise fail(f"metadata {PREFIX}{key} = '{meta[key]}' is not three comma-separated "
                       f"{'positive ' if positive else ''}numbers")
        return values

    patch = integer("patch_size")
    input_size = integer("input_size")
    if input_size % patch:
        raise fail(f"input_size {input_size} is not a multiple of the patch size {patch}")
    if meta["depth_units"] not in DEPTH_UNITS:
        raise fail(f"metadata {PREFIX}depth_units = '{meta['depth_units']}' is not one of "
                   f"{', '.join(DEPTH_UNITS)}")
    landmarks = {}
    if "landmarks" in meta:
        try:
            landmarks = {str(k): tuple(float(c) for c in v) for k, v in
                         json.loads(meta["landmarks"]).items()}
            assert all(len(v) == 3 for v in landmarks.values())
        except (ValueError, TypeError, AttributeError, AssertionError):
            raise fail(f"metadata {PREFIX}landmarks is not a JSON object of name -> [x, y, z]") \
                from None
    return dict(contract=meta["contract"], patch_size=patch, input_size=input_size,
                mean=triple("mean", False), std=triple("std", True),
                max_window=integer("max_window"), depth_units=meta["depth_units"],
                canonical_space=meta["canonical_space"], landmarks=landmarks,
                name=meta.get("name", ""), license=meta.get("license", ""))


def _input(header, fail) -> TensorInfo:
    inputs = [i for i in header.inputs if i.name not in header.initializer_names]
    named = [i for i in inputs if i.name == INPUT]
    if not named:
        raise fail(f"no input named '{INPUT}' (inputs are {[i.name for i in inputs] or 'none'})")
    extra = [i.name for i in inputs if i.name != INPUT]
    if extra:
        raise fail(f"unexpected extra inputs {extra}: the contract has only '{INPUT}'")
    return named[0]


def _check_input(header, patch: int, fail) -> tuple[int, int] | None:
    info = _input(header, fail)
    if info.element_type not in FLOAT_TYPES:
        raise fail(f"input '{INPUT}' is {info.element_type or 'of unknown type'}; the contract "
                   f"wants float32 or float16")
    if info.shape is None or len(info.shape) != 5:
        rank = "unknown" if info.shape is None else len(info.shape)
        raise fail(f"input '{INPUT}' has rank {rank}; the contract wants [N, S, 3, H, W]")
    if isinstance(info.shape[2], int) and info.shape[2] != 3:
        raise fail(f"input '{INPUT}' has {info.shape[2]} channels; the contract wants 3 (RGB)")
    h, w = info.shape[3], info.shape[4]
    for name, dim in (("height", h), ("width", w)):
        if isinstance(dim, int) and dim % patch:
            raise fail(f"input {name} {dim} is not a multiple of the patch size {patch}")
    return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def _check_output(info: TensorInfo, rank: int, trailing: tuple[int, ...], fail) -> None:
    if info.element_type and info.element_type not in FLOAT_TYPES:
        raise fail(f"output '{info.name}' is {info.element_type}; the contract wants float")
    if info.shape is None:
        return  # rank not declared in the graph: checked on the first run
    if len(info.shape) != rank:
        raise fail(f"output '{info.name}' has rank {len(info.shape)}; the contract wants {rank}")
    got = info.shape[rank - len(trailing):] if trailing else ()
    if any(isinstance(g, int) and g != t for g, t in zip(got, trailing)):
        raise fail(f"output '{info.name}' ends in {list(got)}; the contract wants {list(trailing)}")
