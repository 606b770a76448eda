"""Reading PDUs from an asyncio stream: framing across chunk boundaries, EOF, and fatal errors."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.smpp import pdu as p
from engine.smpp.stream import read_pdu
from tests.engine.smpp.test_pdu import pdus


async def _read_all(chunks: list[bytes]) -> list[p.Pdu]:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    out = []
    while (pdu := await read_pdu(reader)) is not None:
        out.append(pdu)
    return out


@settings(max_examples=50)
@given(st.lists(pdus(), max_size=5), st.data())
def test_pdus_split_at_any_points_are_read_back_in_order(items, data):
    raw = b"".join(p.encode_pdu(x) for x in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    assert asyncio.run(_read_all(chunks)) == items


def test_eof_inside_a_pdu_is_a_fatal_truncation():
    raw = p.encode_pdu(p.Pdu(p.SUBMIT_SM, 1, 0, {"short_message": b"hello"}))
    with pytest.raises(p.PduError) as err:
        asyncio.run(_read_all([raw + raw[:20]]))
    assert err.value.fatal and err.value.kind == "truncated"


def test_an_oversized_header_is_fatal_before_reading_the_body():
    with pytest.raises(p.PduError) as err:
        asyncio.run(_read_all([struct.pack(">IIII", 10**6, p.SUBMIT_SM, 0, 1)]))
    assert err.value.kind == "oversized"
