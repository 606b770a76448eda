"""The routing table: destination -> POP and ordered carrier candidates, and the rate card. Pure, no I/O.

A route matches a destination by number prefix (``"+4915"``) or by ISO country (``"DE"``); the most
specific match wins (a prefix beats a country, a longer prefix beats a shorter one). Several equally
specific routes (say one per POP) are chosen between by their ``weight``. Within a route, carriers are
tried in ``priority`` order (lowest first); carriers of equal priority are ordered by a weighted draw, so
traffic spreads by weight while failover still walks every candidate.

>>> t = RoutingTable.from_document({"routes": [{"match": ["DE"], "pop": "fra",
...     "carriers": [{"carrier": "c1"}]}], "rates": {"default": 50000}}, pops={"fra"}, carriers={"c1": "fra"})
>>> t.resolve("+4915112345678", "DE").pop
'fra'
>>> t.price("DE", segments=2)
100000
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any

from phonenumbers import SUPPORTED_REGIONS

from engine.errors import ConfigError, NoRoute
from engine.typed_tables import Range

# A destination's country is libphonenumber's region of its number (engine/numbers.py), so a route or a
# rate keyed by any other two letters (``UK`` for GB, ``EU``) could never match: refused, not ignored.
_MISNAMED = {"UK": "GB", "EL": "GR"}
# A rate or a carrier's cost per segment: 1,000 USD is beyond any SMS price, and times the most segments
# a message has (255) it stays far below the billion USD every ledger amount is held under
# (engine.billing.amounts); 10**18 would overflow the ledger's 64-bit sums at the first message.
MAX_MICRO_USD_PER_SEGMENT = 1_000_000_000
# A priority is a rank (lowest first) and a weight a share; operators write small numbers. Bounded so a
# typo like 10**18 is refused by name: such a weight starves its siblings in the float draw, and an int
# past 64 bits cannot cross msgpack (a cluster's table push to its workers would fail, not the edit).
PRIORITY = Range(0, 10_000)
WEIGHT = Range(1, 1_000_000)


def _unknown_region(code: str) -> str | None:
    """Why ``code`` (two ASCII letters) names no destination, or None if numbers can have it."""
    if code.upper() in SUPPORTED_REGIONS:
        return None
    hint = _MISNAMED.get(code.upper())
    return ("no number belongs to it (countries are libphonenumber's ISO 3166 alpha-2 regions"
            + (f"; did you mean {hint}?)" if hint else ")"))


@dataclass(frozen=True)
class CarrierCandidate:
    carrier: str
    priority: int = 1
    weight: int = 1
    cost_micro_usd: int = 0


@dataclass(frozen=True)
class Route:
    matches: tuple[str, ...]  # "+<digits>" prefixes and/or ISO regions
    pop: str
    carriers: tuple[CarrierCandidate, ...]
    weight: int = 1

    @functools.cached_property
    def key(self) -> str:
        """The route's carriers as one string (``"c1|c2"``): routes with the same carriers share it."""
        return "|".join(sorted(c.carrier for c in self.carriers))


@dataclass(frozen=True)
class Resolution:
    """Where one message goes: its POP (the corridor is (pop, country)) and the carriers to try."""

    pop: str
    candidates: tuple[CarrierCandidate, ...]


