# SPDX-License-Identifier: GPL-3.0-or-later
"""Dataclass records stored as .npz files: arrays as arrays, everything else as JSON in `__meta__`,
tagged with a format name and version, written atomically. Shared by captures and templates."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np

META = "__meta__"
READ_ERRORS = (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError)


def write_record(record, path, fmt: str, version: int, compressed: bool = False) -> Path:
    """Write a dataclass `record` to `path` atomically (a temporary file in the same folder,
    flushed, then renamed over `path`): a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta, arrays = {"format": fmt, "version": version}, {}
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        else:
            meta[f.name] = list(value) if isinstance(value, tuple) else value
    arrays[META] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as a plain open() would make it (mkstemp makes 0600)
    try:
        with os.fdopen(fd, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(path) -> tuple[dict, dict]:
    """(meta, arrays) of a record file; raises one of READ_ERRORS when it is no readable .npz.
    An .npz without record metadata gives meta {} (the caller says whose format it lacks)."""
    with np.load(Path(path), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if META not in arrays:
        return {}, arrays
    meta = json.loads(arrays.pop(META).tobytes().decode("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("metadata is not an object")
    return meta, arrays


def record_fields(cls, meta: dict, arrays: dict) -> dict:
    """The constructor arguments of `cls` found in a record (format and version left out)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in {**meta, **arrays}.items() if k in names}


def missing_fields(cls, meta: dict, arrays: dict) -> list[str]:
    """The fields of `cls` without a default that the record lacks (a field with a default is
    optional: a record written before it existed still reads)."""
    required = {f.name for f in fields(cls)
                if f.default is MISSING and f.default_factory is MISSING}
    return sorted(required - set(meta) - set(arrays))
