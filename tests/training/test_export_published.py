# SPDX-License-Identifier: GPL-3.0-or-later
"""The exporter of the published checkpoint (training/export_published.py), at small scale.

The same code path as for the real `checkpoint.pt` (da3-giant): the package's `da3-small` config
with random weights and a deformation head, saved in the published layout, exported at 112 x 112,
checked by the add-on's contract checker, parity-checked against torch, and run through the
add-on's capture end to end (the canonical space has no bundled template, so the mesh comes from
a reference frame). Random weights make the predictions meaningless; shapes, value ranges,
contract compliance and the agreement with the package's own forward pass are what is checked.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("depth_anything_3", reason="installed by build.py setup (published.txt)")

from face_anything_addon.core.capture import Capture  # noqa: E402
from face_anything_addon.core.capture_run import (CaptureSettings, bundled_templates,  # noqa: E402
                                                  run_capture)
from face_anything_addon.core.contract import describe_model  # noqa: E402
from face_anything_addon.core.frames import Frame  # noqa: E402
from face_anything_addon.core.pipeline import PipelineSettings  # noqa: E402
from training import export_published  # noqa: E402
from training.published import (CANONICAL_SPACE, CheckpointError, ContractWrapper,  # noqa: E402
                                HeadSpec, gather_views, load_published,
                                make_random_checkpoint, rays_to_intrinsics, read_checkpoint,
                                reference_order)

RES = 112
WINDOW = 4
CONFIG = "da3-small"


def run_exporter(*args: str, sessions: list | None = None) -> tuple[int, str]:
    """The command line in this process; its exit status and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = export_published.main(["--config", CONFIG, "--threads", "1", *map(str, args)],
                                     sessions)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.set_num_threads(1)
    return tmp_path_factory.mktemp("published")


# The published head (DPT defaults: 256 features, 256-1024 channels) is larger than da3-small
# itself; at the widths of da3-small's own head the test runs in half the time, and the exporter
# reads the head's widths from the checkpoint, as it would for any variant of the release.
HEAD = HeadSpec(dim_in=768, features=64, out_channels=(48, 96, 192, 384))


@pytest.fixture(scope="module")
def checkpoint(folder):
    """Random da3-small + deformation head as the released file is laid out: {"model": sd},
    keys 'model.backbone...', 'model.deformation_head...'."""
    return make_random_checkpoint(folder / "checkpoint.pt", CONFIG, head=HEAD)


@pytest.fixture(scope="module")
def exported(folder, checkpoint):
    out, sessions = folder / "published.onnx", []
    code, log = run_exporter("--checkpoint", checkpoint, "--res", RES, "--window", WINDOW,
                             "-o", out, "--external-data", "yes", sessions=sessions)
    return out, code, log, sessions


@pytest.fixture(scope="module")
def session(exported):
    """The add-on's ONNX Runtime session of the export, as the exporter's parity check opened it
    (opening the graph takes seconds: once is enough)."""
    path, code, log, sessions = exported
    assert code == 0 and len(sessions) == 1, log
    assert sessions[0].description.path == path
    return sessions[0]


@pytest.fixture(scope="module")
def net(checkpoint):
    """The loaded network (with the camera decoder, for the camera-head comparison)."""
    network, _ = load_published(checkpoint, CONFIG, intrinsics="camera-head", log=lambda m: None)
    return network


def test_export_follows_the_contract_and_matches_torch(exported):
    path, code, log, _ = exported
    assert code == 0, log
    desc = describe_model(path)
    assert desc.contract == "1" and desc.patch_size == 14 and desc.input_size == RES
    assert desc.fixed_size == (RES, RES) and desc.input_type == "float32"
    assert desc.depth_units == "relative" and desc.canonical_space == CANONICAL_SPACE
    assert desc.max_window == WINDOW and desc.has_mask and desc.license == "CC-BY-NC-4.0"
    assert desc.external_files == (path.name + ".data",)
    assert tuple(desc.mean) == (0.485, 0.456, 0.406) and tuple(desc.std) == (0.229, 0.224, 0.225)
    # the parity check printed max and mean error of every output and passed
    for name in ("depth", "depth_conf", "canonical", "canonical_conf", "intrinsics", "mask"):
        line = next(x for x in log.splitlines() if x.split()[1:2] == [name])
        assert "max " in line and "mean " in line and "FAILED" not in line
    assert CANONICAL_SPACE not in bundled_templates()  # so the add-on meshes a reference frame


