# SPDX-License-Identifier: GPL-3.0-or-later
"""ONNX Runtime sessions for contract models: provider choice, honest reporting, quiet stderr.

`open_session(description, preference)` returns a `ModelSession` whose `providers` say what really
runs (`InferenceSession.get_providers()`), and whose `note` says, in one sentence a user can act on,
why a wanted GPU provider is not used.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import sys
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

from .contract import REQUIRED_OUTPUTS, ModelDescription

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
COREML = "CoreMLExecutionProvider"
DML = "DmlExecutionProvider"
PREFERENCES = ("AUTO", "CUDA", "CPU")

# Libraries the CUDA provider of onnxruntime-gpu 1.31 (CUDA 13, cuDNN 9) loads, by platform.
CUDA_LIBRARIES = {
    "linux": ("libcuda.so.1", "libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13",
              "libcurand.so.10", "libcufft.so.12", "libcudnn.so.9"),
    "win32": ("nvcuda.dll", "cudart64_13.dll", "cublasLt64_13.dll", "cublas64_13.dll",
              "curand64_10.dll", "cufft64_12.dll", "cudnn64_9.dll"),
}
CUDA_ADVICE = ("install the NVIDIA driver, CUDA 13 and cuDNN 9 (or the pip packages "
               "onnxruntime-gpu[cuda,cudnn] pulls in) and restart Blender")


class RuntimeUnavailable(Exception):
    """The requested execution provider cannot run here; the message says why and what to do."""


_console_lock = threading.Lock()


@contextlib.contextmanager
def quiet_console():
    """Keep ONNX Runtime's messages (native log lines on fd 2, `preload_dlls` prints on fd 1) off
    the user's console. Yields a list that receives the captured text."""
    captured: list[str] = []
    python_text = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    with _console_lock, tempfile.TemporaryFile(mode="w+b") as sink:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        for fd in saved:
            os.dup2(sink.fileno(), fd)
        try:
            with contextlib.redirect_stdout(python_text), contextlib.redirect_stderr(python_text):
                yield captured
        finally:
            for fd, original in saved.items():
                os.dup2(original, fd)
                os.close(original)
            sink.seek(0)
            captured.append(python_text.getvalue() + sink.read().decode("utf-8", "replace"))


def missing_cuda_libraries() -> list[str]:
    """CUDA/cuDNN libraries the dynamic loader cannot find in this process."""
    missing = []
    for name in CUDA_LIBRARIES.get(sys.platform, ()):
        try:
            ctypes.CDLL(name)
        except OSError:
            missing.append(name)
    return missing


def cuda_unusable_reason(ort) -> str:
    """One sentence: why CUDA does not run, and what to do."""
    if CUDA not in ort.get_available_providers():
        return (f"this ONNX Runtime build ({ort.__version__}) has no CUDA provider; on Linux and "
                f"Windows the extension bundles onnxruntime-gpu, so reinstall it for this platform")
    missing = missing_cuda_libraries()
    if missing:
        return f"CUDA is not usable: {', '.join(missing)} not found; {CUDA_ADVICE}"
    return f"CUDA is not usable (its provider failed to start; no GPU?); {CUDA_ADVICE}"


@functools.lru_cache(maxsize=1)
def _cuda_problem() -> str:
    """Why CUDA would not run here ("" when its libraries load); probed once per process."""
    import onnxruntime as ort

    return cuda_unusable_reason(ort) if (CUDA not in ort.get_available_providers()
                                         or missing_cuda_libraries()) else ""


def expected_provider(preference: str) -> tuple[str, str]:
    """(what would run now for this preference, why a GPU would not): for the preferences' status
    line, without loading a model. The session's own report (`ModelSession.providers`) is the
    final word."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "nothing", "ONNX Runtime is not importable: reinstall the extension"
    wanted = provider_order(preference, ort.get_available_providers())
    if CUDA in wanted:
        problem = _cuda_problem()
        if not problem:
            return "CUDA", ""
        wanted.remove(CUDA)
        if not wanted:
            return "nothing", problem
        return wanted[0].replace("ExecutionProvider", ""), problem
    return wanted[0].replace("ExecutionProvider", ""), ""


def provider_order(preference: str, available: list[str]) -> list[str]:
    if preference not in PREFERENCES:
        raise ValueError(f"execution provider preference must be one of {PREFERENCES}")
    if preference == "CPU":
        return [CPU]
    if preference == "CUDA":
        return [CUDA]
    wanted = [p for p in (CUDA, DML, COREML) if p in available]
    return wanted + [CPU]


@dataclass
class ModelSession:
    """A contract model in an ONNX Runtime session."""

    description: ModelDescription
    session: object  # onnxruntime.InferenceSession
    providers: list[str]
    note: str = ""  # why a wanted accelerator is not used ("" when none was missed)
    use_io_binding: bool = False
    native_log: str = ""  # what ONNX Runtime printed while the session was made (for bug reports)

    @property
    def input_dtype(self):
        return np.float16 if self.description.input_type == "float16" else np.float32

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """images: [N, S, 3, H, W], already normalised. Returns the contract's outputs as float32."""
        images = np.ascontiguousarray(images, dtype=self.input_dtype)
        names = [n for n in self.output_names if n in REQUIRED_OUTPUTS or n == "mask"]
        if self.use_io_binding:
            binding = self.session.io_binding()
            binding.bind_cpu_input("images", images)
            for name in names:
                binding.bind_output(name, "cpu")
            self.session.run_with_iobinding(binding)
            values = binding.copy_outputs_to_cpu()
        else:
            values = self.session.run(names, {"images": images})
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, values)}

    def warm_up(self, window: int = 1) -> None:
        h, w = self.description.fixed_size or (self.description.input_size,) * 2
        self.run(np.zeros((1, window, 3, h, w), self.input_dtype))


def open_session(description: ModelDescription, preference: str = "AUTO", cpu_threads: int = 0,
                 warm_up: bool = True) -> ModelSession:
    """An ONNX Runtime session for a checked model, on the best provider `preference` allows."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = provider_order(preference, available)
    log: list[str] = []
    if CUDA in wanted and hasattr(ort, "preload_dlls"):
        with quiet_console() as preload_log, contextlib.suppress(Exception):
            ort.preload_dlls()  # CUDA/cuDNN from NVIDIA's pip packages, when installed
        log += preload_log
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = int(cpu_threads)
    # Idle worker threads must not spin: they would steal the CPU from preprocessing between
    # runs (measured: resize 48 -> 27 ms per 1080p frame) and from Blender's interface.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with quiet_console() as session_log:
        try:
            session = ort.InferenceSession(str(description.path), sess_options=options,
                                           providers=wanted)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises several unrelated types
            if preference == "CUDA":
                raise RuntimeUnavailable(cuda_unusable_reason(ort)) from exc
            raise RuntimeUnavailable(
                f"ONNX Runtime could not load '{description.path.name}': "
                f"{str(exc).splitlines()[0]}") from exc
    active = session.get_providers()
    note = ""
    if CUDA in wanted and CUDA not in active:
        note = cuda_unusable_reason(ort)
        if preference == "CUDA":
            raise RuntimeUnavailable(note + " (or choose Auto / CPU in the add-on preferences)")
    result = ModelSession(description, session, active, note, use_io_binding=CUDA in active,
                          native_log="".join(log + session_log))
    if warm_up:
        result.warm_up()
    return result
