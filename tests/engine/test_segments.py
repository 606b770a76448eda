"""Tests for engine.segments: public vectors, the edge cases libraries get wrong, and properties."""

from __future__ import annotations

import json

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec used as a cross-check)
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import segments
from engine.errors import BodyTooLarge, InvalidBody
from engine.segments import (
    GSM7,
    UCS2,
    concat_udh,
    decode_gsm7,
    decode_ucs2,
    encode_gsm7,
    encode_ucs2,
    is_gsm7,
    pack_septets,
    parse_udh,
    plan,
    unpack_septets,
)

EXTENSION = "^{}\\[~]|€\x0c"
BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_CHARS = BASIC + EXTENSION

PUBLIC_VECTORS = [
    ("Hello world", GSM7, 11, [11]),
    ("a" * 160, GSM7, 160, [160]),
    ("a" * 161, GSM7, 161, [153, 8]),
    ("a" * 159 + "€", GSM7, 161, [153, 8]),
    ("Price: {10€}", GSM7, 15, [15]),
    ("“Hi”", UCS2, 4, [4]),
    ("ж" * 71, UCS2, 71, [67, 4]),
    ("Hi 😀", UCS2, 5, [5]),
    ("a" * 307, GSM7, 307, [153, 153, 1]),
]

gsm_text = st.text(alphabet=GSM_CHARS, min_size=1, max_size=800)
# Any valid unicode (hypothesis never generates lone surrogates in st.text), minus the raw ESC.
any_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x1b"),
    min_size=1,
    max_size=400,
)
wide_text = st.text(alphabet=st.sampled_from("a€ж😀𝄞{"), min_size=1, max_size=400)


def unit_count(part: str, encoding: str) -> int:
    if encoding == GSM7:
        return len(encode_gsm7(part))
    return len(part.encode("utf-16-be")) // 2


def check_plan(text: str, p: segments.SegmentPlan) -> None:
    single, concat = (160, 153) if p.encoding == GSM7 else (70, 67)
    assert "".join(p.parts) == text
    assert len(p.segments) == len(p.parts)
    assert sum(p.segments) == p.units
    assert (len(p.parts) == 1) == (p.units <= single)
    limit = single if len(p.parts) == 1 else concat
    for part, size in zip(p.parts, p.segments, strict=True):
        assert part
        assert size == unit_count(part, p.encoding) <= limit
        part.encode("utf-16-be")  # strict: a part that ends in half a surrogate pair would raise


@pytest.mark.parametrize(("text", "encoding", "units", "sizes"), PUBLIC_VECTORS)
def test_public_vectors_give_the_documented_encoding_units_and_segments(
    text, encoding, units, sizes
):
    p = plan(text)
    assert (p.encoding, p.units, p.segments) == (encoding, units, sizes)
    check_plan(text, p)


def test_to_json_has_exactly_encoding_units_segments_in_that_order():
    assert plan("a" * 161).to_json() == '{"encoding": "GSM-7", "units": 161, "segments": [153, 8]}'
    assert list(json.loads(plan("ж").to_json())) == ["encoding", "units", "segments"]


@pytest.mark.parametrize("char", ["ç", "`", "“", "”", "‘", "’", "—", "\t", "\x00", "ÿ"])
def test_characters_libraries_mistake_for_gsm7_make_the_message_ucs2(char):
    assert not is_gsm7(char)
    assert plan("ok " + char).encoding == UCS2
    with pytest.raises(InvalidBody):
        encode_gsm7(char)


def test_capital_c_cedilla_is_gsm7_at_position_09():
    assert is_gsm7("Ç")
    assert encode_gsm7("Ç") == b"\x09"


@pytest.mark.parametrize("char", list(EXTENSION))
def test_each_extension_character_costs_two_septets(char):
    assert plan(char).units == 2
    assert encode_gsm7(char)[0] == 0x1B


def test_gsm0338_accepts_a_raw_esc_which_this_module_rejects():
    assert "\x1b".encode("gsm03.38") == b"\x1b"  # the library's wrong case, kept as proof
    assert not is_gsm7("\x1b")
    with pytest.raises(InvalidBody, match="ESC"):
        plan("Hello \x1b world")
    with pytest.raises(InvalidBody, match="ESC"):
        plan("жжж\x1b")


def test_tables_agree_with_gsm0338_on_every_bmp_character_except_esc():
    for cp in range(0x10000):
        ch = chr(cp)
        try:
            theirs = ch.encode("gsm03.38")
        except UnicodeError:
            theirs = None
        try:
            mine = encode_gsm7(ch)
        except InvalidBody:
            mine = None
        assert mine == theirs or ch == "\x1b", ch


def test_empty_body_is_invalid():
    with pytest.raises(InvalidBody, match="empty"):
        plan("")


def test_a_lone_surrogate_is_invalid():
    with pytest.raises(InvalidBody, match="surrogate"):
        plan("abc\ud83d")
    with pytest.raises(InvalidBody):
        encode_ucs2("\udc00x")


def test_an_escape_pair_is_never_split_so_the_count_exceeds_the_naive_ceiling():
    text = "a" * 152 + "€" + "a" * 152 + "€"  # 308 septets: ceil(308/153) == 3, but 4 are needed
    p = plan(text, max_segments=10)
    assert p.segments == [152, 153, 3]
    assert p.parts[0] == "a" * 152 and p.parts[1].startswith("€")


def test_a_surrogate_pair_is_never_split():
    text = "ж" * 66 + "😀" + "ж"  # 69 units -> single; add more to force a split
    assert plan(text).segments == [69]
    text = "ж" * 66 + "😀" + "ж" * 10
    p = plan(text)
    assert p.segments == [66, 12]
    assert p.parts[1].startswith("😀")


