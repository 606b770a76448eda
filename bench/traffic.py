"""The bench's workload: which corridor each message goes to, its number and body, and when it is due.

Why separate from the runner: the same seeded workload must be reproducible across runs and paths
(embedded, http), and its arithmetic (shares, Poisson gaps, valid numbers) is testable without an engine.
Everything is generated up front in small pools so that choosing a message costs a few list lookups on the
hot path, never a phone-number validation.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

from bench.scenario import Corridor, MixEntry, Scenario
from engine.errors import ConfigError

NUMBERS_PER_COUNTRY = 256
BODIES_PER_MIX = 8
SENDER = "BENCH"
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)

# Printable GSM-7 basic-table characters (no escape-table ones, so length == septets).
_GSM_TEXT = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,!?"
# Cyrillic and Greek lowercase: outside GSM-7, so the whole body is UCS-2.
_UCS_TEXT = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя ςέύίόάήώ"


@dataclass(frozen=True)
class Planned:
    """One message the bench will send: its corridor index, destination, body and intended send time."""

    corridor: int
    to: str
    body: str
    due: float  # seconds after the start of the run


def valid_mobile_numbers(country: str, count: int, rng: random.Random) -> list[str]:
    """``count`` distinct valid mobile numbers (E.164) of ``country``, varied from its example number."""
    example = phonenumbers.example_number_for_type(country, PhoneNumberType.MOBILE)
    if example is None:
        raise ConfigError(f"no example mobile number for country {country!r}")
    national = str(example.national_number)
    found: dict[str, None] = {
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164): None
    }
    tail = min(4, len(national) - 2)
    for _ in range(count * 50):
        if len(found) >= count:
            break
        digits = "".join(rng.choice("0123456789") for _ in range(tail))
        candidate = phonenumbers.PhoneNumber(
            country_code=example.country_code, national_number=int(national[:-tail] + digits)
        )
        if _is_mobile_of(candidate, country):
            found[phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)] = None
    return list(found)


def _is_mobile_of(number: phonenumbers.PhoneNumber, country: str) -> bool:
    return (
        phonenumbers.number_type(number) in _MOBILE_TYPES
        and phonenumbers.is_valid_number(number)
        and phonenumbers.region_code_for_number(number) == country
    )


def make_body(entry: MixEntry, rng: random.Random) -> str:
    """A body of ``entry.length`` characters in ``entry.encoding``."""
    alphabet = _UCS_TEXT if entry.encoding == "UCS-2" else _GSM_TEXT
    return "".join(rng.choice(alphabet) for _ in range(entry.length))


class Workload:
    """A seeded stream of :class:`Planned` messages for a scenario's corridors at an offered rate."""

    def __init__(self, scenario: Scenario, seed: int | None = None) -> None:
        self.corridors: tuple[Corridor, ...] = scenario.corridors
        self._rng = random.Random(scenario.seed if seed is None else seed)
        self._weights = list(itertools.accumulate(c.share for c in self.corridors))
        numbers: dict[str, list[str]] = {}
        for c in self.corridors:
            if c.country not in numbers:
                numbers[c.country] = valid_mobile_numbers(c.country, NUMBERS_PER_COUNTRY, self._rng)
        self._numbers = [numbers[c.country] for c in self.corridors]
        self._bodies = [self._body_pool(c) for c in self.corridors]

    def _body_pool(self, corridor: Corridor) -> tuple[list[float], list[list[str]]]:
        weights = list(itertools.accumulate(m.share for m in corridor.mix))
        pools = [[make_body(m, self._rng) for _ in range(BODIES_PER_MIX)] for m in corridor.mix]
        return weights, pools

    def pick(self, due: float) -> Planned:
        """The next message: corridor by share, then a number and a body by the corridor's mix."""
        rng = self._rng
        weights = self._weights
        i = bisect.bisect(weights, rng.random() * weights[-1]) if len(weights) > 1 else 0
        mix_weights, pools = self._bodies[i]
        pool = pools[0]
        if len(pools) > 1:
            pool = pools[bisect.bisect(mix_weights, rng.random() * mix_weights[-1])]
        numbers = self._numbers[i]
        return Planned(
            i, numbers[int(rng.random() * len(numbers))], pool[int(rng.random() * len(pool))], due
        )

    def schedule(self, rate: float, duration_s: float, arrival: str) -> Iterator[Planned]:
        """Messages due in ``[0, duration_s)`` at ``rate`` per second, evenly spaced or Poisson."""
        for due in arrival_times(rate, duration_s, arrival, self._rng):
            yield self.pick(due)


def arrival_times(
    rate: float, duration_s: float, arrival: str, rng: random.Random
) -> Iterator[float]:
    """Intended send times in ``[0, duration_s)``: every ``1/rate`` s (fixed) or exponential gaps (poisson)."""
    if rate <= 0:
        raise ConfigError("rate must be > 0")
    if arrival == "fixed":
        n = int(rate * duration_s + 1e-9)
        for i in range(n):
            yield i / rate
        return
    if arrival != "poisson":
        raise ConfigError(f"unknown arrival process {arrival!r}")
    t = rng.expovariate(rate)
    while t < duration_s:
        yield t
        t += rng.expovariate(rate)
