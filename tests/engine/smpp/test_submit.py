"""Building submit_sm parts: addresses, encodings, concatenation UDH, packing and message_payload."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import segments
from engine.errors import InvalidBody, InvalidNumber
from engine.smpp.pdu import SUBMIT_SM, TLV_MESSAGE_PAYLOAD, Pdu, decode_pdu, encode_pdu
from engine.smpp.submit import SubmitBuilder, decode_part

GSM_TEXT = st.text(alphabet="abcXYZ 0123@£€{}[]~^|\\\n.,!?", min_size=1, max_size=700)
ANY_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x1b"),
    min_size=1, max_size=400,
)


def _reassemble(parts, packed=False):
    texts = []
    for part in parts:
        raw = encode_pdu(Pdu(SUBMIT_SM, 1, 0, part.params, part.tlvs))
        got = decode_pdu(raw)
        udh, text = decode_part(got.params, got.tlvs, packed=packed)
        texts.append((udh, text))
    return texts


@given(st.one_of(GSM_TEXT, ANY_TEXT), st.booleans())
def test_parts_reassemble_to_the_body_with_a_consistent_udh(body, packed):
    builder = SubmitBuilder(gsm7_packed=packed)
    parts = builder.build("r1", "+4915112345678", "ACME", body)
    plan = segments.plan(body, max_segments=255)
    assert len(parts) == len(plan.parts)
    got = _reassemble(parts, packed)
    if packed and plan.encoding == segments.GSM7:
        # a final '@' in packed GSM-7 is indistinguishable from padding; compare without it
        assert "".join(t for _, t in got) == body or "".join(t for _, t in got) + "@" == body
    else:
        assert "".join(t for _, t in got) == body
    if len(parts) > 1:
        refs = {udh[0] for udh, _ in got}
        assert len(refs) == 1
        assert [udh[1:] for udh, _ in got] == [(len(parts), i + 1) for i in range(len(parts))]
        assert all(p.params["esm_class"] == 0x40 for p in parts)
    for p in parts:
        assert len(p.params["short_message"]) <= (140 if packed else 160)


def test_a_gsm7_body_uses_data_coding_0_and_ucs2_uses_8():
    b = SubmitBuilder()
    assert b.build("r", "+49151", "ACME", "Hello")[0].params["data_coding"] == 0x00
    assert b.build("r", "+49151", "ACME", "Привет")[0].params["data_coding"] == 0x08


def test_an_unpacked_161_character_body_is_two_parts_of_153_and_8_septets():
    parts = SubmitBuilder().build("r", "+49151", "ACME", "a" * 161)
    assert [len(p.params["short_message"]) - 6 for p in parts] == [153, 8]
    assert [p.part for p in parts] == [0, 1] and {p.parts for p in parts} == {2}


def test_packed_gsm7_fills_one_bit_after_the_udh():
    parts = SubmitBuilder(gsm7_packed=True).build("r", "+49151", "ACME", "a" * 161)
    assert len(parts[0].params["short_message"]) == 6 + 134  # 1 fill bit + 153*7 bits = 134 octets


def test_an_alphanumeric_sender_is_ton_5_npi_0_and_a_numeric_one_1_1():
    b = SubmitBuilder()
    alpha = b.build("r", "+4915112345678", "ACME", "x")[0].params
    numeric = b.build("r", "+4915112345678", "+447700900123", "x")[0].params
    assert (alpha["source_addr_ton"], alpha["source_addr_npi"], alpha["source_addr"]) == (
        5, 0, "ACME")
    assert (numeric["source_addr_ton"], numeric["source_addr_npi"], numeric["source_addr"]) == (
        1, 1, "447700900123")
    assert (alpha["dest_addr_ton"], alpha["dest_addr_npi"], alpha["destination_addr"]) == (
        1, 1, "4915112345678")


def test_message_payload_mode_sends_one_submit_with_the_whole_body_in_tlv_0x0424():
    parts = SubmitBuilder(use_message_payload=True).build("r", "+49151", "ACME", "é" * 500)
    assert len(parts) == 1 and parts[0].params["short_message"] == b""
    assert decode_part(parts[0].params, parts[0].tlvs)[1] == "é" * 500
    assert TLV_MESSAGE_PAYLOAD in parts[0].tlvs


def test_concatenation_references_differ_between_consecutive_messages():
    b = SubmitBuilder()
    first = b.build("r1", "+49151", "ACME", "a" * 200)[0].params["short_message"][3]
    second = b.build("r2", "+49151", "ACME", "a" * 200)[0].params["short_message"][3]
    assert first != second


@pytest.mark.parametrize("to", ["", "+", "+12ab", "+1234567890123456"])
def test_a_bad_destination_raises_invalid_number(to):
    with pytest.raises(InvalidNumber):
        SubmitBuilder().build("r", to, "ACME", "x")


def test_an_empty_body_raises_invalid_body():
    with pytest.raises(InvalidBody):
        SubmitBuilder().build("r", "+49151", "ACME", "")
