# SPDX-License-Identifier: GPL-3.0-or-later
"""Regenerates tiny_face_model.onnx: the tiny contract model of tests/contract_models.py with a
mask and windows of 2, committed so environments without `onnx` (Blender 4.2's) can run the whole
job through the installed extension. Run: .venv/bin/python tests/data/make_tiny_face_model.py
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tests.contract_models import contract_metadata, make_model  # noqa: E402

make_model(HERE / "tiny_face_model.onnx", mask=True, metadata=contract_metadata(max_window="2"))