class RoutingTable:
    """An immutable routing table and rate card; replace it whole to change routing."""

    def __init__(self, routes: list[Route], rates: dict[str, int], default_rate: int | None) -> None:
        self.routes = tuple(routes)
        self.rates = dict(rates)
        self.default_rate = default_rate
        self._by_prefix: dict[str, list[Route]] = {}
        self._by_region: dict[str, list[Route]] = {}
        for route in routes:
            for m in route.matches:
                index = self._by_prefix if m.startswith("+") else self._by_region
                index.setdefault(m, []).append(route)
        self._prefix_lengths = sorted({len(p) for p in self._by_prefix}, reverse=True)
        # per POP: (pop, match) -> that POP's routes for the match (the POP's hot-path lookup)
        self._at_pop: dict[tuple[str, str], list[Route]] = {}
        for route in routes:
            for m in route.matches:
                self._at_pop.setdefault((route.pop, m), []).append(route)

    # --- building --------------------------------------------------------------------------------

    @classmethod
    def from_document(cls, doc: dict[str, Any], *, pops: set[str],
                      carriers: dict[str, str]) -> RoutingTable:
        """Validate ``{"routes": [...], "rates": {...}}``; ``carriers`` maps carrier name -> its POP."""
        routes_doc = doc.get("routes", [])
        if not isinstance(routes_doc, list):
            raise ConfigError("routing: routes must be a list of tables")
        routes = [_parse_route(i, r, pops, carriers) for i, r in enumerate(routes_doc)]
        if not routes:
            raise ConfigError("routing: routes is empty, so every message would be refused (no route); "
                              "to stop traffic for a while, suspend the carriers instead")
        rates_doc = doc.get("rates", {})
        if not isinstance(rates_doc, dict):
            raise ConfigError("routing: rates must be a table of country = micro-USD per segment")
        rates: dict[str, int] = {}
        default_rate = None
        for key, value in rates_doc.items():
            if not isinstance(value, int) or isinstance(value, bool) \
                    or not 0 <= value <= MAX_MICRO_USD_PER_SEGMENT:
                raise ConfigError(f"routing: rates.{key} must be an integer between 0 and "
                                  f"{MAX_MICRO_USD_PER_SEGMENT} (micro-USD per segment)")
            if key == "default":
                default_rate = value
            elif not (len(key) == 2 and key.isascii() and key.isalpha()):
                raise ConfigError(f"routing: rates.{key}: a rate is keyed by an ISO 3166 alpha-2 "
                                  "country code (or 'default')")
            elif (unknown := _unknown_region(key)) is not None:
                raise ConfigError(f"routing: rates.{key}: {unknown}")
            else:
                rates[key.upper()] = value
        if default_rate is None:
            _check_priced(routes, rates)
        return cls(routes, rates, default_rate)

    def to_document(self) -> dict[str, Any]:
        """The table as a config document (what ``from_document`` reads)."""
        rates: dict[str, int] = dict(self.rates)
        if self.default_rate is not None:
            rates["default"] = self.default_rate
        return {
            "routes": [
                {"match": list(r.matches), "pop": r.pop, "weight": r.weight,
                 "carriers": [vars(c).copy() for c in r.carriers]}
                for r in self.routes
            ],
            "rates": rates,
        }

    # --- lookups (hot path) ----------------------------------------------------------------------

    def resolve(self, e164: str, region: str, rng: random.Random | None = None) -> Resolution:
        """The POP and ordered carrier candidates for a destination; ``NoRoute`` if nothing serves it."""
        routes = self._matching(e164, region)
        rng = rng or random
        route = routes[0] if len(routes) == 1 else _weighted_pick(routes, rng)
        return Resolution(pop=route.pop, candidates=order_candidates(route.carriers, rng))

    def pop_for(self, e164: str, region: str, rng: random.Random | None = None) -> str:
        """The POP a destination is routed through (what a session needs; no carrier ordering)."""
        routes = self._matching(e164, region)
        if len(routes) == 1:
            return routes[0].pop
        return _weighted_pick(routes, rng or random).pop

    def _matching(self, e164: str, region: str) -> list[Route]:
        for length in self._prefix_lengths:
            routes = self._by_prefix.get(e164[:length])
            if routes:
                return routes
        routes = self._by_region.get(region)
        if not routes:
            raise NoRoute(f"no route serves destination country {region or 'unknown'}")
        return routes

    def candidates_at(self, pop: str, e164: str, region: str,
                      rng: random.Random | None = None) -> tuple[CarrierCandidate, ...]:
        """Ordered carriers of the most specific route at ``pop`` for a destination (``NoRoute`` if none)."""
        rng = rng or random
        return order_candidates(self.route_at(pop, e164, region, rng).carriers, rng)

    def route_at(self, pop: str, e164: str, region: str,
                 rng: random.Random | None = None) -> Route:
        """The most specific route at ``pop`` for a destination (``NoRoute`` if none)."""
        at_pop = self._at_pop
        routes = None
        for length in self._prefix_lengths:
            routes = at_pop.get((pop, e164[:length]))
            if routes:
                break
        routes = routes or at_pop.get((pop, region))
        if not routes:
            raise NoRoute(f"POP {pop} has no route for destination country {region}")
        return routes[0] if len(routes) == 1 else _weighted_pick(routes, rng or random)

    def price(self, region: str, segments: int) -> int:
        """Price of a message in integer micro-USD: segments x the destination's per-segment rate."""
        rate = self.rates.get(region, self.default_rate)
        if rate is None:
            raise NoRoute(f"no rate for destination country {region}")
        return rate * segments


def order_candidates(carriers: tuple[CarrierCandidate, ...],
                     rng: random.Random) -> tuple[CarrierCandidate, ...]:
    """Priority order; within a priority, a weighted shuffle (each pick proportional to weight)."""
    if len(carriers) <= 1:
        return carriers
    fixed = _fixed_order(carriers)
    if fixed is not None:  # no ties: nothing to draw
        return fixed
    out: list[CarrierCandidate] = []
    for priority in sorted({c.priority for c in carriers}):
        group = [c for c in carriers if c.priority == priority]
        while group:
            pick = _weighted_pick(group, rng)
            out.append(pick)
            group.remove(pick)
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _fixed_order(carriers: tuple[CarrierCandidate, ...]) -> tuple[CarrierCandidate, ...] | None:
    """Carriers in priority order when no two share a priority (the order needs no draw), else None."""
    if len({c.priority for c in carriers}) != len(carriers):
        return None
    return tuple(sorted(carriers, key=lambda c: c.priority))


