# SPDX-License-Identifier: GPL-3.0-or-later
"""What ONNX Runtime this process has: version and built-in execution providers.

onnxruntime is imported lazily so that a broken or missing wheel shows up as a status the user can
read (in the preferences) instead of an add-on that fails to enable.
"""
from __future__ import annotations

from dataclasses import dataclass

# Names the user sees for ONNX Runtime's provider identifiers.
PROVIDER_LABELS = {
    "TensorrtExecutionProvider": "TensorRT",
    "CUDAExecutionProvider": "CUDA",
    "DmlExecutionProvider": "DirectML",
    "CoreMLExecutionProvider": "CoreML",
    "CPUExecutionProvider": "CPU",
}


@dataclass(frozen=True)
class RuntimeInfo:
    """ONNX Runtime as importable here. `error` is set (and the rest empty) when it is not."""

    version: str = ""
    location: str = ""
    built_in_providers: tuple[str, ...] = ()
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def summary(self) -> str:
        if not self.ok:
            return self.error
        labels = ", ".join(PROVIDER_LABELS.get(p, p) for p in self.built_in_providers)
        # A provider being built in does not mean its libraries load: a GPU provider is only
        # known to run once a session has been created with it.
        return f"ONNX Runtime {self.version}; built-in execution providers: {labels}"


def runtime_info() -> RuntimeInfo:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return RuntimeInfo(error=(
            f"ONNX Runtime is not importable ({exc}). Reinstall the Face Anything extension "
            "for this platform and Blender version; its zip carries the onnxruntime wheel."))
    return RuntimeInfo(version=ort.__version__, location=ort.__file__,
                       built_in_providers=tuple(ort.get_available_providers()))
