"""Validate a destination number and turn it into what the carriers need (E.164 digits, TON=1 NPI=1).

A destination is accepted only in strict E.164 form: ``+`` followed by 1..15 ASCII digits, nothing else (no
spaces, dashes, letters or extensions), so what the customer meant is never a guess. The number is then
checked against libphonenumber's metadata (the ``phonenumbers`` package), which also names its region.
``phonenumbers.parse`` is more lenient than E.164 (17 digits, extensions, a national trunk prefix after the
country code), so those are rejected here.

Only numbers ``phonenumbers.is_valid_number`` rejects are refused: the number *type* (mobile, fixed line,
VoIP...) is not checked, because many fixed-line ranges receive SMS and the metadata often cannot tell.

How, and what it costs: ``engine.numbering_plans`` holds that metadata compiled per country code and gives
``phonenumbers``' own verdict in about 2 µs per new number (``python -m bench.number_cost``), where
``phonenumbers`` costs about 15 µs for traffic to a few countries and about 200 µs across all of them.
What the compiled plans leave undecided goes to ``phonenumbers`` itself (:func:`_parse_with_phonenumbers`):
a missing country code, too few digits after it, or a national prefix ``parse`` would strip or rewrite —
inputs that are refused either way; measured, no valid number takes that path (see that module). The
tests check the two agree, outcome for outcome, over every region's metadata.

Pure (no I/O). Valid results are also cached (bounded LRU): repeated numbers cost a dictionary look-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from engine.errors import InvalidNumber
from engine.numbering_plans import classify

__all__ = ["Destination", "parse_destination"]

MAX_DIGITS = 15  # ITU-T E.164
CACHE_SIZE = 65536

_E164 = re.compile(r"\+[0-9]+")
_EXTENSION = re.compile(r"(?i)(ext|#|;|[0-9 .]x ?[0-9])")  # "ext. 12", "x12", "#12", ";ext=12"
_NOT_VALID = "destination is not a valid number for its country code"
_PARSE_ERRORS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "destination has no valid country code",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "destination is too short",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "destination is too short",
    phonenumbers.NumberParseException.TOO_LONG: "destination is too long",
}


@dataclass(frozen=True, slots=True)
class Destination:
    """A validated destination number."""

    e164: str  # "+4915112345678"
    digits: str  # "4915112345678": what SMPP sends, TON=1 (international) NPI=1 (E.164)
    country_code: int  # 49
    region: str  # ISO 3166 alpha-2 from phonenumbers, e.g. "DE" ("GG" for +447911123456);
    # "001" for non-geographic country codes (+800, +881 satellite...), as phonenumbers names them


def parse_destination(text: str) -> Destination:
    """Validate ``text`` as a strict E.164 number; raise :class:`InvalidNumber` saying why not.

    Rejected: anything not ``+`` then digits, more than 15 digits, an extension, a national trunk
    prefix after the country code (``+49 0151...``), and numbers ``phonenumbers`` finds invalid.
    Number types are not checked (see the module docstring).
    """
    if not isinstance(text, str):
        raise InvalidNumber("destination must be a string")
    return _parse_cached(text)


@lru_cache(maxsize=CACHE_SIZE)
def _parse_cached(text: str) -> Destination:
    """The strict form first (cheap), then the compiled plans; ``phonenumbers`` for what they leave."""
    digits = text[1:]
    if not (text[:1] == "+" and digits.isascii() and digits.isdigit() and len(digits) <= MAX_DIGITS):
        raise _form_error(text)
    verdict = classify(digits)
    if verdict is None:
        return _parse_with_phonenumbers(text)
    country_code, region = verdict
    if region is None:
        raise InvalidNumber(_NOT_VALID)
    return Destination(text, digits, country_code, region)


def _form_error(text: str) -> InvalidNumber:
    """Why ``text`` is not ``+`` followed by 1..15 ASCII digits."""
    if not text:
        return InvalidNumber("destination is empty")
    if not text.startswith("+"):
        return InvalidNumber("destination must start with '+' and the country code (E.164)")
    if not _E164.fullmatch(text):
        if _EXTENSION.search(text):
            return InvalidNumber("destination must not carry an extension")
        return InvalidNumber(
            "destination must be '+' followed by digits only (no spaces, dashes or letters)"
        )
    return InvalidNumber(f"destination has more than {MAX_DIGITS} digits")


def _parse_with_phonenumbers(text: str) -> Destination:
    """The reference path: ``phonenumbers`` parses, validates, formats and names the region.

    Used for what :func:`engine.numbering_plans.classify` leaves undecided, and by the tests as the
    answer the fast path must agree with. ``text`` is already ``+`` and 1..15 ASCII digits.
    """
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        reason = _PARSE_ERRORS.get(exc.error_type, "destination is not a phone number")
        raise InvalidNumber(reason) from None
    if number.extension:
        raise InvalidNumber("destination must not carry an extension")
    if not phonenumbers.is_valid_number(number):
        raise InvalidNumber(_NOT_VALID)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if e164 != text:
        raise InvalidNumber(
            "destination is not in canonical E.164 form (a national trunk prefix such as 0 "
            "after the country code?)"
        )
    region = phonenumbers.region_code_for_number(number)
    if not region:
        raise InvalidNumber("destination has no region")
    return Destination(e164, e164[1:], number.country_code, region)
