# SPDX-License-Identifier: GPL-3.0-or-later
"""The network, its losses, training loop (loss falls, resume) and evaluation metrics, on the tiny
test config and the procedural stand-in data (fast: CPU, a few seconds each)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from standin_faces import standin_source  # noqa: E402

from training.evaluate import (  # noqa: E402
    BlurredTruth, ResolutionFloor, depth_metrics, evaluate, masked_blur, relief_error, resize,
    resize_from_mask)
from training.losses import LossWeights, face_losses, shape_loss, soft_iou_loss  # noqa: E402
from training.network import FaceAnythingNet, get_config  # noqa: E402
from training.train import (  # noqa: E402
    collate, load_model, normalise, pack, parse_args, take, train)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return FaceAnythingNet(get_config("test-tiny")).eval()


def test_outputs_follow_the_contract_layout(tiny):
    with torch.no_grad():
        out = tiny(torch.randn(2, 3, 3, 42, 70))
    assert out["depth"].shape == out["depth_conf"].shape == out["mask"].shape == (2, 3, 42, 70)
    assert out["canonical"].shape == (2, 3, 42, 70, 3)
    assert out["intrinsics"].shape == (2, 3, 3, 3)
    assert (out["depth"] > 0).all() and (out["depth_conf"] >= 1).all()
    assert (out["canonical_conf"] >= 1).all() and ((out["mask"] >= 0) & (out["mask"] <= 1)).all()
    k = out["intrinsics"][0, 0]
    assert k[0, 0] == k[1, 1] and k[2, 2] == 1 and k[0, 1] == 0
    assert float(k[0, 2]) == pytest.approx(35.0, abs=1e-4)  # untrained: the image centre


def test_global_blocks_share_information_across_the_window(tiny):
    x = torch.randn(1, 2, 3, 28, 28)
    y = x.clone()
    y[:, 1] = torch.randn(3, 28, 28)
    with torch.no_grad():
        a, b = tiny(x)["depth"][0, 0], tiny(y)["depth"][0, 0]
        single = tiny(x[:, :1])["depth"][0, 0]
    assert not torch.allclose(a, b)  # frame 0 sees frame 1
    assert not torch.allclose(a, single)


def test_losses_are_small_for_the_truth_and_large_for_noise():
    batch = collate([take(next(standin_source("train", 28, 2, 0)))], single=False)
    perfect = {"depth": batch["depth"].clamp_min(1e-3), "depth_conf": torch.ones_like(batch["depth"]),
               "canonical": batch["canonical"], "canonical_conf": torch.ones_like(batch["depth"]),
               "intrinsics": batch["intrinsics"], "mask_logit": (batch["mask"] - 0.5) * 40}
    noisy = dict(perfect, canonical=perfect["canonical"] + 0.1, depth=perfect["depth"] * 1.2)
    good, bad = face_losses(perfect, batch), face_losses(noisy, batch)
    assert float(good["total"]) < 1e-3
    # |0.1 * (1, 1, 1)| / 0.5 and log(1.2) / 0.2, both at confidence 1
    assert float(bad["canonical"]) == pytest.approx(0.1 * 3 ** 0.5 / 0.5, rel=1e-3)
    assert float(bad["depth"]) == pytest.approx(np.log(1.2) / 0.2, rel=1e-3)
    assert float(bad["depth_relief"]) < 1e-4  # a pure scale keeps the face's shape
    assert float(bad["depth_shape"]) < 1e-4


def test_shape_loss_scores_the_face_s_shape_whatever_its_scale_shift_or_size():
    rng = np.random.default_rng(0)
    true = torch.tensor(rng.normal(size=(2, 3, 20, 20)), dtype=torch.float32)
    m = torch.zeros(2, 3, 20, 20)
    m[..., 4:16, 4:16] = 1
    m[1, 2] = 0
    m[1, 2, :3, :3] = 1  # 9 pixels: too few to count
    assert float(shape_loss(true, true, m)) < 1e-5
    # any positive or negative scale and any shift of the truth is a perfect shape
    assert float(shape_loss(-0.3 * true + 5.0, true, m)) < 1e-5
    # a frame's score does not depend on how deep its face is: the truth x 0.01 scores alike
    noisy = true + 0.5 * torch.tensor(rng.normal(size=true.shape), dtype=torch.float32)
    assert float(shape_loss(noisy * 0.01, true * 0.01, m)) == pytest.approx(
        float(shape_loss(noisy, true, m)), rel=1e-4)
    flat = float(shape_loss(torch.zeros_like(true), true, m))
    assert 0.7 < flat <= 1.0  # mean |x| / std of a normal: about 0.8
    # outside the mask nothing counts
    outside = true + 100 * (1 - m)
    assert float(shape_loss(outside, true, m)) < 1e-5
    # with no frame big enough it is 0, and it has a gradient that improves the shape
    assert float(shape_loss(noisy, true, torch.zeros_like(m))) == 0.0
    x = noisy.clone().requires_grad_(True)
    before = shape_loss(x, true, m)
    before.backward()
    with torch.no_grad():
        after = shape_loss(x - 0.5 * x.grad / x.grad.abs().max(), true, m)
    assert float(after) < float(before.detach())


def test_soft_iou_loss_counts_a_small_face_s_outline_like_a_large_one_s():
    true = torch.zeros(2, 40, 40)
    true[0, 5:35, 5:35] = 1  # 900 pixels
    true[1, 18:22, 18:22] = 1  # 16 pixels
    sure = (true - 0.5) * 60  # logits: the truth, confidently
    assert float(soft_iou_loss(sure, true)) < 1e-3
    # an empty truth predicted empty scores 0, predicted full scores nearly 1
    empty = torch.zeros(1, 40, 40)
    assert float(soft_iou_loss(torch.full_like(empty, -30.0), empty)) < 1e-6
    assert float(soft_iou_loss(torch.full_like(empty, 30.0), empty)) > 0.99
    # ... unless faceless frames are left out (empty_weight 0): then only the face frames count
    both = torch.cat([true[:1], empty])
    wrong_on_empty = torch.cat([sure[:1], torch.full_like(empty, 30.0)])
    assert float(soft_iou_loss(wrong_on_empty, both)) == pytest.approx(0.5, abs=1e-2)
    assert float(soft_iou_loss(wrong_on_empty, both, empty_weight=0.0)) < 1e-3
    assert float(soft_iou_loss(torch.full_like(empty, 30.0), empty, empty_weight=0.0)) == 0.0
    # both faces grown by a one-pixel ring: the small face loses far more IoU, as the metric does
    grown = torch.nn.functional.max_pool2d(true[:, None], 3, 1, 1)[:, 0]
    ring = soft_iou_loss((grown - 0.5) * 60, true, smooth=0.0)
    large = float(soft_iou_loss((grown[:1] - 0.5) * 60, true[:1], smooth=0.0))
    small = float(soft_iou_loss((grown[1:] - 0.5) * 60, true[1:], smooth=0.0))
    assert large == pytest.approx(1 - 900 / 1024, abs=1e-3)
    assert small == pytest.approx(1 - 16 / 36, abs=1e-3)
    assert float(ring) == pytest.approx((large + small) / 2, abs=1e-4)
    # face_losses carries it, weighted only when asked for
    batch = collate([take(next(standin_source("train", 28, 2, 0)))], single=False)
    out = {"depth": batch["depth"].clamp_min(1e-3), "depth_conf": torch.ones_like(batch["depth"]),
           "canonical": batch["canonical"], "canonical_conf": torch.ones_like(batch["depth"]),
           "intrinsics": batch["intrinsics"], "mask_logit": torch.zeros_like(batch["depth"])}
    off, on = face_losses(out, batch), face_losses(out, batch, LossWeights(mask_iou=2.0))
    assert float(off["mask_iou"]) > 0.1
    assert float(on["total"] - off["total"]) == pytest.approx(2.0 * float(off["mask_iou"]), rel=1e-4)
    # and hands it the faceless frames' weight: a window whose second frame has no face
    batch["mask"][:, 1] = 0
    out["mask_logit"] = torch.where(batch["mask"] > 0.5, 30.0, -30.0)
    out["mask_logit"][:, 1] = 30.0  # a face where there is none
    counted = float(face_losses(out, batch)["mask_iou"])
    skipped = float(face_losses(out, batch, LossWeights(mask_iou_empty=0.0))["mask_iou"])
    assert counted == pytest.approx(0.5, abs=0.02) and skipped < 1e-3


def _args(tmp_path, steps, *extra):
    return parse_args(["--config", "test-tiny", "--size", "28", "--window", "2", "--batch", "2",
                       "--steps", str(steps), "--pool", "2", "--fresh", "0", "--val-windows", "2",
                       "--val-every", "1000", "--ckpt-every", "5", "--warmup", "2", "--lr", "3e-3",
                       "--out", str(tmp_path), *extra])


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(tmp_path):
    torch.manual_seed(0)
    model = FaceAnythingNet(get_config("test-tiny"))
    batch = collate([take(next(standin_source("train", 28, 2, 0))) for _ in range(2)], False)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        terms = face_losses(model(normalise(batch["images"], model.cfg)), batch)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        losses.append(float(terms["total"]))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])


def test_training_checkpoints_and_resumes(tmp_path):
    train(_args(tmp_path, 5), standin_source)
    first, ckpt = load_model(tmp_path / "last.pt")
    assert ckpt["step"] == 5 and (tmp_path / "best.pt").exists()
    record = train(_args(tmp_path, 8, "--resume"), standin_source)
    assert record["step"] == 8
    second, ckpt = load_model(tmp_path / "last.pt")
    assert ckpt["step"] == 8
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                      second.state_dict().values()))
    assert "optimizer" in ckpt and ckpt["config"]["width"] == 32


def test_init_starts_from_another_runs_weights_with_a_fresh_schedule(tmp_path):
    train(_args(tmp_path / "a", 5), standin_source)
    start, _ = load_model(tmp_path / "a" / "best.pt")
    record = train(_args(tmp_path / "b", 1, "--init", str(tmp_path / "a" / "best.pt")),
                   standin_source)
    assert record["step"] == 1  # counted from zero: a new run, not a resume
    after, _ = load_model(tmp_path / "b" / "last.pt")
    fresh = FaceAnythingNet(get_config("test-tiny")).state_dict()
    # one small step away from the initial weights, far from a fresh random network
    gap_start = sum(float((a - b).abs().sum()) for a, b in zip(start.state_dict().values(),
                                                               after.state_dict().values()))
    gap_fresh = sum(float((a - b).abs().sum()) for a, b in zip(fresh.values(),
                                                               after.state_dict().values()))
    assert gap_start < 0.5 * gap_fresh


def _failing_source(split, size, window, seed):
    """Standin windows, except that a source started with an even seed fails on its 2nd draw."""
    src = standin_source(split, size, window, seed)
    yield next(src)
    if seed % 2 == 0:
        raise ValueError("a bad draw")
    yield from src


def test_background_render_worker_survives_a_failing_sample():
    from training.train import BackgroundSource

    worker = BackgroundSource(_failing_source, "train", 28, 2, seed=0)
    try:
        got = []
        for _ in range(100):
            got += worker.poll(block=True)
            if len(got) >= 4:
                break
        assert len(got) >= 4 and worker.proc.is_alive()
    finally:
        worker.close()


def test_relief_error_of_a_plane_is_one_and_of_the_truth_zero():
    rng = np.random.default_rng(0)
    true = 0.5 + 0.03 * rng.standard_normal(500)
    assert relief_error(true * 1.1 + 0.2, true) == pytest.approx(0.0, abs=1e-9)
    assert relief_error(np.linspace(0, 1, 500) * 0 + 0.4 + 1e-9 * np.arange(500), true) == \
        pytest.approx(1.0, abs=0.02)


def test_spread_tells_a_face_too_deep_for_its_distance_where_relief_cannot():
    rng = np.random.default_rng(0)
    true = 0.5 + 0.03 * rng.standard_normal(500)
    scaled = depth_metrics(true * 3.0, true, metric=False)  # any scale: the same shape
    assert scaled["spread_log2"] == pytest.approx(0.0, abs=1e-9)
    deeper = depth_metrics(true * 1.5 - 0.25, true, metric=False)  # same median, spread x 1.5
    assert deeper["relief"] == pytest.approx(0.0, abs=1e-9)
    assert deeper["spread_log2"] == pytest.approx(np.log2(1.5), abs=0.01)
    assert deeper["absrel"] > 0.01
    flat = depth_metrics(np.full(500, 0.5), true, metric=False)  # no shape at all: the floor
    assert flat["spread_log2"] == -10.0


def test_evaluate_scores_a_perfect_predictor_as_perfect():
    windows = [{k: v.numpy() for k, v in next(standin_source("val", 42, 2, s)).items()}
               for s in range(2)]
    truth = iter(windows)

    def oracle(images):
        w = next(truth)
        return {"depth": np.where(w["mask"] > 0, w["depth"], 1.0), "canonical": w["canonical"],
                "canonical_conf": np.ones_like(w["depth"]) * 2, "mask": w["mask"]}

    r = evaluate(oracle, windows)
    assert r["relief"] < 1e-6 and r["canonical"] < 1e-6 and r["mask_iou"] == 1.0
    assert r["metric_absrel"] < 1e-6 and abs(r["spread_log2"]) < 1e-6
    assert "focal_log2" not in r  # the oracle gives no camera


def test_the_camera_is_scored_by_focal_ratio_and_principal_point_distance():
    windows = [{k: v.numpy() for k, v in next(standin_source("val", 42, 2, s)).items()}
               for s in range(2)]
    truth = iter(windows)

    def short_lens(images):  # half the focal length, principal point off by (3, 4) px
        w = next(truth)
        k = w["intrinsics"].copy()
        k[:, 0, 0] /= 2
        k[:, 1, 1] /= 2
        k[:, :2, 2] += (3.0, 4.0)
        return {"depth": w["depth"], "canonical": w["canonical"], "mask": w["mask"],
                "intrinsics": k}

    r = evaluate(short_lens, windows)
    assert r["focal_log2"] == pytest.approx(-1.0, abs=1e-6)
    assert r["principal_px"] == pytest.approx(5.0, abs=1e-5)


def test_mask_iou_and_relief_are_also_given_apart_for_small_and_large_faces():
    """A predictor that finds large faces perfectly and misses small ones (a true face under 2 %
    of the frame): 1 for the large, 0 for the small, their frame-weighted mean overall."""
    large = {k: v.numpy() for k, v in next(standin_source("val", 42, 2, 0)).items()}
    small = {k: v.copy() for k, v in large.items()}
    small["mask"] = np.zeros_like(large["mask"])
    small["mask"][:, 20:25, 20:25] = 1.0  # 25 of 1,764 pixels: 1.4 %
    assert large["mask"].mean() > 0.02
    windows = [large, small]
    truth = iter(windows)

    def finds_large_faces_only(images):
        w = next(truth)
        found = w["mask"] if w["mask"].mean() > 0.02 else np.zeros_like(w["mask"])
        return {"depth": w["depth"], "canonical": w["canonical"], "mask": found}

    r = evaluate(finds_large_faces_only, windows)
    assert r["mask_iou_large"] == 1.0 and r["mask_iou_small"] == 0.0
    assert r["mask_iou"] == pytest.approx(0.5)
    # relief the same way: exact depth on the large faces, a flat plane on the small ones
    truth = iter(windows)

    def flat_on_small_faces(images):
        w = next(truth)
        depth = w["depth"] if w["mask"].mean() > 0.02 else np.ones_like(w["depth"])
        return {"depth": depth, "canonical": w["canonical"], "mask": w["mask"]}

    r = evaluate(flat_on_small_faces, windows)
    assert r["relief_large"] == pytest.approx(0.0, abs=1e-6)
    assert r["relief_small"] == pytest.approx(1.0, abs=1e-6)
    assert r["relief"] == pytest.approx(0.5, abs=1e-6)


def test_upsampling_from_the_mask_keeps_the_silhouette_off_the_background():
    """A face (depth 0.5) on a far background (2.0) at 14 x 14, brought to 56 x 56: from the
    mask, face pixels stay 0.5 up to the silhouette; plain bilinear blends them towards 2."""
    mask = np.zeros((1, 1, 14, 14), np.float32)
    mask[..., 3:11, 4:10] = 1.0
    depth = np.where(mask > 0, 0.5, 2.0).astype(np.float32)
    up = resize_from_mask(depth, mask, (56, 56))[0, 0]
    plain = resize(depth, (56, 56))[0, 0]
    face = resize(mask, (56, 56))[0, 0] > 0.5
    assert np.abs(up[face] - 0.5).max() < 1e-5
    assert plain[face].max() > 0.6


def test_the_resolution_floor_is_perfect_at_full_size_and_not_below():
    windows = [{k: v.numpy() for k, v in next(standin_source("val", 56, 2, s)).items()}
               for s in range(2)]
    full = evaluate(ResolutionFloor(56), windows)
    assert full["relief"] < 1e-4 and full["canonical"] < 1e-4 and full["mask_iou"] == 1.0
    low = evaluate(ResolutionFloor(14), windows)
    assert 0.01 < low["relief"] < 1 and low["canonical"] > full["canonical"]


def test_the_blurred_truth_loses_shape_as_the_blur_grows():
    windows = [{k: v.numpy() for k, v in next(standin_source("val", 56, 2, s)).items()}
               for s in range(2)]
    sharp = evaluate(BlurredTruth(0.3), windows)
    assert sharp["relief"] < 0.05 and sharp["mask_iou"] == 1.0
    reliefs = [evaluate(BlurredTruth(s), windows)["relief"] for s in (1, 3, 8)]
    assert sharp["relief"] < reliefs[0] < reliefs[1] < reliefs[2] < 1
    # inside the mask only: a constant face in front of a far background stays constant
    m = np.zeros((1, 1, 20, 20), np.float32)
    m[..., 5:15, 5:15] = 1
    x = np.where(m > 0, 0.5, 3.0).astype(np.float32)
    assert np.abs(masked_blur(x, m, 4.0)[m > 0] - 0.5).max() < 1e-6


def test_replay_trains_on_an_earlier_runs_windows_without_rendering(tmp_path):
    """--replay DIR --workers 0 --fresh 0: the pool is filled from saved windows and no training
    window is rendered; --loss overrides a weight and a bad term is refused by name."""
    saved = tmp_path / "old" / "pool"
    saved.mkdir(parents=True)
    src = standin_source("train", 28, 2, 3)
    for i in range(3):
        np.savez(saved / f"{i:06d}.npz", **pack(next(src)))

    def no_rendering(split, size, window, seed):
        if split == "val":
            return standin_source(split, size, window, seed)

        def fail():
            raise AssertionError("a training window was rendered")
            yield
        return fail()

    record = train(_args(tmp_path / "new", 3, "--replay", str(saved), "--min-pool", "2",
                         "--loss", "depth=0.05", "--loss", "depth_relief=1.0"), no_rendering)
    assert record["step"] == 3 and record["rendered"] == 0
    assert not (tmp_path / "new" / "pool").exists()
    # the overridden weights are the ones the step's total was made with
    w = LossWeights(depth=0.05, depth_relief=1.0)
    total = sum(getattr(w, k) * record[k] for k in ("depth", "depth_relief", "depth_grad",
                                                    "depth_shape",
                                                    "canonical", "canonical_grad", "mask",
                                                    "intrinsics", "consistency"))
    assert record["total"] == pytest.approx(total, abs=2e-3)
    with pytest.raises(SystemExit, match="no loss weight 'relief'.*depth_relief"):
        parse_args(["--loss", "relief=1"])
    with pytest.raises(SystemExit, match="not a number"):
        parse_args(["--loss", "depth=high"])
