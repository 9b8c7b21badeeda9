# SPDX-License-Identifier: GPL-3.0-or-later
"""The capacity check (training.fit_check): fitting a few fixed windows, scored on them."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from standin_faces import standin_source  # noqa: E402

from training.fit_check import fit, main, window_scores  # noqa: E402
from training.losses import LossWeights  # noqa: E402
from training.network import FaceAnythingNet, get_config  # noqa: E402
from training.train import normalise, pack, save, take  # noqa: E402


def _windows(count=2, size=28):
    src = standin_source("val", size, 2, 0)
    return [take(next(src)) for _ in range(count)]


def test_the_truth_scores_perfectly_and_a_blind_network_does_not():
    windows = _windows()

    class Oracle(FaceAnythingNet):
        def forward(self, images):  # the truth of whichever window it is shown
            win = next(w for w in windows
                       if torch.equal(normalise(w["images"][None], self.cfg), images))
            return {k: win[k][None] for k in ("depth", "mask", "canonical")}

    torch.manual_seed(0)
    oracle = Oracle(get_config("test-tiny"))
    perfect = window_scores(oracle, windows)
    assert perfect["relief"] == pytest.approx(0.0, abs=1e-4)
    assert perfect["mask_iou"] == pytest.approx(1.0)
    assert perfect["canonical"] == pytest.approx(0.0, abs=1e-6)
    blind = window_scores(FaceAnythingNet(get_config("test-tiny")), windows)
    assert blind["relief"] > 0.3 and blind["mask_iou"] < 0.9 and blind["canonical"] > 0.1


def test_fitting_improves_the_scores_on_the_fitted_windows():
    torch.manual_seed(0)
    model = FaceAnythingNet(get_config("test-tiny"))
    records = fit(model, _windows(), lr=3e-3, weights=LossWeights(), steps=60, every=20)
    assert [r["step"] for r in records] == [0, 20, 40, 60]
    first, last = records[0], records[-1]
    assert last["canonical"] < 0.7 * first["canonical"]
    assert last["mask_iou"] > first["mask_iou"]
    assert model.training  # scoring left the model as it found it


def test_the_command_fits_a_checkpoint_on_saved_windows(tmp_path):
    torch.manual_seed(0)
    model = FaceAnythingNet(get_config("test-tiny"))
    args = argparse.Namespace(config="test-tiny", size=28)
    save(tmp_path / "m.pt", model, torch.optim.AdamW(model.parameters()), 0, args, 0.0)
    folder = tmp_path / "val"
    folder.mkdir()
    src = standin_source("val", 28, 2, 0)
    for i in range(3):
        np.savez(folder / f"{i:04d}.npz", **pack(next(src)))
    out = tmp_path / "fit.json"
    records = main([str(tmp_path / "m.pt"), "--windows", str(folder), "--count", "2",
                    "--steps", "4", "--every", "2", "--lr", "1e-3", "--out", str(out)])
    assert [r["step"] for r in records] == [0, 2, 4]
    assert json.loads(out.read_text())["records"] == records
    with pytest.raises(SystemExit, match="3 windows"):
        main([str(tmp_path / "m.pt"), "--windows", str(folder), "--count", "5", "--steps", "1"])
