# SPDX-License-Identifier: GPL-3.0-or-later
"""One animation helper for Blender 4.2 (`Action.fcurves`) and 5.0 (slots and channel bags)."""
import bpy
import numpy as np
import pytest

from face_anything_addon.blender import animation


def evaluate(frames, read):
    scene = bpy.context.scene
    out = []
    for f in frames:
        scene.frame_set(int(f))
        out.append(read())
    return np.array(out)


def test_api_generation_matches_blender_version():
    assert animation.SLOTTED_ACTIONS == (bpy.app.version >= (4, 4, 0))
    assert ("fcurves" in bpy.types.Action.bl_rna.properties) == (bpy.app.version < (5, 0, 0))


def test_object_location_keys_evaluate(empty_file):
    ob = bpy.data.objects.new("marker", None)
    bpy.context.scene.collection.objects.link(ob)
    frames = np.arange(1, 11)
    loc = np.stack([np.sin(frames), np.cos(frames), frames * 0.1], axis=1)
    curves = animation.key_property(ob, "location", frames, loc, group="Marker")
    assert len(curves) == 3
    fcurves = animation.fcurves_of(ob)
    assert sorted((fc.data_path, fc.array_index) for fc in fcurves) == [
        ("location", 0), ("location", 1), ("location", 2)]
    assert all(fc.group.name == "Marker" for fc in fcurves)
    got = evaluate(frames, lambda: tuple(ob.location))
    np.testing.assert_allclose(got, loc, atol=1e-6)

    # Keying again replaces the keys instead of adding to them.
    animation.key_property(ob, "location", frames[:4], loc[:4] * 2)
    assert len(animation.fcurves_of(ob)) == 3
    assert all(len(fc.keyframe_points) == 4 for fc in animation.fcurves_of(ob))
    np.testing.assert_allclose(evaluate(frames[:4], lambda: tuple(ob.location)), loc[:4] * 2,
                               atol=1e-6)


def test_shape_key_values_pulse_on_their_frame(empty_file):
    mesh = bpy.data.meshes.new("face")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    ob = bpy.data.objects.new("face", mesh)
    bpy.context.scene.collection.objects.link(ob)
    ob.shape_key_add(name="Basis")
    keys = [ob.shape_key_add(name=f"frame_{i}", from_mix=False) for i in (1, 2, 3)]
    shape_keys = mesh.shape_keys
    for i, kb in enumerate(keys, start=1):
        animation.key_property(shape_keys, f'key_blocks["{kb.name}"].value',
                               [i - 1, i, i + 1], [0.0, 1.0, 0.0])
    assert len(animation.fcurves_of(shape_keys)) == 3
    if animation.SLOTTED_ACTIONS:
        assert shape_keys.animation_data.action_slot.target_id_type == "KEY"
    got = evaluate([1, 2, 3], lambda: [kb.value for kb in keys])
    np.testing.assert_allclose(got, np.eye(3), atol=1e-6)


def test_constant_interpolation_and_mismatched_lengths(empty_file):
    ob = bpy.data.objects.new("head", None)
    bpy.context.scene.collection.objects.link(ob)
    (fc,) = animation.key_property(ob, "hide_viewport", [1, 5], [0, 1], interpolation="CONSTANT")
    assert [k.interpolation for k in fc.keyframe_points] == ["CONSTANT", "CONSTANT"]
    assert evaluate([1, 4, 5], lambda: fc.evaluate(bpy.context.scene.frame_current)).tolist() == [
        0, 0, 1]
    with pytest.raises(ValueError, match="3 frames but 2 values"):
        animation.set_keyframes(fc, [1, 2, 3], [0, 1])
