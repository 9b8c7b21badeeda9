# SPDX-License-Identifier: GPL-3.0-or-later
"""Network sizes, from a test-sized toy to GPU-sized configs."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class NetConfig:
    """Everything that fixes the network's shape (stored in checkpoints)."""

    width: int = 192  # token width
    depth: int = 6  # transformer blocks
    heads: int = 3
    mlp_ratio: float = 4.0
    patch: int = 14
    frame_blocks: int = 3  # the first blocks attend within a frame only; later ones alternate
    taps: tuple[int, ...] = (1, 3, 4, 5)  # blocks whose outputs feed the decoder (4 of them)
    features: int = 64  # decoder channels
    separate_decoders: bool = False  # one decoder for depth+mask and one for canonical
    image_stem: bool = True  # a shallow conv path from the pixels into the decoder output
    depth_prior: float = 0.6  # metres: exp(0) of the depth head maps here
    focal_prior: float = 1.5  # focal length / image width at the camera head's zero
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "NetConfig":
        values = dict(values)
        for key in ("taps", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def global_block(self, index: int) -> bool:
        """Whether block `index` attends across all frames of a window."""
        return index >= self.frame_blocks and (index - self.frame_blocks) % 2 == 1


CONFIGS: dict[str, NetConfig] = {
    # unit tests only: a few thousand parameters' worth of shape
    "test-tiny": NetConfig(width=32, depth=4, heads=2, frame_blocks=2, taps=(0, 1, 2, 3),
                           features=16),
    # unit tests only: test-tiny grown to 6 blocks (training.network.weights.grow_deeper)
    "test-deep": NetConfig(width=32, depth=6, heads=2, frame_blocks=2, taps=(0, 1, 2, 5),
                           features=16),
    # the bundled CPU-trained default
    "cpu-tiny": NetConfig(width=192, depth=6, heads=3, frame_blocks=3, taps=(1, 3, 4, 5),
                          features=32),
    # cpu-tiny grown to 10 blocks (training.network.weights.grow_deeper: its 4 new blocks start
    # as pass-throughs, so a cpu-tiny model continues training in it unchanged)
    "cpu-deep": NetConfig(width=192, depth=10, heads=3, frame_blocks=3, taps=(1, 3, 4, 9),
                          features=32),
    # trained on a GPU, small and fast enough to bundle (at most 50 MB, at least 5 frames per
    # second on 2 CPU cores at 196): `training.device_session`'s default
    "gpu-compact": NetConfig(width=256, depth=8, heads=4, frame_blocks=4, taps=(1, 3, 5, 7),
                             features=64, separate_decoders=True),
    # GPU configs (ViT-S / ViT-B widths, separate decoders as in the paper)
    "small": NetConfig(width=384, depth=12, heads=6, frame_blocks=6, taps=(3, 7, 9, 11),
                       features=128, separate_decoders=True),
    "base": NetConfig(width=768, depth=12, heads=12, frame_blocks=6, taps=(3, 7, 9, 11),
                      features=192, separate_decoders=True),
}


def get_config(name: str, **overrides) -> NetConfig:
    """A named config, optionally with fields replaced."""
    if name not in CONFIGS:
        raise KeyError(f"unknown network config '{name}'; known: {', '.join(CONFIGS)}")
    return replace(CONFIGS[name], **overrides)
