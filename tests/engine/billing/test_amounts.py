"""USD amounts (engine/billing/amounts.py): the one reader of money, shared by the embedding API and both
HTTP APIs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.billing.amounts import LIMIT_MICRO, parse_usd
from engine.errors import InputError

MICROS = st.integers(-(LIMIT_MICRO - 1), LIMIT_MICRO - 1).filter(bool)


def _plain(micro: int) -> str:
    """``micro`` as a plain decimal string with 0-6 decimals, as a client would write it."""
    text = f"{abs(micro) // 1_000_000}.{abs(micro) % 1_000_000:06d}".rstrip("0").rstrip(".")
    return ("-" if micro < 0 else "") + text


@given(MICROS)
def test_a_plain_decimal_reads_as_its_exact_micro_usd(micro):
    assert parse_usd(_plain(micro), allow_negative=True) == micro
    assert parse_usd(Decimal(micro) / 1_000_000, allow_negative=True) == micro


@pytest.mark.parametrize("text", ["1e3", "+5", " 5", "5 ", "5.", ".5", "1_000", "NaN", "Infinity",
                                  "0x10", "", "1.0000001", "1000000000", "100000000000000000000"])
def test_what_a_client_in_another_language_may_read_otherwise_is_refused(text):
    with pytest.raises(InputError):
        parse_usd(text, allow_negative=True)


def test_floats_and_signs_follow_the_caller():
    with pytest.raises(InputError, match="never floats"):
        parse_usd(5.0)
    with pytest.raises(InputError, match="positive"):
        parse_usd("-1")
    with pytest.raises(InputError, match="positive"):
        parse_usd("0")
    assert parse_usd("0", allow_zero=True) == 0
