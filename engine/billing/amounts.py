"""USD amounts as integer micro-USD: the one way every entry point reads money.

Money is integer micro-USD everywhere, never a float. An amount is given as a plain decimal string
(``"10.00"``, ``"-2.5"``), an int (whole USD) or a ``Decimal``; at most 6 decimals (a micro-USD) and below a
billion USD, so every sum the ledger keeps fits its 64-bit fields. Exponents (``"1e3"``), a ``+`` sign,
spaces and underscores are refused: Python's ``Decimal`` reads them, a client in another language may not,
and the HTTP APIs publish the plain form (``engine.http.control_schemas``), which the embedding API now
shares.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.errors import InputError

MICRO = 1_000_000
LIMIT_MICRO = 10**9 * MICRO  # a billion USD: amounts stay below it
_PLAIN = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def parse_usd(usd: Any, *, allow_zero: bool = False, allow_negative: bool = False) -> int:
    """``usd`` as integer micro-USD; ``InputError`` naming the rule it breaks. Positive unless
    ``allow_zero`` / ``allow_negative`` say otherwise."""
    if isinstance(usd, float | bool) or not isinstance(usd, str | int | Decimal):
        raise InputError("amounts are given as strings or integers, never floats")
    if isinstance(usd, str) and not _PLAIN.fullmatch(usd):
        raise InputError(f"not an amount: {usd[:40]!r} (a plain decimal such as \"10.00\")")
    try:
        micro = Decimal(usd) * MICRO
    except InvalidOperation:
        raise InputError(f"not an amount: {str(usd)[:40]!r}") from None
    if not micro.is_finite() or micro != micro.to_integral_value() or abs(micro) >= LIMIT_MICRO:
        raise InputError("an amount is a number of USD with at most 6 decimals (below a billion)")
    if (micro == 0 and not allow_zero) or (micro < 0 and not allow_negative):
        raise InputError("the amount must be " + ("positive" if not allow_negative else "non-zero"))
    return int(micro)
