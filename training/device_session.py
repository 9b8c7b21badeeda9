# SPDX-License-Identifier: GPL-3.0-or-later
"""One prepared GPU training session, sized for a short loan of an accelerator machine.

The project is lent a GPU (one NVIDIA H200, 16 CPU cores) only now and then, for about 15
minutes, through a tool that copies the working tree there, runs one command and brings back at
most 8 files of 16 MiB each from its output folder. This module is that command, and the way
back:

    # on the GPU machine (its python3 holds a CUDA torch); carry training/.cache/head_model_v2.npz
    PYTHONUNBUFFERED=1 python3 -m training.device_session run --out $OUT --minutes 7

    # here: the returned parts -> a checkpoint that training.export / training.train --init read
    .venv/bin/python -m training.device_session join FOLDER out/gpu-compact/last.pt

`run` checks the machine (CUDA, the head model cache), trains `--config` on fresh windows that
`--workers` render on the CPU cores while the GPU trains (`training.train`, bf16 autocast, no
pool cache on disk, a moving average of the weights with `--ema`), stops at `--minutes`, and
writes into `--out`: the averaged, last and best weights, in that order, as compact fp16
checkpoints cut into parts of at most 15 MiB each with a manifest (sha256 of every part and of
the whole), the training log and a summary (at most 8 files: weights that would not fit are
left out, which the summary says). `join` checks the manifest and writes
the checkpoint back (fp32 weights, the config, the training arguments).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

PART_BYTES = 15 * 1024 * 1024  # under the 16 MiB a returned file may have
MAX_FILES = 8  # files that come back from the device's output folder
MANIFEST = "manifest.json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_file(path: Path, folder: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """Cut `path` into `folder`/NAME.partNN files of at most `part_bytes`; their names and
    sha256s (and the whole file's) are added to `folder`/manifest.json."""
    folder.mkdir(parents=True, exist_ok=True)
    data = path.read_bytes()  # a compact checkpoint: tens of MB
    parts, entries = [], []
    for i, start in enumerate(range(0, len(data), part_bytes)):
        block = data[start:start + part_bytes]
        part = folder / f"{path.name}.part{i:02d}"
        part.write_bytes(block)
        parts.append(part)
        entries.append({"name": part.name, "sha256": _sha256(block)})
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[path.name] = {"bytes": len(data), "sha256": _sha256(data), "parts": entries}
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return parts


def join_parts(folder: Path, name: str, dest: Path) -> Path:
    """The file `name` put back together from its parts in `folder`, checked against the
    manifest (every part and the whole) before anything is written; raises ValueError naming
    what is missing or wrong."""
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        raise ValueError(f"{manifest_path} is missing: not the output of a device session")
    entry = json.loads(manifest_path.read_text()).get(name)
    if entry is None:
        raise ValueError(f"{manifest_path} lists no {name!r}")
    blocks = []
    for part in entry["parts"]:
        p = folder / part["name"]
        if not p.exists():
            raise ValueError(f"part {p} is missing (it did not come back from the device)")
        blocks.append(p.read_bytes())
        if _sha256(blocks[-1]) != part["sha256"]:
            raise ValueError(f"part {p} does not match its sha256 in the manifest")
    data = b"".join(blocks)
    if len(data) != entry["bytes"] or _sha256(data) != entry["sha256"]:
        raise ValueError(f"{name} put together from its parts does not match the manifest")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".joining")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


def compact_checkpoint(src: Path, dest: Path) -> Path:
    """A training checkpoint without its optimiser state and with fp16 weights (half the size
    of fp32): what `join` returns loads in training.export and as `training.train --init`."""
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    small = {k: ckpt[k] for k in ("step", "config", "args", "size", "best", "elapsed") if k in ckpt}
    small["model"] = {k: v.half() if v.is_floating_point() else v
                      for k, v in ckpt["model"].items()}
    small["compact"] = True
    torch.save(small, dest)
    return dest