def _weighted_pick(items, rng: random.Random):
    total = sum(i.weight for i in items)
    x = rng.random() * total
    for item in items:
        x -= item.weight
        if x < 0:
            return item
    return items[-1]


def _check_priced(routes: list[Route], rates: dict[str, int]) -> None:
    """Without a default rate, every country a route names must have a rate: a message to it could not
    be priced and would be refused (``NoRoute``) however well it is routed. (A prefix route's countries
    are known only per number, so they are priced, or refused, at submission.)"""
    for i, route in enumerate(routes):
        for match in route.matches:
            if not match.startswith("+") and match not in rates:
                raise ConfigError(f"routing: routes[{i}] serves {match}, but rates has neither {match} "
                                  "nor a default, so every message to it would be refused")


def _parse_route(i: int, r: Any, pops: set[str], carriers: dict[str, str]) -> Route:
    where = f"routing: routes[{i}]"
    if not isinstance(r, dict):
        raise ConfigError(f"{where} must be a table")
    matches = r.get("match")
    if isinstance(matches, str):
        matches = [matches]
    if not matches or not all(isinstance(m, str) and m for m in matches):
        raise ConfigError(f"{where}.match must be a country code or '+prefix' (or a list of them)")
    for m in matches:
        if m.startswith("+") and not m[1:].isdigit():
            raise ConfigError(f"{where}.match {m!r}: a prefix is '+' followed by digits")
        if not m.startswith("+") and not (len(m) == 2 and m.isascii() and m.isalpha()):
            raise ConfigError(f"{where}.match {m!r}: a country is an ISO 3166 alpha-2 code")
        if not m.startswith("+") and (unknown := _unknown_region(m)) is not None:
            raise ConfigError(f"{where}.match {m!r}: {unknown}")
    pop = r.get("pop")
    if pop not in pops:
        raise ConfigError(f"{where}.pop {pop!r} is not a configured POP")
    weight = _bounded_int(r.get("weight", 1), WEIGHT, f"{where}.weight")
    cands_doc = r.get("carriers")
    if not isinstance(cands_doc, list) or not cands_doc:
        raise ConfigError(f"{where}.carriers must be a non-empty list")
    cands = []
    for j, c in enumerate(cands_doc):
        if isinstance(c, str):
            c = {"carrier": c}
        if not isinstance(c, dict):
            raise ConfigError(f"{where}.carriers[{j}] must be a table")
        name = c.get("carrier")
        if name not in carriers:
            raise ConfigError(f"{where}.carriers[{j}]: unknown carrier {name!r}")
        if carriers[name] != pop:
            raise ConfigError(f"{where}.carriers[{j}]: carrier {name} belongs to POP {carriers[name]}, "
                              f"not {pop}")
        unknown = set(c) - {"carrier", "priority", "weight", "cost_micro_usd"}
        if unknown:
            raise ConfigError(f"{where}.carriers[{j}]: unknown key(s) {', '.join(sorted(unknown))}")
        values = {k: c.get(k, d) for k, d in (("priority", 1), ("weight", 1), ("cost_micro_usd", 0))}
        for k in ("priority", "weight"):
            values[k] = _bounded_int(values[k], PRIORITY if k == "priority" else WEIGHT,
                                     f"{where}.carriers[{j}].{k}")
        cost = values["cost_micro_usd"]
        if not isinstance(cost, int) or isinstance(cost, bool) or cost < 0:
            raise ConfigError(f"{where}.carriers[{j}].cost_micro_usd must be an integer >= 0")
        if cost > MAX_MICRO_USD_PER_SEGMENT:
            raise ConfigError(f"{where}.carriers[{j}].cost_micro_usd must be an integer between 0 and "
                              f"{MAX_MICRO_USD_PER_SEGMENT} (micro-USD per segment)")
        cands.append(CarrierCandidate(carrier=name, **values))
    return Route(matches=tuple(m.upper() if not m.startswith("+") else m for m in matches),
                 pop=pop, carriers=tuple(cands), weight=weight)


def _bounded_int(value: Any, bounds: Range, where: str) -> int:
    """``value`` if it is an integer within ``bounds``, else ``ConfigError`` naming ``where``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where} must be an integer {bounds.words()}")
    if not bounds.admits(value):
        raise ConfigError(f"{where} = {value} must be an integer {bounds.words()}")
    return value
