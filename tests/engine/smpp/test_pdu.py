"""The SMPP PDU codec: round trips for every PDU we send or accept, and typed errors for bad bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import CarrierError
from engine.smpp import pdu as p


def _cstr(size: int):
    return st.text(
        alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=size - 1
    )


def _params(command_id: int):
    fields = {}
    for name, kind, size in p.SCHEMAS[command_id]:
        if kind == "s":
            fields[name] = _cstr(size)
        elif kind == "b":
            fields[name] = st.integers(0, 255)
        else:
            fields[name] = st.binary(max_size=254)
    return st.fixed_dictionaries(fields)


_TLVS = st.dictionaries(
    st.sampled_from([
        p.TLV_MESSAGE_PAYLOAD, p.TLV_RECEIPTED_MESSAGE_ID, p.TLV_MESSAGE_STATE,
        p.TLV_SAR_MSG_REF_NUM, p.TLV_SAR_TOTAL_SEGMENTS, p.TLV_SAR_SEGMENT_SEQNUM,
        p.TLV_NETWORK_ERROR_CODE, p.TLV_SC_INTERFACE_VERSION, 0x1400,
    ]),
    st.binary(max_size=300),
    max_size=5,
)


@st.composite
def pdus(draw):
    command_id = draw(st.sampled_from(sorted(p.SCHEMAS)))
    tlvs = draw(_TLVS) if command_id in p._TAKES_TLVS else {}
    return p.Pdu(
        command_id,
        draw(st.integers(0, 0xFFFFFFFF)),
        draw(st.integers(0, 0xFFFFFFFF)),
        draw(_params(command_id)),
        tlvs,
    )


@given(pdus())
def test_every_pdu_survives_an_encode_decode_round_trip(pdu):
    assert p.decode_pdu(p.encode_pdu(pdu)) == pdu


@given(pdus())
def test_the_header_length_is_the_length_of_the_encoding(pdu):
    raw = p.encode_pdu(pdu)
    assert struct.unpack(">I", raw[:4])[0] == len(raw)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_to_a_pdu_or_raise_pdu_error_only(raw):
    try:
        p.decode_pdu(raw)
    except p.PduError as exc:
        assert isinstance(exc, CarrierError)
        assert exc.kind in {"bad_length", "oversized", "truncated", "unknown_command"}


@given(pdus(), st.data())
def test_a_truncated_pdu_with_a_fixed_up_length_raises_a_typed_error_or_decodes(pdu, data):
    raw = p.encode_pdu(pdu)
    cut = data.draw(st.integers(p.HEADER_LEN, len(raw)))
    chopped = struct.pack(">I", cut) + raw[4:cut]
    try:
        p.decode_pdu(chopped)
    except p.PduError as exc:
        assert exc.sequence == pdu.sequence
        assert not exc.fatal


def test_encoding_missing_parameters_uses_zero_values():
    raw = p.encode_pdu(p.Pdu(p.SUBMIT_SM, 1, params={"destination_addr": "4915112345678"}))
    got = p.decode_pdu(raw)
    assert got.params == {**p.defaults(p.SUBMIT_SM), "destination_addr": "4915112345678"}


def test_an_error_response_without_a_body_decodes_with_zero_values():
    raw = struct.pack(">IIII", 16, p.SUBMIT_SM | p.RESP, p.ESME_RTHROTTLED, 9)
    got = p.decode_pdu(raw)
    assert (got.status, got.sequence, got.params) == (p.ESME_RTHROTTLED, 9, {"message_id": ""})


def test_a_length_below_the_header_is_a_fatal_bad_length():
    with pytest.raises(p.PduError) as err:
        p.decode_pdu(struct.pack(">IIII", 8, p.ENQUIRE_LINK, 0, 3))
    assert (err.value.kind, err.value.fatal) == ("bad_length", True)


def test_an_oversized_length_is_fatal_and_keeps_the_sequence():
    with pytest.raises(p.PduError) as err:
        p.read_header(struct.pack(">IIII", p.MAX_PDU_LEN + 1, p.SUBMIT_SM, 0, 77))
    assert (err.value.kind, err.value.fatal, err.value.sequence) == ("oversized", True, 77)


def test_an_unknown_command_id_is_answerable_with_generic_nack_invalid_command():
    with pytest.raises(p.PduError) as err:
        p.decode_pdu(struct.pack(">IIII", 16, 0x00000104, 0, 5))
    assert (err.value.kind, err.value.status, err.value.sequence) == (
        "unknown_command", p.ESME_RINVCMDID, 5)
    assert not err.value.fatal


def test_a_short_message_longer_than_the_body_is_truncated():
    body = p.encode_pdu(p.Pdu(p.SUBMIT_SM, 4, params={"short_message": b"hello"}))
    bad = body[:-6] + b"\x09" + body[-5:]  # sm_length 9 with 5 octets left
    with pytest.raises(p.PduError) as err:
        p.decode_pdu(bad)
    assert err.value.kind == "truncated"


def test_trailing_octets_on_a_command_without_tlvs_are_rejected():
    raw = struct.pack(">IIII", 18, p.ENQUIRE_LINK, 0, 2) + b"\x00\x00"
    with pytest.raises(p.PduError) as err:
        p.decode_pdu(raw)
    assert err.value.kind == "bad_length"


def test_encoding_a_string_at_its_maximum_length_is_refused():
    with pytest.raises(p.PduError) as err:
        p.encode_pdu(p.Pdu(p.BIND_TRANSCEIVER, 1, params={"password": "x" * 9}))
    assert err.value.kind == "bad_field"


def test_a_short_message_over_254_octets_is_refused():
    with pytest.raises(p.PduError):
        p.encode_pdu(p.Pdu(p.SUBMIT_SM, 1, params={"short_message": b"x" * 255}))


def test_status_names_cover_the_retryable_codes():
    assert p.status_name(0x58) == "ESME_RTHROTTLED"
    assert p.status_name(0x14) == "ESME_RMSGQFUL"
    assert p.status_name(0xAB) == "0x000000ab"


def test_a_submit_sm_resp_with_tlvs_after_its_message_id_decodes_with_them():
    raw = p.encode_pdu(p.Pdu(p.SUBMIT_SM | p.RESP, 3, 0, {"message_id": "a1"}))
    tlv = struct.pack(">HH", 0x001D, 3) + b"ok\x00"  # additional_status_info_text
    got = p.decode_pdu(struct.pack(">I", len(raw) + len(tlv)) + raw[4:] + tlv)
    assert (got.params, got.tlvs) == ({"message_id": "a1"}, {0x001D: b"ok\x00"})


def test_a_body_error_names_the_command_and_status_of_its_good_header():
    raw = struct.pack(">IIII", 19, p.SUBMIT_SM | p.RESP, p.ESME_ROK, 8) + b"123"  # no NUL
    with pytest.raises(p.PduError) as err:
        p.decode_pdu(raw)
    assert (err.value.kind, err.value.fatal, err.value.sequence) == ("truncated", False, 8)
    assert (err.value.command_id, err.value.command_status) == (p.SUBMIT_SM | p.RESP, p.ESME_ROK)


@pytest.mark.parametrize(
    "tlv",
    [struct.pack(">HH", 0x001D, 7) + b"queued\x00",  # additional_status_info_text: starts 0x00
     struct.pack(">HH", 0x0425, 1) + b"\x05",  # delivery_failure_reason
     struct.pack(">HH", 0x0423, 3) + b"\x03\x00\x11"],  # network_error_code
)
@pytest.mark.parametrize("message_id", [b"", b"\x00"])
def test_an_error_resp_with_tlvs_decodes_them_with_or_without_its_message_id(tlv, message_id):
    """Without the message_id, the TLV's first octet was read as its NUL (or its first NUL ended a
    made-up id) and the TLVs misparsed."""
    body = message_id + tlv
    raw = struct.pack(">IIII", 16 + len(body), p.SUBMIT_SM | p.RESP, p.ESME_RINVDSTADR, 4) + body
    got = p.decode_pdu(raw)
    tag, n = struct.unpack(">HH", tlv[:4])
    assert (got.status, got.params, got.tlvs) == (p.ESME_RINVDSTADR, {"message_id": ""}, {tag: tlv[4:]})


def test_an_error_resp_whose_body_is_neither_layout_still_raises():
    raw = struct.pack(">IIII", 19, p.SUBMIT_SM | p.RESP, p.ESME_RINVDSTADR, 4) + b"\x00\x01\x02"
    with pytest.raises(p.PduError) as err:
        p.decode_pdu(raw)
    assert (err.value.kind, err.value.command_status) == ("truncated", p.ESME_RINVDSTADR)


def _tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


@pytest.mark.parametrize("tlvs", [
    # network_error_code GSM 0x11, then a 13-octet additional_status_info_text
    [(0x0423, b"\x03\x00\x11"), (0x001D, b"no such user\x00")],
    # delivery_failure_reason 1 (destination unavailable), then a 27-octet text
    [(0x0425, b"\x01"), (0x001D, b"destination is unreachable\x00")],
])
def test_an_error_resp_of_tlvs_alone_that_also_parses_with_a_message_id_is_read_as_tlvs(tlvs):
    """These bodies also read as a message_id (the octets up to the first 0x00: "\\x04#") and a TLV of
    tag 0x0303 or 0x0101 covering the rest; that reading won. No SMSC sends an id of control octets or
    those tags: the TLVs alone are what was sent."""
    body = b"".join(_tlv(tag, value) for tag, value in tlvs)
    raw = struct.pack(">IIII", 16 + len(body), p.SUBMIT_SM | p.RESP, p.ESME_RINVDSTADR, 9) + body
    got = p.decode_pdu(raw)
    assert (got.status, got.params, got.tlvs) == (p.ESME_RINVDSTADR, {"message_id": ""}, dict(tlvs))


def test_an_smpp5_error_resp_keeps_its_empty_message_id_and_tlvs_and_a_printable_id_stays():
    """SMPP 5.0's layout stays the first reading whenever it is plausible."""
    tlvs = _tlv(0x0425, b"\x01") + _tlv(0x001D, b"destination is unreachable\x00")
    for mid in (b"", b"4f2a"):
        body = mid + b"\x00" + tlvs
        raw = struct.pack(">IIII", 16 + len(body), p.SUBMIT_SM | p.RESP, p.ESME_RINVDSTADR, 9) + body
        got = p.decode_pdu(raw)
        assert (got.params, got.tlvs) == ({"message_id": mid.decode()},
                                          {0x0425: b"\x01", 0x001D: b"destination is unreachable\x00"})
