"""The hot stores' encoder writes the msgpack that ``msgpack.packb`` wrote, byte for byte, so files written
before and after read the same (``storage.packing``)."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from storage.packing import pack

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=False), st.text(max_size=300), st.binary(max_size=300))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner),
                      max_leaves=25)


@given(st.lists(VALUES, max_size=25).map(tuple))
def test_a_record_is_packed_to_the_same_bytes_and_reads_back_the_same(values):
    packed = pack(values)
    assert packed == msgpack.packb(values)
    assert msgpack.unpackb(packed, use_list=False) == _as_tuples(values)


def _as_tuples(value):
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value