def test_more_segments_than_allowed_raises_body_too_large_which_is_an_invalid_body():
    with pytest.raises(BodyTooLarge):
        plan("a" * (153 * 10 + 1))
    assert len(plan("a" * 153 * 10).parts) == 10
    with pytest.raises(InvalidBody):
        plan("ж" * 71, max_segments=1)
    # 1530 septets fit 10 * 153, but 76 euro signs (152 septets) fill a segment: 11 are needed
    assert plan("€" * 765, max_segments=11).segments == [152] * 10 + [10]
    with pytest.raises(BodyTooLarge):
        plan("€" * 765, max_segments=10)


def test_max_segments_outside_1_to_255_is_a_programming_error():
    with pytest.raises(ValueError):
        plan("a", max_segments=0)
    with pytest.raises(ValueError):
        plan("a", max_segments=256)


def test_decode_gsm7_follows_the_spec_for_unknown_and_dangling_escapes():
    assert decode_gsm7(b"\x1b\x41") == "A"  # unknown extension code -> basic table character
    assert decode_gsm7(b"A\x1b") == "A "  # dangling escape -> space
    assert decode_gsm7(b"\x1b\x1b\x65") == " €"
    with pytest.raises(InvalidBody):
        decode_gsm7(b"\x80")


def test_known_packing_vector_hello_packs_to_the_textbook_octets():
    assert pack_septets(encode_gsm7("hellohello")).hex() == "e8329bfd4697d9ec37"
    assert unpack_septets(bytes.fromhex("e8329bfd4697d9ec37"), 10) == encode_gsm7("hellohello")


def test_unpack_rejects_a_count_the_data_cannot_hold():
    with pytest.raises(InvalidBody):
        unpack_septets(b"\x00" * 7, 9)
    with pytest.raises(ValueError):
        pack_septets(b"a", fill_bits=7)


def test_concat_udh_is_05_00_03_ref_total_seq_and_parses_back():
    udh = concat_udh(0xAB, 3, 2)
    assert udh.hex() == "050003ab0302"
    assert parse_udh(udh + b"payload") == (0xAB, 3, 2)


def test_parse_udh_reads_a_16_bit_reference_and_skips_other_elements():
    # UDHL 10: IE 0x24 (2 octets) then IE 0x08 (ref 0x1234, total 2, seq 1)
    assert parse_udh(bytes.fromhex("0a 24020101 080412340201") + b"x") == (0x1234, 2, 1)
    # UDHL 10 but the second IE claims 4 octets that run past the header
    assert parse_udh(bytes.fromhex("0a 0a0411223344 080412340201") + b"x") is None


@pytest.mark.parametrize(
    "data", [b"", b"\x05", b"\x05\x00\x03\x01\x02", bytes.fromhex("050003010203"), b"\x00abc"]
)
def test_parse_udh_returns_none_for_malformed_or_absent_concat_elements(data):
    assert parse_udh(data) is None


def test_concat_udh_rejects_out_of_range_fields():
    for args in [(256, 2, 1), (1, 2, 0), (1, 2, 3), (1, 256, 1)]:
        with pytest.raises(ValueError):
            concat_udh(*args)


@given(gsm_text)
def test_any_gsm_text_plans_as_gsm7_with_valid_parts(text):
    p = plan(text, max_segments=255)
    assert p.encoding == GSM7
    check_plan(text, p)


@given(any_text)
def test_any_unicode_text_plans_with_valid_parts(text):
    p = plan(text, max_segments=255)
    assert p.encoding == (GSM7 if set(text) <= set(GSM_CHARS) else UCS2)
    check_plan(text, p)


@given(wide_text)
def test_two_unit_characters_are_never_split_and_the_count_follows_the_greedy_rule(text):
    p = plan(text, max_segments=255)
    check_plan(text, p)
    if len(p.parts) > 1:
        concat = 153 if p.encoding == GSM7 else 67
        # every part but the last is full, or full but for a 2-unit character that did not fit
        assert all(size >= concat - 1 for size in p.segments[:-1])


@given(gsm_text, st.integers(min_value=0, max_value=6))
def test_gsm7_round_trips_unpacked_and_packed_with_any_fill(text, fill):
    septets = encode_gsm7(text)
    assert decode_gsm7(septets) == text
    packed = pack_septets(septets, fill)
    assert len(packed) == (7 * len(septets) + fill + 7) // 8
    assert unpack_septets(packed, len(septets), fill) == septets


@given(st.binary(max_size=300).map(lambda b: bytes(x & 0x7F for x in b)), st.integers(0, 6))
def test_any_septets_round_trip_through_packing(septets, fill):
    assert unpack_septets(pack_septets(septets, fill), len(septets), fill) == septets


@given(any_text)
def test_ucs2_round_trips(text):
    assert decode_ucs2(encode_ucs2(text)) == text


@given(st.binary(max_size=64))
def test_decoders_and_udh_parser_never_raise_anything_but_invalid_body(data):
    for decode in (decode_gsm7, decode_ucs2):
        try:
            decode(data)
        except InvalidBody:
            pass
    result = parse_udh(data)
    assert result is None or 1 <= result[2] <= result[1]


@given(st.integers(0, 255), st.integers(1, 255), st.data())
def test_concat_udh_round_trips(ref, total, data):
    seq = data.draw(st.integers(1, total))
    assert parse_udh(concat_udh(ref, total, seq)) == (ref, total, seq)


@given(st.text(alphabet=BASIC, min_size=1, max_size=1600))
def test_basic_only_gsm_text_splits_into_full_153_septet_segments(text):
    p = plan(text, max_segments=255)
    check_plan(text, p)
    assert p.units == len(text)
    assert all(size == 153 for size in p.segments[:-1])
