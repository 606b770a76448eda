"""Tests for engine.numbering_plans: the compiled plans give phonenumbers' answers, number for number.

Every comparison runs the engine's own path without its cache (``_parse_cached.__wrapped__``: form check,
compiled plans, fallback) against ``_parse_with_phonenumbers`` (parse + is_valid_number + format_number +
region_code_for_number), outcome for outcome: the same Destination, or InvalidNumber with the same reason.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneMetadata, PhoneNumberDesc
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from engine import numbering_plans
from engine.errors import InvalidNumber
from engine.numbering_plans import classify
from engine.numbers import Destination, _parse_cached, _parse_with_phonenumbers

_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
          "voicemail", "fixed_line", "mobile")
_DIGITS = "0123456789"


def _descriptions() -> list[tuple[int, str, str, PhoneNumberDesc]]:
    """(country code, region, type, description) for every number type of every region's metadata."""
    found = []
    for code, regions in sorted(COUNTRY_CODE_TO_REGION_CODE.items()):
        for region in regions:
            metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
            for name in _TYPES:
                desc = getattr(metadata, name) if metadata else None
                if desc is not None and desc.national_number_pattern:
                    found.append((code, region, name, desc))
    return found


DESCRIPTIONS = _descriptions()
EXAMPLES = [f"+{code}{desc.example_number}" for code, _, _, desc in DESCRIPTIONS if desc.example_number]


def _outcome(parse, text: str) -> Destination | str:
    try:
        return parse(text)
    except InvalidNumber as exc:
        return f"InvalidNumber: {exc}"


def _assert_same_answer(text: str) -> None:
    assert _outcome(_parse_cached.__wrapped__, text) == _outcome(_parse_with_phonenumbers, text), text


def _variants(text: str) -> list[str]:
    """The number, its last digit changed, one digit fewer and one more (within 15 digits)."""
    last = str((int(text[-1]) + 1) % 10)
    return [v for v in (text, text[:-1] + last, text[:-1], text + "5") if 2 <= len(v) <= 16]


def test_the_metadata_has_example_numbers_of_every_region_to_compare_against():
    regions = {region for _, region, _, desc in DESCRIPTIONS if desc.example_number}
    assert regions == {region for names in COUNTRY_CODE_TO_REGION_CODE.values() for region in names}
    assert len(EXAMPLES) > 1000


def test_every_example_number_of_every_region_and_type_and_its_neighbours_get_phonenumbers_answer():
    for example in EXAMPLES:
        for text in _variants(example):
            _assert_same_answer(text)


def test_the_compiled_plans_decide_every_example_number_without_phonenumbers():
    undecided = [text for text in EXAMPLES if classify(text[1:]) is None]
    assert undecided == []


@st.composite
def numbers_of_a_region(draw: st.DrawFn) -> str:
    """A number built from one region's metadata: its pattern, its example varied, or random digits."""
    code, _, _, desc = draw(st.sampled_from(DESCRIPTIONS))
    room = 15 - len(str(code))
    how = draw(st.sampled_from(["pattern", "example", "digits"]))
    if how == "pattern":
        nsn = draw(st.from_regex(desc.national_number_pattern, fullmatch=True, alphabet=_DIGITS))
    elif how == "example" and desc.example_number:
        example = desc.example_number
        keep = draw(st.integers(0, len(example)))
        nsn = example[:keep] + draw(st.text(_DIGITS, max_size=len(example) - keep + 1))
    else:
        nsn = draw(st.text(_DIGITS, min_size=0, max_size=room))
    return f"+{code}{nsn[:room]}"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(numbers_of_a_region())
def test_numbers_built_from_every_regions_metadata_get_phonenumbers_answer(text):
    _assert_same_answer(text)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"\+[0-9]{1,15}", fullmatch=True))
def test_random_digit_strings_get_phonenumbers_answer(text):
    _assert_same_answer(text)


@pytest.mark.parametrize(
    ("text", "country_code", "region"),
    [
        ("+447911123456", 44, "GG"),  # +44 7911 1x: Guernsey, not GB
        ("+447624123456", 44, "IM"),  # named by leading digits
        ("+447400123456", 44, "GB"),
        ("+12015550123", 1, "US"),
        ("+16135550123", 1, "CA"),  # NANP without leading digits: found by validation after US
        ("+18762101234", 1, "JM"),  # NANP by leading digits (876)
        ("+17872345678", 1, "PR"),
        ("+18092345678", 1, "DO"),
        ("+77012345678", 7, "KZ"),
        ("+79123456789", 7, "RU"),
        ("+4779012345", 47, "SJ"),
        ("+390669812345", 39, "VA"),
        ("+358181234567", 358, "AX"),
        ("+61891621234", 61, "CC"),
        ("+80012345678", 800, "001"),  # non-geographic: International Freephone
    ],
)
def test_a_shared_country_code_maps_each_number_to_its_own_region(text, country_code, region):
    assert classify(text[1:]) == (country_code, region)
    _assert_same_answer(text)


@pytest.mark.parametrize(
    "text",
    [
        "+494949484365",  # a DE type pattern matches, the general description does not: invalid
        "+781089974150900",  # a 14-digit national number (the longest E.164 allows), valid in RU
    ],
)
def test_corners_of_the_metadata_get_phonenumbers_answer_from_the_compiled_plans(text):
    assert classify(text[1:]) is not None
    _assert_same_answer(text)


def test_a_number_starting_with_a_national_prefix_digit_that_parse_keeps_is_decided_here():
    # RU's national prefix for parsing is 8; parse keeps it when the rest would not be a number.
    assert classify("78121234567") == (7, "RU")


def test_a_trunk_prefix_that_parse_would_strip_is_left_to_phonenumbers_and_refused():
    assert classify("49015112345678") is None
    with pytest.raises(InvalidNumber, match="canonical E.164"):
        _parse_cached.__wrapped__("+49015112345678")


def test_a_number_that_parse_would_rewrite_is_left_to_phonenumbers_and_refused():
    assert classify("2612012345") is None  # a 7-digit Malagasy number: parse prefixes it with 20
    with pytest.raises(InvalidNumber, match="canonical E.164"):
        _parse_cached.__wrapped__("+2612012345")


@pytest.mark.parametrize("digits", ["0123456789", "999123456", "44", "4", "1"])
def test_no_country_code_or_too_few_digits_after_it_is_left_to_phonenumbers(digits):
    assert classify(digits) is None


def test_a_country_code_whose_metadata_cannot_be_mirrored_is_left_to_phonenumbers(monkeypatch):
    monkeypatch.setattr(numbering_plans, "_compile", lambda country_code: None)
    monkeypatch.setitem(numbering_plans._PLANS, "49", numbering_plans._LazyPlan("49"))
    assert classify("4915112345678") is None
    assert classify("4915112345678") is None  # and stays so
    assert _parse_cached.__wrapped__("+4915112345678") == Destination(
        "+4915112345678", "4915112345678", 49, "DE"
    )
