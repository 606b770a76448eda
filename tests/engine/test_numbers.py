"""Tests for engine.numbers: strict E.164 destinations over phonenumbers."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import InvalidNumber
from engine.numbers import Destination, parse_destination

VALID = [
    ("+4915112345678", 49, "DE"),
    ("+6581234567", 65, "SG"),
    ("+5511961234567", 55, "BR"),
    ("+447400123456", 44, "GB"),
    ("+12015550123", 1, "US"),
    ("+447911123456", 44, "GG"),
]


@pytest.mark.parametrize(("text", "country_code", "region"), VALID)
def test_valid_mobiles_parse_to_e164_digits_country_code_and_region(text, country_code, region):
    dest = parse_destination(text)
    assert dest == Destination(text, text[1:], country_code, region)


def test_a_guernsey_number_under_44_has_region_gg_not_gb():
    assert parse_destination("+447911123456").region == "GG"


def test_destination_is_frozen():
    dest = parse_destination("+4915112345678")
    with pytest.raises(dataclasses.FrozenInstanceError):
        dest.e164 = "+1"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("4915112345678", "start with '+'"),
        ("004915112345678", "start with '+'"),
        ("+49 151 12345678", "digits only"),
        ("+49-151-12345678", "digits only"),
        ("+49151abc45678", "digits only"),
        ("+４９15112345678", "digits only"),  # full-width digits are not ASCII digits
        ("+4915112345678 ext. 12", "extension"),
        ("+4915112345678;ext=12", "extension"),
        ("+4915112345678x12", "extension"),
        ("+4915112345678#12", "extension"),
        ("+" + "4" * 16, "more than 15 digits"),
        ("+" + "4" * 17, "more than 15 digits"),
        ("+", "digits only"),
        ("+0123456789", "country code"),
        ("+999123456", "country code"),
        ("+4915", "not a valid number"),
        ("+447700900123", "not a valid number"),  # Ofcom drama range: not allocated
        ("+49015112345678", "canonical E.164"),  # trunk 0 after the country code
    ],
)
def test_malformed_or_invalid_destinations_raise_invalid_number_saying_why(text, reason):
    with pytest.raises(InvalidNumber, match=re.escape(reason)):
        parse_destination(text)


def test_sixteen_and_seventeen_digit_strings_that_phonenumbers_would_parse_are_rejected():
    for text in ("+4915112345678901", "+49151123456789012"):
        with pytest.raises(InvalidNumber, match="15 digits"):
            parse_destination(text)


def test_a_non_string_raises_invalid_number():
    with pytest.raises(InvalidNumber):
        parse_destination(4915112345678)  # type: ignore[arg-type]


def test_repeated_parses_return_the_cached_equal_result():
    assert parse_destination("+6581234567") is parse_destination("+6581234567")


def test_an_invalid_number_raises_on_every_call_not_only_the_first():
    for _ in range(2):
        with pytest.raises(InvalidNumber):
            parse_destination("+447700900123")


@given(st.text(max_size=20) | st.from_regex(r"\+[0-9]{1,18}", fullmatch=True))
def test_any_string_parses_to_a_consistent_destination_or_raises_invalid_number(text):
    try:
        dest = parse_destination(text)
    except InvalidNumber:
        return
    assert dest.e164 == "+" + dest.digits == text
    assert dest.digits.isascii() and dest.digits.isdigit() and len(dest.digits) <= 15
    assert dest.digits.startswith(str(dest.country_code))
    assert dest.region


@given(st.sampled_from([t for t, _, _ in VALID]), st.sampled_from([" ", "-", "(", ")", "."]))
def test_formatting_characters_anywhere_are_rejected(text, junk):
    for i in range(1, len(text) + 1):
        with pytest.raises(InvalidNumber):
            parse_destination(text[:i] + junk + text[i:])
