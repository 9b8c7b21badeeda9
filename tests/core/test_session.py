# SPDX-License-Identifier: GPL-3.0-or-later
"""Sessions: what really runs, why CUDA does not, ONNX Runtime kept quiet, fp16 and I/O binding."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto

from face_anything_addon.core import session as fs
from face_anything_addon.core.contract import describe_model
from tests.contract_models import make_model

HAS_CUDA = fs.CUDA in ort.get_available_providers() and not fs.missing_cuda_libraries()


@pytest.fixture
def model(tmp_path):
    return describe_model(make_model(tmp_path / "m.onnx", mask=True))


def images(n=1, s=2, h=28, w=42, seed=0):
    return np.random.default_rng(seed).normal(size=(n, s, 3, h, w)).astype(np.float32)


def test_cpu_session_runs_and_reports_cpu(model):
    ms = fs.open_session(model, "CPU", cpu_threads=1)
    assert ms.providers == [fs.CPU] and ms.note == ""
    options = ms.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    x = images()
    out = ms.run(x)
    assert set(out) == {"depth", "depth_conf", "canonical", "canonical_conf", "intrinsics", "mask"}
    mean = x.mean(axis=2)
    np.testing.assert_allclose(out["depth"], (1 + mean) ** 2 + 0.5, rtol=1e-5)
    np.testing.assert_allclose(out["canonical"], x.transpose(0, 1, 3, 4, 2))
    assert out["intrinsics"].shape == (1, 2, 3, 3)


@pytest.mark.skipif(HAS_CUDA, reason="this machine runs CUDA; the fallback cannot be observed")
def test_auto_falls_back_to_cpu_and_says_why_quietly(model, capfd):
    ms = fs.open_session(model, "AUTO")
    assert ms.providers == [fs.CPU]
    assert ms.note.startswith("CUDA is not usable: ") and "not found" in ms.note
    assert "install the NVIDIA driver, CUDA 13 and cuDNN 9" in ms.note
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""  # ONNX Runtime's noise stays off the console
    assert "CUDA" in ms.native_log or ms.native_log == ""


@pytest.mark.skipif(HAS_CUDA, reason="this machine runs CUDA")
def test_cuda_only_fails_with_an_actionable_message(model, capfd):
    with pytest.raises(fs.RuntimeUnavailable, match="CUDA is not usable: .* not found; install"):
        fs.open_session(model, "CUDA")
    assert capfd.readouterr().err == ""


def test_missing_cuda_libraries_are_named(monkeypatch):
    monkeypatch.setitem(fs.CUDA_LIBRARIES, "linux", ("libc.so.6", "libdoes_not_exist.so.13"))
    monkeypatch.setattr(fs.sys, "platform", "linux")
    assert fs.missing_cuda_libraries() == ["libdoes_not_exist.so.13"]


def test_provider_order():
    both = [fs.CUDA, fs.CPU]
    assert fs.provider_order("AUTO", both) == [fs.CUDA, fs.CPU]
    assert fs.provider_order("AUTO", [fs.COREML, fs.CPU]) == [fs.COREML, fs.CPU]
    assert fs.provider_order("AUTO", [fs.CPU]) == [fs.CPU]
    assert fs.provider_order("CPU", both) == [fs.CPU]
    assert fs.provider_order("CUDA", both) == [fs.CUDA]
    with pytest.raises(ValueError, match="one of"):
        fs.provider_order("GPU", both)


def test_io_binding_gives_the_same_outputs(model):
    plain = fs.open_session(model, "CPU")
    bound = fs.open_session(model, "CPU")
    bound.use_io_binding = True
    x = images(seed=3)
    a, b = plain.run(x), bound.run(x)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_fp16_model_takes_half_precision_input(tmp_path):
    d = describe_model(make_model(tmp_path / "h.onnx", input_type=TensorProto.FLOAT16,
                                  height=28, width=28))
    ms = fs.open_session(d, "CPU")  # warm-up at the fixed size already ran
    out = ms.run(images(w=28))
    assert out["depth"].dtype == np.float32 and out["depth"].shape == (1, 2, 28, 28)


def test_unloadable_model_is_reported(tmp_path, model):
    path = make_model(tmp_path / "bad.onnx")
    d = describe_model(path)
    path.write_bytes(path.read_bytes().replace(b"Transpose", b"Transpoze"))  # unknown operator
    with pytest.raises(fs.RuntimeUnavailable, match="ONNX Runtime could not load 'bad.onnx'"):
        fs.open_session(d, "CPU")


def test_expected_provider_for_the_preferences_line():
    runs, problem = fs.expected_provider("CPU")
    assert (runs, problem) == ("CPU", "")
    runs, problem = fs.expected_provider("AUTO")
    if HAS_CUDA:
        assert (runs, problem) == ("CUDA", "")
    else:
        assert runs == "CPU" and problem.startswith("CUDA is not usable: ")
        assert fs.expected_provider("CUDA") == ("nothing", problem)
