# SPDX-License-Identifier: GPL-3.0-or-later
"""Training side of Face Anything for Blender (torch; never shipped in the extension).

`training.data.SyntheticFaces` is the entry point for training code; see docs/synthetic-data.md.
"""
