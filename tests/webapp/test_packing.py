"""The page's models on the wire (bot/web/packing.py): packed smaller, unpacked byte for byte, and
only where that is exact. The page's own unpacking is checked against these files in
tests/webapp/js/core.test.mjs."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from bot.web.packing import COPY, FLOAT16, MAGIC, PALETTE, PackError, pack_graph, unpack_graph


def _graph(initializers: dict[str, np.ndarray], as_float_data: str = "") -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    tensors = [numpy_helper.from_array(value, name) for name, value in initializers.items() if name != as_float_data]
    if as_float_data:  # a weight stored in float_data, not raw_data: copied as it is
        value = initializers[as_float_data]
        tensors.append(helper.make_tensor(as_float_data, TensorProto.FLOAT, value.shape, value.ravel().tolist()))
    names = list(initializers)
    graph = helper.make_graph(
        [helper.make_node("Identity", [n], [f"{n}_out"]) for n in names],
        "g",
        [],
        [helper.make_tensor_value_info(f"{n}_out", TensorProto.FLOAT if initializers[n].dtype == np.float32 else TensorProto.INT64, None) for n in names],
        tensors,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _segments(packed: bytes) -> list[tuple[int, int, int]]:
    count = struct.unpack_from("<I", packed, 12)[0]
    return [struct.unpack_from("<III", packed, 16 + 12 * i) for i in range(count)]


def test_each_weight_gets_the_smallest_exact_form_and_comes_back_byte_for_byte():
    rng = np.random.default_rng(3)
    halves = rng.standard_normal(300).astype(np.float16).astype(np.float32)
    halves[7] = -0.0
    few = rng.choice(np.array([0.1, 0.0, -0.0, 3e-7], np.float32), size=200)  # -0.0 and 0.0: two values
    weights = {
        "halves": halves,  # every value a float16: float16
        "few": few,  # 4 distinct values: a palette, smaller still
        "plain": rng.standard_normal(300).astype(np.float32),  # neither: copied
        "small": halves[:8].copy(),  # too small to be worth a segment
        "shape": np.array([1, 2, 3], np.int64),  # not float32
        "nan": np.where(np.arange(64) == 5, np.float32(np.nan), halves[:64]).astype(np.float32),  # NaN: copied
    }
    data = _graph(weights)
    packed = pack_graph(data)
    assert unpack_graph(packed) == data
    assert packed[:8] == MAGIC and len(packed) < len(data)
    kinds = [(kind, count) for kind, count, _ in _segments(packed) if kind != COPY]
    assert kinds == [(FLOAT16, 300), (PALETTE, 200)]  # in file order: "halves", then "few"
    assert pack_graph(data) == packed  # the same bytes every start: the page's SHA-256 stays


def test_weights_outside_raw_data_are_copied_as_they_are():
    weight = np.full(100, 0.5, np.float32)
    data = _graph({"w": weight}, as_float_data="w")
    packed = pack_graph(data)
    assert [kind for kind, _, _ in _segments(packed)] == [COPY]
    assert unpack_graph(packed) == data


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: b"NOTPACK1" + p[8:],
        lambda p: p[:-1],
        lambda p: p + b"\0",
        lambda p: p[:12] + struct.pack("<I", 10_000) + p[16:],  # more segments than there are
        lambda p: p[:16] + struct.pack("<I", 7) + p[20:],  # an unknown kind
    ],
)
def test_damaged_packing_is_refused(damage):
    packed = pack_graph(_graph({"few": np.tile(np.array([1.0, 2.0], np.float32), 50)}))
    with pytest.raises(PackError):
        unpack_graph(damage(packed))


def test_a_file_that_is_not_onnx_is_refused():
    with pytest.raises(PackError):
        pack_graph(b"\x3a\xff\xff\xff\x0f")  # a graph field longer than the file
