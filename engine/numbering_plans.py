"""libphonenumber's numbering plans, compiled once per country code: an E.164 verdict in about 1 µs.

Why: ``phonenumbers.parse`` + ``is_valid_number`` walk the metadata and fetch every pattern through
``re``'s compile cache (512 entries) on each call: about 15 µs per number for traffic to a few countries,
and about 200 µs once the traffic spans enough countries for that cache to thrash
(``python -m bench.number_cost``). Here the same metadata (``phonenumbers.data``: one ``PhoneMetadata``
per region, with ``general_desc`` and the per-type descriptions, the regions of each country calling code
and their leading digits) is compiled on the first number of each country code into one pattern per
region and national-number length.

:func:`classify` answers, for the digits after the ``+``, exactly what ``phonenumbers.parse``,
``is_valid_number``, ``format_number(E164)`` and ``region_code_for_number`` together decide:

* the country calling code is the shortest prefix (1 to 3 digits) that is one, as ``parse`` takes it;
* a number is valid for a region when its national significant number (NSN) fits the general description
  (possible lengths and pattern) and one of the types ``phonenumbers`` tries (premium rate, toll free,
  shared cost, VoIP, personal, pager, UAN, voicemail, fixed line, mobile), each with its own possible
  lengths — mobile only when its pattern differs from fixed line's, as ``phonenumbers`` does. The number
  *type* is not part of the answer: any valid type is valid;
* under a code shared by several regions (+1, +7, +44, +47, +61, +262, +590...), the region is the first
  in ``phonenumbers``' order whose leading digits match the NSN or, for a region without leading digits,
  for which the NSN is valid; the number is valid if it is valid there. So ``+447911123456`` is GG,
  ``+18762101234`` is JM and ``+16135550123`` is CA.

It answers ``None`` — ask ``phonenumbers`` — where ``parse`` does more than split the country code off:
no known country code, fewer than two digits after it, or a start that ``parse`` strips or rewrites as a
national prefix (``+49 0151...``, a 7-digit Malagasy number). ``parse`` then either raises or changes the
digits, so the input is refused either way and only the reason comes from ``phonenumbers``. (It would
also answer ``None`` for a whole country code whose metadata held something not mirrored here, such as
leading-digit patterns with groups of their own: none does in this metadata.) Measured
(2026-11-30, phonenumbers 9.0.43): no valid number falls back — none of the 23,800 mobile numbers of 236
regions in ``bench.number_cost``, none of the 1,141 example numbers of every region and type, none of
13,800 valid variations of them. About a fifth of random 8-15 digit strings do, nearly all for want of a
country code (a leading 0, an unassigned code).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from phonenumbers import PhoneMetadata, PhoneNumberDesc
from phonenumbers.phonenumberutil import (
    COUNTRY_CODE_TO_REGION_CODE,
    REGION_CODE_FOR_NON_GEO_ENTITY,
)

__all__ = ["Verdict", "classify"]

MAX_NSN_DIGITS = 14  # 15 E.164 digits minus a country code of at least one
MIN_NSN_DIGITS = 2  # phonenumbers' _MIN_LENGTH_FOR_NSN: parse() raises below it

# The number types phonenumbers' _number_type_helper tries after the general description. A number is
# valid for a region when any of them matches; mobile is added only when it differs from fixed line.
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)

Verdict = tuple[int, str | None]  # (country code, region); region None: not a valid number


def classify(digits: str) -> Verdict | None:
    """``(country code, region)`` if ``+digits`` is a valid number, ``(country code, None)`` if
    ``phonenumbers`` finds it invalid for its country code, ``None`` if only ``phonenumbers.parse`` can
    say (see the module docstring). ``digits`` must be 1..15 ASCII digits: the caller checks the form.
    """
    # As parse(): the shortest prefix that is a country code wins (no code starts with 0).
    plan = _PLANS.get(digits[:1]) or _PLANS.get(digits[:2]) or _PLANS.get(digits[:3])
    if plan is None:
        return None
    nsn = digits[plan.code_digits :]
    if len(nsn) < MIN_NSN_DIGITS:
        return None
    return plan.classify(nsn)


class _RegionPlan:
    """One region's validity test: per NSN length, one pattern for "general description and a type"."""

    __slots__ = ("region", "leading_digits", "by_length")

    def __init__(self, region: str, metadata: PhoneMetadata) -> None:
        self.region = region
        self.leading_digits = metadata.leading_digits
        self.by_length = _patterns_by_length(metadata)

    def is_valid(self, nsn: str) -> bool:
        pattern = self.by_length.get(len(nsn))
        return pattern is not None and pattern.match(nsn) is not None