def test_windows_of_any_length_and_batches_run(session):
    """S is dynamic (traced with 2 frames; the exporter's parity input has 3), N too."""
    for n, s in ((1, 1), (2, 2), (1, WINDOW)):
        x = export_published.sample_images(n * s, RES, RES, seed=n + s).reshape(n, s, 3, RES, RES)
        got = session.run(x.numpy())
        assert got["depth"].shape == got["depth_conf"].shape == (n, s, RES, RES)
        assert got["canonical"].shape == (n, s, RES, RES, 3)
        assert got["intrinsics"].shape == (n, s, 3, 3) and got["mask"].shape == (n, s, RES, RES)
        assert all(np.isfinite(v).all() for v in got.values())
        assert got["depth"].min() > 0 and got["depth_conf"].min() >= 1
        assert got["canonical_conf"].min() >= 1
        assert 0 <= got["mask"].min() and got["mask"].max() <= 1 + 1e-6
        np.testing.assert_allclose(got["intrinsics"][..., 2, :], [[[0, 0, 1]] * s] * n)


def test_wrapper_reproduces_the_package_forward(net):
    """Depth, confidence and camera-head intrinsics equal DepthAnything3Net.forward's; the
    canonical map equals the deformation head applied as the published code applies it;
    S = 3 takes the package's reference-view path."""
    wrapper = ContractWrapper(net, RES, RES, intrinsics="camera-head").eval()
    for s in (1, 3):
        x = export_published.sample_images(s, RES, RES, seed=7)
        with torch.no_grad():
            ours = wrapper(x)
            ref = net(x)
            feats, _ = net.backbone(x, cam_token=None, export_feat_layers=[])
            deform = net.deformation_head(feats, RES, RES, patch_start_idx=0)
        expected = (ref.depth, ref.depth_conf, deform["deformation"], deform["deformation_conf"],
                    ref.intrinsics)
        for a, b in zip(ours, expected):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_reference_view_order_matches_the_package():
    from depth_anything_3.model.reference_view_selector import (reorder_by_reference,
                                                                restore_original_order,
                                                                select_reference_view)

    torch.manual_seed(3)
    chosen = set()
    for s in (1, 2, 3, 4, 5, 6):
        for _ in range(4):
            x = torch.randn(2, s, 5, 8)
            forward, back = reference_order(x, "saddle_balanced")
            reordered = gather_views(x, forward)
            if s >= 3:  # the package reorders from 3 frames on
                ref = select_reference_view(x, "saddle_balanced")
                chosen.update(ref.tolist())
                assert torch.equal(reordered, reorder_by_reference(x, ref))
                assert torch.equal(gather_views(reordered, back),
                                   restore_original_order(reordered, ref))
            else:
                assert torch.equal(forward, torch.arange(s).expand(2, -1))
            assert torch.equal(gather_views(reordered, back), x)
    assert chosen - {0}  # reordering did happen


def test_intrinsics_from_rays_match_the_package():
    from depth_anything_3.utils.ray_utils import get_extrinsic_from_camray

    h, w, height, width = 18, 24, 336, 448
    for (fx, fy, cx, cy), angles in (((400.0, 420.0, 230.0, 160.0), (0, 0, 0)),
                                     ((500.0, 500.0, 224.0, 168.0), (0.1, 0.2, 0.05))):
        u = (torch.arange(w) + 0.5) * width / w
        v = (torch.arange(h) + 0.5) * height / h
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        d = torch.stack([(uu - cx) / fx, (vv - cy) / fy, torch.ones_like(uu)], -1)
        d = d @ rotation(*angles).T
        ray = torch.cat([d, torch.zeros_like(d)], -1)[None, None]
        conf = 1 + torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(0))
        _, focal, pp = get_extrinsic_from_camray(ray, conf.clone(), h, w)
        expected = [focal[0, 0, 0] * width / 2, focal[0, 0, 1] * height / 2,
                    pp[0, 0, 0] * width / 2, pp[0, 0, 1] * height / 2]
        k = rays_to_intrinsics(ray, conf, height, width)[0, 0]
        got = [k[0, 0], k[1, 1], k[0, 2], k[1, 2]]
        np.testing.assert_allclose([float(g) for g in got], [float(e) for e in expected],
                                   rtol=1e-3)
        assert abs(float(k[0, 0]) - fx) < 1  # the focal length is the camera's


