# SPDX-License-Identifier: GPL-3.0-or-later
"""Reads the header of an ONNX file (inputs, outputs, metadata, external-data references) without
loading its weights and without the `onnx` package, which Blender does not carry.

An ONNX file is a protobuf `ModelProto`. This walks its wire format with seeks, so a 15 GB model costs
a few thousand small reads. Only the fields named below are decoded; everything else is skipped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

# Field numbers from onnx.proto (stable since IR version 3).
MODEL_IR_VERSION, MODEL_GRAPH, MODEL_OPSET, MODEL_METADATA = 1, 7, 8, 14
GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_OUTPUT = 5, 11, 12
TENSOR_NAME, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 8, 13, 14
VALUE_NAME, VALUE_TYPE = 1, 2
TYPE_TENSOR = 1
TENSOR_TYPE_ELEM, TENSOR_TYPE_SHAPE = 1, 2
SHAPE_DIM = 1
DIM_VALUE, DIM_PARAM = 1, 2
ENTRY_KEY, ENTRY_VALUE = 1, 2
OPSET_DOMAIN, OPSET_VERSION = 1, 2
EXTERNAL = 1

ELEMENT_TYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64",
                 9: "bool", 10: "float16", 11: "float64", 16: "bfloat16"}

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class OnnxFileError(Exception):
    """The file is not a readable ONNX model (the message says why)."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    element_type: str  # "float32", ...; "" when the graph does not say
    shape: tuple[int | str | None, ...] | None  # int: fixed, str: symbolic, None: unknown dim


@dataclass
class OnnxHeader:
    ir_version: int = 0
    opsets: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    initializer_names: set[str] = field(default_factory=set)
    external_files: dict[str, int] = field(default_factory=dict)  # location -> bytes needed


class _Reader:
    """Protobuf wire-format fields of one message between two file offsets."""

    def __init__(self, f: BinaryIO, size: int):
        self.f, self.size = f, size

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.f.read(1)
            if not b:
                raise OnnxFileError("truncated")
            result |= (b[0] & 0x7F) << shift
            if not b[0] & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise OnnxFileError("not protobuf")

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """Yields (field number, wire type, value); for LENGTH fields the value is the payload
        length and the file sits at the payload's start. Unread payloads are skipped."""
        pos = start
        while pos < end:
            self.f.seek(pos)
            key = self.varint()
            number, wire = key >> 3, key & 7
            if number == 0:
                raise OnnxFileError("not protobuf")
            if wire == VARINT:
                value = self.varint()
                pos = self.f.tell()
            elif wire == LENGTH:
                value = self.varint()
                pos = self.f.tell() + value
            elif wire in (FIXED64, FIXED32):
                value = 0
                pos = self.f.tell() + (8 if wire == FIXED64 else 4)
            else:
                raise OnnxFileError("not protobuf")
            if pos > end:
                raise OnnxFileError("truncated" if pos > self.size else "not protobuf")
            here = self.f.tell()
            yield number, wire, value
            self.f.seek(here)

    def bytes(self, length: int) -> bytes:
        data = self.f.read(length)
        if len(data) != length:
            raise OnnxFileError("truncated")
        return data

    def text(self, length: int) -> str:
        try:
            return self.bytes(length).decode("utf-8")
        except UnicodeDecodeError:
            raise OnnxFileError("not protobuf") from None

    def message_fields(self, length: int):
        start = self.f.tell()
        return self.fields(start, start + length)

    def entry(self, length: int) -> tuple[str, str]:
        key = value = ""
        for number, wire, n in self.message_fields(length):
            if wire == LENGTH and number == ENTRY_KEY:
                key = self.text(n)
            elif wire == LENGTH and number == ENTRY_VALUE:
                value = self.text(n)
        return key, value


def _dims(r: _Reader, length: int) -> tuple:
    dims = []
    for number, wire, n in r.message_fields(length):
        if number == SHAPE_DIM and wire == LENGTH:
            dim = None
            for dn, dw, dv in r.message_fields(n):
                if dn == DIM_VALUE and dw == VARINT:
                    dim = dv
                elif dn == DIM_PARAM and dw == LENGTH:
                    dim = r.text(dv) or None
            dims.append(dim)
    return tuple(dims)


def _value_info(r: _Reader, length: int) -> TensorInfo:
    name, elem, shape = "", "", None
    for number, wire, n in r.message_fields(length):
        if number == VALUE_NAME and wire == LENGTH:
            name = r.text(n)
        elif number == VALUE_TYPE and wire == LENGTH:
            for tn, tw, tv in r.message_fields(n):
                if tn == TYPE_TENSOR and tw == LENGTH:
                    for en, ew, ev in r.message_fields(tv):
                        if en == TENSOR_TYPE_ELEM and ew == VARINT:
                            elem = ELEMENT_TYPES.get(ev, f"type {ev}")
                        elif en == TENSOR_TYPE_SHAPE and ew == LENGTH:
                            shape = _dims(r, ev)
    return TensorInfo(name, elem, shape)


def _initializer(r: _Reader, length: int, header: OnnxHeader) -> None:
    name, external, entries = "", False, {}
    for number, wire, n in r.message_fields(length):
        if number == TENSOR_NAME and wire == LENGTH:
            name = r.text(n)
        elif number == TENSOR_EXTERNAL_DATA and wire == LENGTH:
            key, value = r.entry(n)
            entries[key] = value
        elif number == TENSOR_DATA_LOCATION and wire == VARINT:
            external = n == EXTERNAL
    header.initializer_names.add(name)
    if external and "location" in entries:
        end = int(entries.get("offset", 0) or 0) + int(entries.get("length", 0) or 0)
        loc = entries["location"]
        header.external_files[loc] = max(header.external_files.get(loc, 0), end)


def _graph(r: _Reader, length: int, header: OnnxHeader) -> None:
    for number, wire, n in r.message_fields(length):
        if wire != LENGTH:
            continue
        if number == GRAPH_INPUT:
            header.inputs.append(_value_info(r, n))
        elif number == GRAPH_OUTPUT:
            header.outputs.append(_value_info(r, n))
        elif number == GRAPH_INITIALIZER:
            _initializer(r, n, header)


def read_header(path: str | os.PathLike) -> OnnxHeader:
    """Inputs, outputs, metadata and external-data needs of an ONNX file.

    Raises OnnxFileError("not protobuf" | "truncated" | "no graph" | ...).
    """
    path = Path(path)
    size = path.stat().st_size
    header = OnnxHeader()
    seen_graph = False
    with path.open("rb") as f:
        r = _Reader(f, size)
        for number, wire, n in r.fields(0, size):
            if number == MODEL_IR_VERSION and wire == VARINT:
                header.ir_version = n
            elif number == MODEL_GRAPH and wire == LENGTH:
                seen_graph = True
                _graph(r, n, header)
            elif number == MODEL_OPSET and wire == LENGTH:
                domain, version = "", 0
                for on, ow, ov in r.message_fields(n):
                    if on == OPSET_DOMAIN and ow == LENGTH:
                        domain = r.text(ov)
                    elif on == OPSET_VERSION and ow == VARINT:
                        version = ov
                header.opsets[domain] = version
            elif number == MODEL_METADATA and wire == LENGTH:
                key, value = r.entry(n)
                header.metadata[key] = value
    if not seen_graph or header.ir_version == 0:
        raise OnnxFileError("no graph" if header.ir_version else "not protobuf")
    return header
