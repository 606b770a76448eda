"""The bench's workload: which corridor each message goes to, its number and body, and when it is due.

Why separate from the runner: the same seeded workload must be reproducible across runs and paths
(embedded, http), and its arithmetic (shares, Poisson gaps, valid numbers) is testable without an engine.
Everything is generated up front so that choosing a message costs a few list lookups on the hot path,
never a phone-number validation. By default every message goes to a **distinct** valid number (real traffic
does: a validator's cache must not make the engine look cheaper than it is); ``distinct_numbers=False``
reuses a small pool per country instead (soak runs, where millions of messages would need millions of
numbers prepared).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

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


class Planned(NamedTuple):
    """One message the bench will send: its corridor index, destination, body and intended send time.

    (A named tuple: one is built per message on the sending thread, and it is the cheapest record.)
    """

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


def distinct_mobile_numbers(country: str, rng: random.Random) -> Iterator[str]:
    """An endless stream of distinct valid mobile numbers (E.164) of ``country``.

    Walks the last six digits of the country's example mobile number upwards from a random start
    (wrapping once), keeping only numbers ``phonenumbers`` says are valid mobile numbers of ``country``.
    """
    example = phonenumbers.example_number_for_type(country, PhoneNumberType.MOBILE)
    if example is None:
        raise ConfigError(f"no example mobile number for country {country!r}")
    national = str(example.national_number)
    tail = min(6, len(national) - 2)
    head, span = national[:-tail], 10**tail
    start = rng.randrange(span)
    for i in range(span):
        candidate = phonenumbers.PhoneNumber(
            country_code=example.country_code,
            national_number=int(f"{head}{(start + i) % span:0{tail}d}"),
        )
        if _is_mobile_of(candidate, country):
            yield phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
    raise ConfigError(f"ran out of distinct numbers for {country!r} ({span} tried)")


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
    """A seeded stream of :class:`Planned` messages for a scenario's corridors at an offered rate.

    With ``distinct_numbers`` (the default) call :meth:`reserve` before a timed run, so the numbers it
    will use are validated beforehand; a number needed beyond the reservation is made on the spot and
    counted in ``numbers_made_late``.
    """

    def __init__(self, scenario: Scenario, seed: int | None = None, *,
                 distinct_numbers: bool = True) -> None:
        self.corridors: tuple[Corridor, ...] = scenario.corridors
        self.distinct_numbers = distinct_numbers
        self.numbers_made_late = 0
        self._rng = random.Random(scenario.seed if seed is None else seed)
        self._weights = list(itertools.accumulate(c.share for c in self.corridors))
        countries = list(dict.fromkeys(c.country for c in self.corridors))
        self._country_share = {k: sum(c.share for c in self.corridors if c.country == k)
                               / self._weights[-1] for k in countries}
        if distinct_numbers:
            self._fresh = {k: distinct_mobile_numbers(k, self._rng) for k in countries}
            self._ready: dict[str, deque[str]] = {k: deque() for k in countries}
            self._numbers = [self._ready[c.country] for c in self.corridors]
        else:
            pools = {k: valid_mobile_numbers(k, NUMBERS_PER_COUNTRY, self._rng) for k in countries}
            self._numbers = [pools[c.country] for c in self.corridors]
        self._bodies = [self._body_pool(c) for c in self.corridors]

    def reserve(self, messages: int) -> None:
        """Validate enough distinct numbers for about ``messages`` more picks (no-op with a pool)."""
        if not self.distinct_numbers:
            return
        for country, share in self._country_share.items():
            ready, fresh = self._ready[country], self._fresh[country]
            want = int(messages * share * 1.1) + 64
            ready.extend(itertools.islice(fresh, max(0, want - len(ready))))

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
        if self.distinct_numbers:
            to = numbers.popleft() if numbers else self._made_late(self.corridors[i].country)
        else:
            to = numbers[int(rng.random() * len(numbers))]
        return Planned(i, to, pool[int(rng.random() * len(pool))], due)

    def _made_late(self, country: str) -> str:
        self.numbers_made_late += 1
        return next(self._fresh[country])

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