def rotation(a: float, b: float, c: float) -> torch.Tensor:
    ca, sa, cb, sb, cc, sc = (math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c),
                              math.sin(c))
    rx = torch.tensor([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = torch.tensor([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = torch.tensor([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_capture_end_to_end_meshes_a_reference_frame(exported, session, monkeypatch):
    """Footage -> Capture through run_capture (contract check, pipeline with automatic face
    region, reference-frame grid template, solve), on the session opened above."""
    from face_anything_addon.core import capture_run

    monkeypatch.setattr(capture_run, "open_session", lambda *args, **kw: session)
    path = exported[0]
    yy, xx = np.mgrid[0:160, 0:160] / 160.0
    image = np.stack([0.5 + 0.4 * np.sin(3 * xx + 1), 0.5 + 0.4 * np.cos(2 * yy),
                      0.5 + 0.3 * np.sin(2 * (xx + yy))], -1).astype(np.float32)
    frames = [Frame(i + 1, image) for i in range(3)]
    settings = CaptureSettings(pipeline=PipelineSettings(face_region="auto"), provider="CPU",
                               cpu_threads=1, grid_vertices=300)
    cap = run_capture(frames, footage_name="synthetic", footage_size=(160, 160), fps=25,
                      frame_count=3, model_path=path, settings=settings)
    assert isinstance(cap, Capture) and cap.frame_count == 3
    assert cap.template_name == "reference frame 1" and len(cap.rest_vertices) > 50
    assert np.isfinite(cap.positions).all() and cap.visibility.any()


def test_bare_state_dict_loads_the_same_weights(folder, checkpoint, net):
    state = torch.load(checkpoint, weights_only=True)["model"]
    bare = folder / "bare.pt"
    torch.save(state, bare)
    lines = []
    loaded, report = load_published(bare, CONFIG, intrinsics="camera-head", log=lines.append)
    assert report.source == "bare state dict" and report.prefix == "model."
    assert not report.missing and not report.unexpected
    key = "deformation_head.scratch.output_conv2.2.weight"
    assert torch.equal(loaded.state_dict()[key], net.state_dict()[key])
    bare.unlink()


def test_missing_deformation_head_fails_clearly(folder, checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    state["model"] = {k: v for k, v in state["model"].items() if "deformation_head" not in k}
    plain = folder / "plain_da3.pt"
    torch.save(state, plain)
    code, log = run_exporter("--checkpoint", plain, "--res", RES, "-o", folder / "no.onnx")
    assert code == 2
    assert "no (or an incomplete) deformation head" in log
    assert "missing: " in log and "model.deformation_head." in log  # the report names them
    assert not (folder / "no.onnx").exists()
    plain.unlink()


class Payload:
    """Unpickling this would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickled_code_is_refused(folder):
    marker = folder / "pwned"
    evil = folder / "evil.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "extra": Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(evil)
    assert not marker.exists()
    # training scripts often save their arguments: refused too, unless the user lets that class in
    odd = folder / "with_args.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "args": argparse.Namespace(lr=1e-4)}, odd)
    with pytest.raises(CheckpointError, match="argparse.Namespace.*--allow-global"):
        read_checkpoint(odd)
    state, source = read_checkpoint(odd, allow_globals=("argparse.Namespace",))
    assert list(state) == ["x"] and source == "dict with a 'model' entry"
    code, log = run_exporter("--checkpoint", evil, "-o", folder / "evil.onnx")
    assert code == 2 and "refused" in log and not marker.exists()


def test_unexpected_keys_are_reported(folder, checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    state["model"]["model.extra_branch.weight"] = torch.zeros(3)
    state["model"]["model.gs_head.scratch.output_conv2.0.weight"] = torch.zeros(2)
    state["model"]["optimizer_step"] = torch.tensor(5)
    odd = folder / "extra_keys.pt"
    torch.save(state, odd)
    lines = []
    _, report = load_published(odd, CONFIG, log=lines.append)
    assert report.unexpected == ["model.extra_branch.weight", "optimizer_step"]
    assert report.ignored["gs_head"] == 1 and not report.missing
    text = "\n".join(lines)
    assert "unexpected: 2 keys" in text and "model.extra_branch.weight" in text
    assert "gs_head" in text
    odd.unlink()


def test_head_spec_is_read_from_the_tensors(net):
    state = {k: v for k, v in net.state_dict().items() if k.startswith("deformation_head.")}
    assert HeadSpec.from_state_dict(state, HeadSpec(768)) == HEAD
    assert HeadSpec.from_state_dict({}, HeadSpec(768)) == HeadSpec(768)
    published = HeadSpec(768)  # the release's construction: DPT defaults
    state = {f"deformation_head.{k}": v for k, v in published.build().state_dict().items()}
    assert HeadSpec.from_state_dict(state, HEAD) == published


def test_build_py_runs_the_exporter_in_the_main_environment(monkeypatch):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "build_script", Path(__file__).resolve().parents[2] / "build.py")
    build = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "build_script", build)  # dataclasses look themselves up
    spec.loader.exec_module(build)
    calls = []
    monkeypatch.setattr(build, "setup_env", lambda env: calls.append(env.name) or "PY")
    monkeypatch.setattr(build, "run", lambda cmd, **kw: calls.append(cmd) or
                        type("Done", (), {"returncode": 0})())
    assert build.main(["export-published", "--checkpoint", "c.pt", "-o", "m.onnx", "--fp16",
                       "--window", "8"]) == 0
    assert calls == [build.ENVIRONMENTS[0].name,
                     ["PY", "-m", "training.export_published", "--checkpoint", "c.pt", "-o",
                      "m.onnx", "--fp16", "--window", "8"]]
    assert build.ENVIRONMENTS[0].no_deps.name == "published.txt"
