# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-frame vertex visibility (observed vs filled by the solve), the Blender-native way.

Live value: a Geometry Nodes modifier on the face ("Face Anything visibility") writes the FLOAT
point attribute `fa_visible` of the evaluated face for the current frame: 1 where the vertex was
observed, 0 where the solve filled it in, 0 on frames between captured frames. Read it in a
material with an Attribute node, in Geometry Nodes with Named Attribute, in the Spreadsheet, or
from Python on the evaluated mesh.

Storage: a "visibility table" object that is in no collection (the modifier's node group holds it;
see it in the Outliner's Blender File view), never animated, so Blender evaluates it once. Its mesh
has the face's vertices and FLOAT point attributes `fa_visible_bits_<b>`: block b packs the Blender
frames first + 24 b ... first + 24 b + 23 as bits (bit k = frame first + 24 b + k; 24 bits are
exact in a float32). `unpack_bits` reads them back.

Why this shape: one attribute per frame on the face costs ~25 ms per evaluated frame at 1,000
frames (every layer travels with each evaluation; Alembic export slows as much), and Geometry Nodes
reading a 1,000-layer table costs ~10 ms per frame; 42 packed layers cost well under a millisecond.
"""
from __future__ import annotations

import bpy
import numpy as np

BITS = 24  # frames per packed attribute (a float32 holds integers below 2**24 exactly)
PREFIX = "fa_visible_bits_"
LIVE_ATTRIBUTE = "fa_visible"
MODIFIER_NAME = "Face Anything visibility"


def pack_bits(visibility: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(N, V) bool at Blender frames `frames` -> (B, V) float32, B = ceil(span / 24); frames not
    captured are 0."""
    frames = np.asarray(frames, np.int64)
    span = int(frames[-1] - frames[0]) + 1
    blocks = -(-span // BITS)
    dense = np.zeros((blocks * BITS, visibility.shape[1]), bool)
    dense[frames - frames[0]] = visibility
    weights = 2.0 ** np.arange(BITS)
    packed = np.tensordot(weights, dense.reshape(blocks, BITS, -1), axes=([0], [1]))
    return packed.astype(np.float32)


def unpack_bits(packed: np.ndarray, offset: int) -> np.ndarray:
    """(V,) bool for the frame `offset` frames after the first captured one."""
    block, bit = divmod(int(offset), BITS)
    if block < 0 or block >= len(packed):
        return np.zeros(packed.shape[1], bool)
    return (packed[block].astype(np.int64) >> bit) & 1 == 1


def new_table_mesh(name: str, vertices: np.ndarray, visibility: np.ndarray,
                   frames: np.ndarray) -> bpy.types.Mesh:
    """A point-only mesh with `vertices` and the packed visibility attributes."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", np.ascontiguousarray(vertices, np.float32).ravel())
    for b, column in enumerate(pack_bits(visibility, frames)):
        attr = mesh.attributes.new(f"{PREFIX}{b}", "FLOAT", "POINT")
        attr.data.foreach_set("value", column)
    mesh.update()
    return mesh


def _socket(sockets, name: str):
    """The socket called `name` that is in use (older node types keep one hidden socket per data
    type under the same name)."""
    matches = [s for s in sockets if s.name == name]
    for s in matches:
        if getattr(s, "enabled", True):
            return s
    return matches[0]


def new_node_group(name: str, table: bpy.types.Object, first_frame: int) -> bpy.types.NodeTree:
    """Geometry Nodes: `fa_visible` = bit (frame - first) of the table's packed attributes."""
    group = bpy.data.node_groups.new(name, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    if hasattr(group, "is_modifier"):
        group.is_modifier = True
    nodes, links = group.nodes, group.links

    def node(kind: str, x: float, y: float, **settings):
        n = nodes.new(kind)
        n.location = (x, y)
        for key, value in settings.items():
            setattr(n, key, value)
        return n

    def math(operation: str, x: float, y: float, a=None, b=None):
        n = node("ShaderNodeMath", x, y, operation=operation)
        for socket, value in ((n.inputs[0], a), (n.inputs[1], b)):
            if isinstance(value, (int, float)):
                socket.default_value = value
            elif value is not None:
                links.new(value, socket)
        return n.outputs[0]

    def out(n, name):
        return _socket(n.outputs, name)

    group_in = node("NodeGroupInput", -1400, 200)
    group_out = node("NodeGroupOutput", 900, 200)
    time = node("GeometryNodeInputSceneTime", -1400, -100)
    offset = math("SUBTRACT", -1200, -100, math("FLOOR", -1300, -100, out(time, "Frame")),
                  float(first_frame))
    block = math("FLOOR", -900, 0, math("DIVIDE", -1000, 0, offset, float(BITS)))
    bit = math("MODULO", -900, -250, offset, float(BITS))
    to_text = node("FunctionNodeValueToString", -700, 0)
    _socket(to_text.inputs, "Decimals").default_value = 0
    links.new(block, _socket(to_text.inputs, "Value"))
    prefix = node("FunctionNodeInputString", -700, 150, string=PREFIX)
    join = node("GeometryNodeStringJoin", -500, 50)
    _socket(join.inputs, "Delimiter").default_value = ""
    strings = _socket(join.inputs, "Strings")
    for first, second in ((out(prefix, "String"), out(to_text, "String")),
                          (out(to_text, "String"), out(prefix, "String"))):
        for link in list(strings.links):
            links.remove(link)
        links.new(first, strings)
        links.new(second, strings)
        if strings.links[0].from_socket == out(prefix, "String"):
            break  # multi-input order differs between versions: keep the one that reads prefix+n
    named = node("GeometryNodeInputNamedAttribute", -300, 0, data_type="FLOAT")
    links.new(out(join, "String"), _socket(named.inputs, "Name"))
    info = node("GeometryNodeObjectInfo", -300, 300)
    _socket(info.inputs, "Object").default_value = table
    index = node("GeometryNodeInputIndex", -300, -150)
    sample = node("GeometryNodeSampleIndex", -100, 100, data_type="FLOAT", domain="POINT")
    links.new(out(info, "Geometry"), _socket(sample.inputs, "Geometry"))
    links.new(out(named, "Attribute"), _socket(sample.inputs, "Value"))
    links.new(out(index, "Index"), _socket(sample.inputs, "Index"))
    shifted = math("DIVIDE", 100, 0, out(sample, "Value"), math("POWER", -100, -250, 2.0, bit))
    visible = math("MODULO", 400, 0, math("FLOOR", 250, 0, shifted), 2.0)
    store = node("GeometryNodeStoreNamedAttribute", 600, 200, data_type="FLOAT", domain="POINT")
    _socket(store.inputs, "Name").default_value = LIVE_ATTRIBUTE
    links.new(out(group_in, "Geometry"), _socket(store.inputs, "Geometry"))
    links.new(visible, _socket(store.inputs, "Value"))
    links.new(out(store, "Geometry"), _socket(group_out.inputs, "Geometry"))
    return group


def add_visibility_modifier(ob: bpy.types.Object, group: bpy.types.NodeTree) -> bpy.types.Modifier:
    mod = ob.modifiers.new(MODIFIER_NAME, "NODES")
    mod.node_group = group
    return mod
