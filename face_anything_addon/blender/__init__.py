# SPDX-License-Identifier: GPL-3.0-or-later
"""Everything that touches bpy: preferences, panels, operators, scene building."""
