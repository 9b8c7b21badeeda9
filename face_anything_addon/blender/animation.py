# SPDX-License-Identifier: GPL-3.0-or-later
"""F-curves on Blender 4.2 (`Action.fcurves`) and 4.4+ / 5.0 (action slots and channel bags).

The one place that knows which animation API this Blender has. Keyframes are written in bulk
(`keyframe_points.add` + `foreach_set`), never one `keyframe_insert` at a time.
"""
from __future__ import annotations

import bpy
import numpy as np

SLOTTED_ACTIONS = hasattr(bpy.types, "ActionSlot")

# The keyword that names an F-curve's group in `fcurves.new`.
_GROUP_KEYWORD = "group_name" if SLOTTED_ACTIONS else "action_group"

_INTERPOLATION = {  # enum index of bpy.types.Keyframe.interpolation
    item.identifier: i
    for i, item in enumerate(bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items)
}


def _channelbag_fcurves(action, slot):
    from bpy_extras import anim_utils

    return anim_utils.action_ensure_channelbag_for_slot(action, slot).fcurves


def ensure_action(id_data, name: str):
    """The action animating `id_data` (an Object, a shape-key Key, ...); created if missing."""
    anim = id_data.animation_data or id_data.animation_data_create()
    if anim.action is None:
        anim.action = bpy.data.actions.new(name)
    if SLOTTED_ACTIONS and anim.action_slot is None:
        slot = anim.action.slots.new(id_type=id_data.id_type, name=id_data.name)
        anim.action_slot = slot
    return anim.action


def fcurves_of(id_data):
    """The F-curve collection that animates `id_data`, or None when it has no animation."""
    anim = id_data.animation_data
    if anim is None or anim.action is None:
        return None
    if SLOTTED_ACTIONS:
        if anim.action_slot is None:
            return None
        return _channelbag_fcurves(anim.action, anim.action_slot)
    return anim.action.fcurves


def ensure_fcurve(id_data, data_path: str, index: int = 0, group: str = "", action_name: str = ""):
    """The F-curve for `data_path[index]` on `id_data`, created (in `group`) if missing."""
    ensure_action(id_data, action_name or f"{id_data.name}Action")
    fcurves = fcurves_of(id_data)
    fc = fcurves.find(data_path, index=index)
    if fc is None:
        fc = fcurves.new(data_path, index=index, **{_GROUP_KEYWORD: group})
    return fc


def set_keyframes(fcurve, frames, values, interpolation: str = "LINEAR") -> None:
    """Replace all keyframes of `fcurve` with (frames[i], values[i]), written in bulk."""
    frames = np.asarray(frames, dtype=np.float32).ravel()
    values = np.asarray(values, dtype=np.float32).ravel()
    if frames.shape != values.shape:
        raise ValueError(f"{frames.size} frames but {values.size} values")
    points = fcurve.keyframe_points
    points.clear()
    points.add(frames.size)
    co = np.empty(2 * frames.size, dtype=np.float32)
    co[0::2] = frames
    co[1::2] = values
    points.foreach_set("co", co)
    points.foreach_set("interpolation", np.full(frames.size, _INTERPOLATION[interpolation], np.int32))
    fcurve.update()


def key_property(id_data, data_path: str, frames, values, group: str = "",
                 interpolation: str = "LINEAR") -> list:
    """Key a (possibly vector) property: `values` is (F,) or (F, C) for C channels."""
    values = np.asarray(values, dtype=np.float32)
    columns = values.reshape(len(values), -1)
    curves = []
    for index in range(columns.shape[1]):
        fc = ensure_fcurve(id_data, data_path, index=index, group=group)
        set_keyframes(fc, frames, columns[:, index], interpolation)
        curves.append(fc)
    return curves
