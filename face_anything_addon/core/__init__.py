# SPDX-License-Identifier: GPL-3.0-or-later
"""The capture engine: numpy and onnxruntime only. Never imports bpy.

Everything here runs the same inside Blender, in a headless command line and in tests.
"""