def expand_checkpoint(path: Path) -> None:
    """In place: the compact checkpoint's weights back to fp32 (the network's own dtype)."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    ckpt["model"] = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    ckpt.pop("compact", None)
    torch.save(ckpt, path)


def check_machine(require_cuda: bool, need_head: bool = True) -> dict:
    """What the session runs on; SystemExit with the reason when it cannot train here."""
    import torch

    from .head_model import cache_path

    info = {"torch": torch.__version__, "python": sys.version.split()[0],
            "cpus": os.cpu_count(), "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    elif require_cuda:
        raise SystemExit("no CUDA device is visible to torch here (torch "
                         f"{torch.__version__}); pass --device cpu to try the session on a CPU")
    head = cache_path()
    if need_head and not head.exists():
        raise SystemExit(f"{head} is missing: carry it to the device machine (it is built here "
                         "by `.venv/bin/python -m training.head_model` and is git-ignored)")
    return info


def run(argv: list[str] | None = None, source=None) -> dict:
    """The `run` command; `source` replaces the synthetic engine (tests)."""
    p = argparse.ArgumentParser(prog="training.device_session run")
    p.add_argument("--out", type=Path, required=True, help="the folder whose files come back")
    p.add_argument("--minutes", type=float, default=7.0, help="training time (wall clock)")
    p.add_argument("--config", default="gpu-compact")
    p.add_argument("--size", type=int, default=196)
    p.add_argument("--batch", type=int, default=16, help="windows per step")
    p.add_argument("--workers", type=int, default=0, help="render processes (0: CPUs - 2)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--pool", type=int, default=3000, help="windows kept in memory")
    p.add_argument("--ema", type=float, default=0.998,
                   help="decay of the weights' moving average (training.train --ema; 0: none)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--init", type=Path, default=None, help="start from these weights")
    p.add_argument("--work", type=Path, default=Path("/tmp/fa-device-run"),
                   help="where the run's own files go (not returned)")
    p.add_argument("--val-windows", type=int, default=16)
    p.add_argument("--extra", default="", help="more training.train arguments, one string")
    a = p.parse_args(argv)
    t0 = time.time()
    info = check_machine(a.device == "cuda", need_head=source is None)
    print(json.dumps({"machine": info}), flush=True)
    workers = a.workers or max(1, (os.cpu_count() or 4) - 2)
    from .train import parse_args, train

    targs = ["--config", a.config, "--size", str(a.size), "--window", "2", "--single", "0.3",
             "--batch", str(a.batch), "--steps", "10000000", "--lr", str(a.lr),
             "--warmup", "200", "--pool", str(a.pool), "--workers", str(workers),
             "--min-pool", str(4 * a.batch), "--val-windows", str(a.val_windows), "--val-every", "500",
             "--ckpt-every", "500", "--max-minutes", str(a.minutes), "--threads", "2",
             "--device", a.device, "--seed", "101", "--out", str(a.work), "--no-pool-cache",
             *(["--ema", str(a.ema)] if a.ema else []),
             *(["--init", str(a.init)] if a.init else []), *a.extra.split()]
    record = train(parse_args(targs), source)
    a.out.mkdir(parents=True, exist_ok=True)
    summary = {"machine": info, "train_args": targs, "last": record,
               "seconds": round(time.time() - t0, 1)}
    room = MAX_FILES - 3  # log.jsonl, summary.json and manifest.json come back too
    for name in ("ema", "last", "best"):  # the average first: usually the best of them
        src = a.work / f"{name}.pt"
        if not src.exists():
            continue
        compact = compact_checkpoint(src, a.work / f"{name}-fp16.pt")
        parts = -(-compact.stat().st_size // PART_BYTES)
        if parts > room:
            summary[f"{name}_left_out"] = f"{parts} parts, room for {room} more files"
            continue
        summary[f"{name}_parts"] = [p.name for p in split_file(compact, a.out)]
        room -= parts
    log = a.work / "log.jsonl"
    if log.exists():  # every 10th step and every validation: small
        lines = log.read_text().splitlines()
        keep = [ln for i, ln in enumerate(lines) if i % 5 == 0 or '"val"' in ln or i == len(lines) - 1]
        (a.out / "log.jsonl").write_text("\n".join(keep) + "\n")
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({"done": summary["seconds"], "step": record.get("step"),
                      "rendered": record.get("rendered")}), flush=True)
    return summary


def join(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="training.device_session join")
    p.add_argument("folder", type=Path, help="the files a device session returned")
    p.add_argument("dest", type=Path, help="the checkpoint to write (e.g. out/gpu/last.pt)")
    p.add_argument("--which", default="last", choices=("ema", "last", "best"))
    a = p.parse_args(argv)
    try:
        path = join_parts(a.folder, f"{a.which}-fp16.pt", a.dest)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    expand_checkpoint(path)
    print(path)
    return path


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "join"):
        raise SystemExit("usage: python -m training.device_session run|join ... (see --help)")
    (run if argv[0] == "run" else join)(argv[1:])


if __name__ == "__main__":
    main()
