# SPDX-License-Identifier: GPL-3.0-or-later
"""Starting weights for a run: a network's weights read back out of its own ONNX export, and a
trained network grown deeper without changing what it computes.

Checkpoints are not kept with the project (only the exported model is), so a fresh checkout can
continue training only from the ONNX file. `state_dict_from_onnx` reads the weights back: most
initializers keep their parameter names; the exporter stores each linear layer's weight
transposed under an anonymous name, which is found through the MatMul node that reads it (its
node name is the module path). The result is checked by running the file in ONNX Runtime against
torch with the recovered weights (plain or mirror-averaged, whichever the file is).

`grow_deeper` appends transformer blocks whose two residual branches are scaled by `scale`
(LayerScale gamma). With 0 they pass tokens through unchanged, so the grown network computes
exactly what the old one did; but then the new blocks' own weights get no gradient until gamma
has grown, and in the one trial at 0 (v9, two hours) gamma only reached about 0.003: the blocks
never opened. A small non-zero scale (0.02: a new block adds a few per cent to the token stream)
gives their weights gradients from the first step, at the price of a slightly changed starting
output. In its one trial (v10, two hours) the scales still did not grow: the attention branches
stayed near 0.02 and the MLP branches fell to 0.005 (the model card).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import NetConfig
from .model import FaceAnythingNet

# the ONNX export's module prefixes: ContractWrapper.model, then ShiftAveraged.model and
# MirrorAveraged.model for each averaging the file does (longest first)
PREFIXES = ("model.model.model.", "model.model.", "model.")


class WeightsError(ValueError):
    """The weights cannot be read back or grown as asked; the message says why."""


def _module_path(node_name: str, modules: set[str]) -> str | None:
    """'/model/model/encoder/blocks.0/mlp/mlp.0/MatMul' -> 'encoder.blocks.0.mlp.0' (the scope
    names repeat a Sequential's own name in its children's names: 'mlp/mlp.0')."""
    parts = [p for p in node_name.split("/")[:-1] if p]
    while parts and parts[0] == "model":
        parts.pop(0)
    path = ""
    for part in parts:
        joined = f"{path}.{part}" if path else part
        if joined in modules:
            path = joined
            continue
        parent = path.rpartition(".")[0]
        sibling = f"{parent}.{part}" if parent else part
        if sibling in modules:
            path = sibling
            continue
        return None
    return path or None


def state_dict_from_onnx(path: Path | str, model: FaceAnythingNet) -> tuple[dict, list[str]]:
    """Weights for `model` (its config must be the exported network's) read out of the ONNX file
    at `path`, and the names of parameters the file does not hold (left as they are in `model`:
    parameters the graph never uses, such as the coarsest fusion stage's unused skip path).
    Raises WeightsError when a shape disagrees."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {i.name: i for i in proto.graph.initializer}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    found: set[str] = set()

    def put(key: str, array: np.ndarray, source: str) -> None:
        want = tuple(state[key].shape)
        if tuple(array.shape) != want:
            raise WeightsError(f"{Path(path).name}: {source} has shape {tuple(array.shape)}, "
                               f"the network's {key} has {want}: the file was exported from a "
                               f"different network config")
        state[key] = torch.from_numpy(np.array(array, dtype=np.float32))
        found.add(key)

    for name, init in inits.items():
        for prefix in PREFIXES:
            if name.startswith(prefix) and name[len(prefix):] in state:
                put(name[len(prefix):], numpy_helper.to_array(init), name)
                break
    modules = {n for n, _ in model.named_modules() if n}
    for node in proto.graph.node:
        if node.op_type != "MatMul":
            continue
        weight = next((x for x in node.input if x in inits and x.startswith("onnx::")), None)
        if weight is None:
            continue
        module = _module_path(node.name, modules)
        key = f"{module}.weight" if module else None
        if key not in state:
            raise WeightsError(f"{Path(path).name}: cannot place the weight {weight} read by "
                               f"{node.name} in the network")
        put(key, numpy_helper.to_array(inits[weight]).T, weight)
    missing = [k for k in state if k not in found]
    return state, missing


def load_onnx_weights(path: Path | str, cfg: NetConfig, tolerance: float = 1e-3,
                      size: int = 56) -> FaceAnythingNet:
    """A network of config `cfg` with the weights of the ONNX export at `path`, checked: the file
    run in ONNX Runtime must match torch with those weights (plain, mirror-averaged,
    shift-averaged or both) within `tolerance` of each output's spread. Raises WeightsError
    otherwise."""
    from ..export import parity
    from .mirror import MirrorAveraged
    from .shift import ShiftAveraged

    model = FaceAnythingNet(cfg)
    try:
        state, _ = state_dict_from_onnx(path, model)
    except FileNotFoundError as exc:
        raise WeightsError(f"no ONNX file at {path}") from exc
    model.load_state_dict(state)
    model.eval()
    size = max(cfg.patch, size // cfg.patch * cfg.patch)
    worst = {}
    readings = {"plain": model, "mirror-averaged": MirrorAveraged(model),
                "shift-averaged": ShiftAveraged(model),
                "shift- and mirror-averaged": ShiftAveraged(MirrorAveraged(model))}
    for name, wrapped in readings.items():
        worst[name] = max(parity(wrapped.eval(), Path(path), (size, size)).values())
        if worst[name] <= tolerance:
            return model
    raise WeightsError(f"{Path(path).name}: torch with the recovered weights does not reproduce "
                       f"the file (max error / spread: {worst}); is --init-config the network's "
                       f"config?")


def grow_deeper(model: FaceAnythingNet, cfg: NetConfig, scale: float = 0.0) -> FaceAnythingNet:
    """A network of config `cfg`: `model`'s blocks first, then `cfg.depth - model depth` new
    blocks with LayerScale `scale` (0: pass-throughs, so it computes exactly what `model`
    does; see the module note for why a small non-zero scale trains better). `cfg` must equal `model.cfg`
    but for depth and taps; its taps must be the old ones with the last one moved to any block at
    or after the old last block (those see the old last block's tokens unchanged)."""
    old = model.cfg
    if cfg == old:
        return model
    same = {f: getattr(old, f) for f in old.to_dict() if f not in ("depth", "taps")}
    differs = [f for f, v in same.items() if getattr(cfg, f) != v]
    if differs:
        raise WeightsError(f"cannot grow the network into this config: {', '.join(differs)} "
                           f"differ (only depth and taps may change)")
    if cfg.depth < old.depth:
        raise WeightsError(f"cannot grow {old.depth} blocks into {cfg.depth}")
    last = old.depth - 1
    taps_ok = len(cfg.taps) == len(old.taps) and all(
        new == o or (o == last and new >= last) for new, o in zip(cfg.taps, old.taps))
    if not taps_ok:
        raise WeightsError(f"cannot grow: taps {old.taps} -> {cfg.taps} would change what the "
                           f"decoder sees (only a tap on the last block may move deeper)")
    grown = FaceAnythingNet(cfg)
    state = grown.state_dict()
    state.update(model.state_dict())
    for i in range(old.depth, cfg.depth):
        for ls in ("ls1", "ls2"):
            state[f"encoder.blocks.{i}.{ls}.gamma"] = torch.full_like(
                state[f"encoder.blocks.{i}.{ls}.gamma"], scale)
    grown.load_state_dict(state)
    return grown.train(model.training)