class _NationalPrefix:
    """What ``parse`` does with a national prefix at the start of the digits after the country code.

    Mirrors phonenumbers' ``_maybe_strip_national_prefix_carrier_code`` and the length test ``parse``
    applies to its result (with the metadata of the code's main region) only as far as telling whether
    the digits come out unchanged: when they do not, the number is not in canonical form and which error
    to report is ``parse``'s business.
    """

    __slots__ = ("literal", "pattern", "transform", "general", "possible", "local_only")

    def __init__(self, main: PhoneMetadata) -> None:
        prefix = main.national_prefix_for_parsing
        self.literal = prefix if prefix.isdigit() else None  # "0", "8": startswith() is enough to rule out
        self.pattern = re.compile(prefix)
        self.transform = main.national_prefix_transform_rule or ""
        general = main.general_desc
        pattern = general.national_number_pattern if general is not None else None
        self.general = re.compile(pattern) if pattern else None
        self.possible = tuple(general.possible_length) if general is not None else ()
        self.local_only = tuple(general.possible_length_local_only) if general is not None else ()

    def rewrites(self, nsn: str) -> bool:
        """Whether ``parse`` would strip or rewrite the start of ``nsn`` (True also when unsure)."""
        if self.literal is not None and not nsn.startswith(self.literal):
            return False
        match = self.pattern.match(nsn)
        if match is None:
            return False
        groups = match.groups()
        if self.transform and (not groups or groups[-1] is not None):
            if not groups:
                return True  # phonenumbers itself fails on such metadata: let it say so
            stripped = match.expand(self.transform) + nsn[match.end() :]
        else:
            stripped = nsn[match.end() :]
        if stripped == nsn:
            return False
        if self._viable(nsn) and not self._viable(stripped):
            return False  # parse keeps a viable number that stripping would spoil
        if not self.possible:
            return True
        length = len(stripped)  # parse keeps the stripped digits only if their length is possible
        return length not in self.local_only and (
            length in self.possible or length > self.possible[-1]
        )

    def _viable(self, digits: str) -> bool:
        return self.general is not None and self.general.fullmatch(digits) is not None


class _CountryPlan:
    """Every region of one country calling code, in ``phonenumbers``' order, and its national prefix."""

    __slots__ = (
        "country_code",
        "code_digits",
        "national_prefix",
        "regions",
        "only",
        "unled",
        "leading",
        "leading_index",
    )

    def __init__(
        self, country_code: int, regions: Sequence[_RegionPlan], main: PhoneMetadata
    ) -> None:
        self.country_code = country_code
        self.code_digits = len(str(country_code))
        self.national_prefix = _NationalPrefix(main) if main.national_prefix_for_parsing else None
        self.regions = tuple(regions)
        self.only = self.regions[0] if len(self.regions) == 1 else None
        # Regions without leading digits: region_code_for_number tries them by full validation.
        self.unled = tuple((i, plan) for i, plan in enumerate(self.regions) if not plan.leading_digits)
        # Regions with leading digits, tried as one alternation: re tries alternatives in order, so the
        # group that matched is the first such region (_compile refuses patterns with groups of their own).
        led = [i for i, plan in enumerate(self.regions) if plan.leading_digits]
        self.leading_index = tuple(led)
        self.leading = (
            re.compile("|".join(f"({self.regions[i].leading_digits})" for i in led)) if led else None
        )

    def classify(self, nsn: str) -> Verdict | None:
        """The verdict on this code's national significant number ``nsn`` (see :func:`classify`)."""
        if self.national_prefix is not None and self.national_prefix.rewrites(nsn):
            return None
        only = self.only
        if only is not None:  # most codes: one region, one pattern for this length (inlined is_valid)
            pattern = only.by_length.get(len(nsn))
            valid = pattern is not None and pattern.match(nsn) is not None
            return self.country_code, only.region if valid else None
        return self.country_code, self._shared_region_of(nsn)

    def _shared_region_of(self, nsn: str) -> str | None:
        """The region ``region_code_for_number`` names, if the number is valid there; else None."""
        first_led = len(self.regions)
        if self.leading is not None:
            match = self.leading.match(nsn)
            if match is not None:
                first_led = self.leading_index[match.lastindex - 1]
        for index, plan in self.unled:
            if index >= first_led:
                break
            if plan.is_valid(nsn):
                return plan.region
        if first_led < len(self.regions) and self.regions[first_led].is_valid(nsn):
            return self.regions[first_led].region
        return None


