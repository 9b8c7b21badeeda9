# SPDX-License-Identifier: GPL-3.0-or-later
"""Exceptions shared by core and the Blender side. No bpy here."""


class FootageError(Exception):
    """Footage cannot be read as asked: a missing path, no or ambiguous frames, mixed frame sizes,
    an unreadable or corrupt frame. The message names the file (or frame) at fault, for the user."""
