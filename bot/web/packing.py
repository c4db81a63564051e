"""The page's models on the wire: an ONNX file packed so that the page rebuilds it byte for byte.

Much of a model's weight data carries less information than its float32 bytes suggest: BlazeFace's
weights are float16 values (MediaPipe publishes them so; the conversion to ONNX widened them), and
each convolution of the 26-style network uses at most a few hundred distinct values. `pack_graph`
keeps the ONNX file's bytes as they are except the float32 weights (`raw_data` of the
initializers), which it stores as float16 where every value converts back exactly, or as a table of
the distinct values and a one-byte index per value where there are at most 256 of them. The page
(`unpackModel` in static/core.js) writes the float32 bytes back and checks the SHA-256 of the whole
rebuilt file before onnxruntime-web sees it, so what runs is the very file the server verified.

Why not the same inside ONNX (float16 initializers followed by Cast nodes, or Gather from a table)?
It gives the same outputs, but onnxruntime-web folding those nodes at load made Chromium compile
more of its WebAssembly with its optimising compiler: about 70 MB more memory for half a second,
which added to the peak when a photo was picked at once (measured; see README).

Format, all integers little-endian: ``DRKPACK1``, the unpacked length (u32), the number of segments
(u32), then each segment's header (kind, count, table: 3 x u32), then each segment's payload in
order. Kinds: COPY (``count`` bytes as they are), FLOAT16 (``count`` float16 values, each becoming
its float32), PALETTE (``table`` float32 values, then ``count`` uint8 indices into them).
"""

from __future__ import annotations

import struct

import numpy as np

MAGIC = b"DRKPACK1"
COPY, FLOAT16, PALETTE = 0, 1, 2
_FLOAT = 1  # onnx.TensorProto.FLOAT
FLOAT16_MIN_VALUES = 16  # below this, a segment header costs about what float16 saves
PALETTE_MIN_VALUES = 64  # and at least 4 values for each distinct one, so that the table pays


class PackError(ValueError):
    """Bytes that are not a packed model, or not one this code wrote."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise PackError("truncated protobuf varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(data: bytes, start: int, end: int):
    """(field number, wire type, value start, value end, varint value) of each field of a message."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire, value = key >> 3, key & 7, 0
        if wire == 0:
            value, after = _varint(data, pos, end)
        elif wire == 1:
            after = pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            after = pos + length
        elif wire == 5:
            after = pos + 4
        else:
            raise PackError(f"protobuf wire type {wire} is not used by ONNX")
        if after > end:
            raise PackError("truncated protobuf field")
        yield number, wire, pos, after, value
        pos = after


def _float_weights(data: bytes) -> list[tuple[int, int]]:
    """Where the float32 ``raw_data`` of each initializer lies in an ONNX file's bytes:
    ModelProto.graph (7) -> GraphProto.initializer (5) -> TensorProto.raw_data (9), data_type (2)."""
    spans = []
    for number, wire, start, end, _ in _fields(data, 0, len(data)):
        if number != 7 or wire != 2:
            continue
        for g_number, g_wire, g_start, g_end, _ in _fields(data, start, end):
            if g_number != 5 or g_wire != 2:
                continue
            data_type, raw = None, None
            for t_number, t_wire, t_start, t_end, value in _fields(data, g_start, g_end):
                if t_number == 2 and t_wire == 0:
                    data_type = value
                elif t_number == 9 and t_wire == 2:
                    raw = (t_start, t_end)
            if data_type == _FLOAT and raw is not None and (raw[1] - raw[0]) % 4 == 0:
                spans.append(raw)
    return sorted(spans)


def _encode(weight: bytes) -> tuple[int, int, int, bytes] | None:
    """The smallest exact encoding of float32 bytes, or None to copy them as they are."""
    values = np.frombuffer(weight, dtype="<f4")
    bits = values.view("<u4")
    if values.size >= PALETTE_MIN_VALUES:
        table, index = np.unique(bits, return_inverse=True)  # by bit pattern: -0.0 is not 0.0
        if len(table) <= 256 and values.size >= 4 * len(table):
            return PALETTE, values.size, len(table), table.astype("<u4").tobytes() + index.astype(np.uint8).tobytes()
    if values.size >= FLOAT16_MIN_VALUES and not np.isnan(values).any():  # NaNs: left to the copy
        half = values.astype("<f2")
        if np.array_equal(half.astype("<f4").view("<u4"), bits):  # every value exactly, bit for bit
            return FLOAT16, values.size, 0, half.tobytes()
    return None


def pack_graph(data: bytes) -> bytes:
    """An ONNX file's bytes -> the packed form (`unpack_graph` gives ``data`` back exactly)."""
    headers, payloads, pos = [], [], 0
    for start, end in _float_weights(data):
        encoded = _encode(data[start:end])
        if encoded is None:
            continue
        kind, count, table, payload = encoded
        if start > pos:
            headers.append((COPY, start - pos, 0))
            payloads.append(data[pos:start])
        headers.append((kind, count, table))
        payloads.append(payload)
        pos = end
    if pos < len(data):
        headers.append((COPY, len(data) - pos, 0))
        payloads.append(data[pos:])
    head = MAGIC + struct.pack("<II", len(data), len(headers)) + b"".join(struct.pack("<III", *h) for h in headers)
    return head + b"".join(payloads)


def unpack_graph(packed: bytes) -> bytes:
    """The packed form -> the ONNX file's bytes (what the page's `unpackModel` does, in Python)."""
    if packed[:8] != MAGIC or len(packed) < 16:
        raise PackError("not a packed model")
    size, segments = struct.unpack_from("<II", packed, 8)
    pos = 16 + 12 * segments
    if pos > len(packed):
        raise PackError("truncated packed model")
    out = bytearray()
    for i in range(segments):
        kind, count, table = struct.unpack_from("<III", packed, 16 + 12 * i)
        if kind == COPY:
            out += packed[pos : pos + count]
            pos += count
        elif kind == FLOAT16:
            out += np.frombuffer(packed, "<f2", count, pos).astype("<f4").tobytes()
            pos += 2 * count
        elif kind == PALETTE:
            values = np.frombuffer(packed, "<u4", table, pos)
            out += values[np.frombuffer(packed, np.uint8, count, pos + 4 * table)].astype("<u4").tobytes()
            pos += 4 * table + count
        else:
            raise PackError(f"unknown segment kind {kind}")
    if pos != len(packed) or len(out) != size:
        raise PackError("packed model of the wrong length")
    return bytes(out)