class _LazyPlan:
    """Stands for a country code's plan until its first number: compiles it then and takes its place."""

    __slots__ = ("code", "code_digits")

    def __init__(self, code: str) -> None:
        self.code = code
        self.code_digits = len(code)

    def classify(self, nsn: str) -> Verdict | None:
        plan = _compile(int(self.code)) or _UndecidedPlan(self.code)
        _PLANS[self.code] = plan  # two threads may both compile: they store equal plans
        return plan.classify(nsn)


class _UndecidedPlan(_LazyPlan):
    """A country code whose metadata holds what this module does not mirror: phonenumbers decides."""

    __slots__ = ()

    def classify(self, nsn: str) -> Verdict | None:
        return None


def _compile(country_code: int) -> _CountryPlan | None:
    """The plan of ``country_code``, or None where its metadata is not what this module mirrors."""
    regions = COUNTRY_CODE_TO_REGION_CODE[country_code]
    main = PhoneMetadata.metadata_for_region_or_calling_code(country_code, regions[0])
    plans = []
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
        if metadata is None:
            continue  # region_code_for_number skips a region without metadata too
        if region != REGION_CODE_FOR_NON_GEO_ENTITY and metadata.country_code != country_code:
            return None
        plans.append(_RegionPlan(region, metadata))
    if main is None or not plans:
        return None
    plan = _CountryPlan(country_code, plans, main)
    if plan.leading is not None and plan.leading.groups != len(plan.leading_index):
        return None
    return plan


def _patterns_by_length(metadata: PhoneMetadata) -> dict[int, re.Pattern[str]]:
    """NSN length -> one anchored pattern: the general description's and any number type's."""
    general = metadata.general_desc
    descs = [getattr(metadata, name) for name in _TYPES]
    if not metadata.same_mobile_and_fixed_line_pattern:
        descs.append(metadata.mobile)
    patterns = {}
    for length in range(MIN_NSN_DIGITS, MAX_NSN_DIGITS + 1):
        if not _desc_allows(general, length):
            continue
        types = [desc.national_number_pattern for desc in descs if _desc_allows(desc, length)]
        if types:
            alternatives = "|".join(f"(?:{p})" for p in types)
            patterns[length] = re.compile(
                rf"(?=(?:{general.national_number_pattern})\Z)(?:{alternatives})\Z"
            )
    return patterns


def _desc_allows(desc: PhoneNumberDesc | None, length: int) -> bool:
    """phonenumbers' _is_number_matching_desc without the pattern: a description of this length."""
    return (
        desc is not None
        and bool(desc.national_number_pattern)
        and (not desc.possible_length or length in desc.possible_length)
    )


# Country code (its digits) -> its plan: a _LazyPlan until the first number with that code.
_PLANS: dict[str, _LazyPlan | _CountryPlan] = {
    str(code): _LazyPlan(str(code)) for code in COUNTRY_CODE_TO_REGION_CODE
}
