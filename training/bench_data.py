# SPDX-License-Identifier: GPL-3.0-or-later
"""Throughput of the synthetic data engine: `python -m training.bench_data [--quick]`.

Measures samples per second at 256 x 256: one process with one torch thread (single frames and
8-frame clips), a DataLoader with one worker per CPU core, reading an offline cache, and (when a
CUDA device is present) batched rendering on the GPU. Writes bench/data_engine_results.json and
bench/DATA_ENGINE.md. Other processes on the machine slow the wall-clock figures down; the load
average is recorded, and the single-process figures are also given in CPU time per sample.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .data import CachedFaces, SyntheticFaces, single_thread, worker_init, write_cache

ROOT = Path(__file__).resolve().parent.parent
JSON_OUT = ROOT / "bench" / "data_engine_results.json"
MD_OUT = ROOT / "bench" / "DATA_ENGINE.md"
SIZE = 256


def _timed(fn, n: int) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"items": n, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "items_per_s": round(n / wall, 2), "cpu_ms_per_item": round(1000 * cpu / n, 1)}


def bench(quick: bool = False) -> dict:
    n = 6 if quick else 24
    res: dict = {"size": SIZE, "date": time.strftime("%Y-%m-%d %H:%M"),
                 "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "torch": torch.__version__, "load_before": os.getloadavg()}}
    single = SyntheticFaces("train", SIZE, window=1, seed=123, length=10_000)
    with single_thread(), torch.no_grad():
        single[0], single[1]  # warm up (head model, first calls)
        res["single_frame_1_thread"] = _timed(lambda i: single[100 + i], n)
        clips = SyntheticFaces("train", SIZE, window=8, seed=123, length=10_000)
        r = _timed(lambda i: clips[200 + i], max(n // 4, 2))
        r["frames_per_s"] = round(r["items_per_s"] * 8, 2)
        res["clip8_1_thread"] = r
    workers = os.cpu_count() or 1
    loader = DataLoader(SyntheticFaces("train", SIZE, window=1, seed=7, length=4 * n + 2 * workers),
                        batch_size=None, num_workers=workers, worker_init_fn=worker_init,
                        prefetch_factor=2, persistent_workers=False)
    it = iter(loader)
    for _ in range(2 * workers):  # start-up: workers load the head model
        next(it)
    t = time.perf_counter()
    count = 0
    for _ in it:
        count += 1
    wall = time.perf_counter() - t
    res[f"dataloader_{workers}_workers"] = {"items": count, "wall_s": round(wall, 3),
                                           "items_per_s": round(count / wall, 2)}
    with tempfile.TemporaryDirectory() as tmp, single_thread():
        write_cache(Path(tmp), "train", count=16 if quick else 64, size=SIZE, shard=16)
        cached = CachedFaces(Path(tmp))
        res["offline_cache_read"] = _timed(lambda i: cached[i], len(cached))
    if torch.cuda.is_available():
        gpu = SyntheticFaces("train", SIZE, window=1, seed=9, length=10_000, device="cuda")
        with torch.no_grad():
            gpu.batch(range(4))
            torch.cuda.synchronize()
            for bs in (8, 32):
                t = time.perf_counter()
                reps = 3
                for k in range(reps):
                    gpu.batch(range(1000 + k * bs, 1000 + (k + 1) * bs))
                torch.cuda.synchronize()
                wall = time.perf_counter() - t
                res[f"cuda_batch_{bs}"] = {"items": reps * bs, "wall_s": round(wall, 3),
                                           "items_per_s": round(reps * bs / wall, 2),
                                           "device": torch.cuda.get_device_name()}
    else:
        res["cuda"] = "not measured: no CUDA device on this machine"
    res["machine"]["load_after"] = os.getloadavg()
    return res


def write(res: dict) -> None:
    JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(json.dumps(res, indent=1) + "\n")
    m = res["machine"]
    s, c = res["single_frame_1_thread"], res["clip8_1_thread"]
    dl = next(v for k, v in res.items() if k.startswith("dataloader"))
    cache = res["offline_cache_read"]
    lines = [
        "# Synthetic data engine throughput",
        "",
        f"Recorded {res['date']} on {m['cpus']} CPU cores (x86_64), Python {m['python']}, "
        f"torch {m['torch']}; load average before / after: "
        f"{m['load_before'][0]:.1f} / {m['load_after'][0]:.1f} (other processes share the cores: "
        "wall-clock figures are lower bounds). Rerun: `.venv/bin/python -m training.bench_data`.",
        "",
        f"Samples of {res['size']} x {res['size']} pixels, all ground truth included (RGB, depth, "
        "canonical, mask, regions, intrinsics, every template vertex's position and visibility).",
        "",
        "| setting | samples / s | CPU per sample |",
        "| --- | --- | --- |",
        f"| one process, 1 thread, single frames | {s['items_per_s']} | "
        f"{s['cpu_ms_per_item']} ms |",
        f"| the same, CPU-time bound on all {m['cpus']} cores (no other load) | "
        f"{m['cpus'] * 1000 / s['cpu_ms_per_item']:.1f} | |",
        f"| one process, 1 thread, 8-frame clips | {c['frames_per_s']} frames "
        f"({c['items_per_s']} clips) "
        f"| {c['cpu_ms_per_item'] / 8:.1f} ms per frame |",
        f"| DataLoader, {m['cpus']} worker processes, single frames | {dl['items_per_s']} | |",
        f"| reading the offline cache (`CachedFaces`) | {cache['items_per_s']} | "
        f"{cache['cpu_ms_per_item']} ms |",
    ]
    cuda = [k for k in res if k.startswith("cuda_batch")]
    if cuda:
        for k in cuda:
            lines.append(f"| CUDA ({res[k]['device']}), batches of {k.split('_')[-1]} | "
                         f"{res[k]['items_per_s']} | |")
    else:
        lines.append("| CUDA | not measured (no GPU on this machine) | |")
    lines += [
        "",
        "One torch thread per process is fastest here: the renderer runs many small vectorised "
        "operations, for which torch's intra-op threads cost more than they give; use one "
        "DataLoader worker per core (`training.data.worker_init`).",
        "",
        "Feeding training: a CPU renderer at these rates keeps up with small networks on the "
        "CPU, not with a GPU trainer. For GPU training render on the GPU "
        "(`SyntheticFaces(..., device='cuda').batch(indices)`: one batched rasterisation for "
        "all frames) or fill an offline cache ahead of time (`python -m training.data --cache "
        "DIR --count N`) and read it with `CachedFaces`, which is far faster than rendering.",
    ]
    MD_OUT.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer samples (a smoke test)")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    res = bench(a.quick)
    print(json.dumps(res, indent=1))
    if not a.no_write:
        write(res)


if __name__ == "__main__":
    main()
