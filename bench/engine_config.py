"""Turn a bench scenario into the engine configuration it runs against.

Why: a scenario speaks of corridors (POP → country) and how each corridor's carrier behaves; the engine
speaks of ``[pops]``, ``[carriers]`` and ``[[routes]]`` (see ``engine/default.toml``). This module writes
one simulated carrier per corridor and one route per corridor, so every corridor's behaviour is exactly
what the scenario says and nothing of the default topology leaks into the measurement. With ``--smsc``
every corridor's carrier is instead an SMPP bind to that SMSC.

The result is an ``overrides`` dict for :func:`engine.config.load_settings`; since it defines
``carriers`` and ``routes``, it replaces the default topology instead of merging with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.scenario import Corridor, Distribution, Scenario

#: Stand-in for an "unlimited" window on a simulated carrier (its throughput 0 already means unlimited).
UNLIMITED_WINDOW = 1_000_000
UNLIMITED_RATE = 10_000_000  # API requests/s for the bench account on the http path
POP_CITIES = {"fra": "Frankfurt", "sin": "Singapore", "gru": "São Paulo"}


def carrier_name(corridor: Corridor) -> str:
    """The simulated carrier that serves one corridor, e.g. ``bench-fra-de``."""
    return f"bench-{corridor.pop}-{corridor.country.lower()}"


def distribution_table(d: Distribution) -> dict[str, Any]:
    """A scenario distribution in the engine's ``{distribution = ..., ...}`` form."""
    if d.kind == "fixed":
        return {"distribution": "fixed", "ms": d.params[0]}
    if d.kind == "uniform":
        return {"distribution": "uniform", "min_ms": d.params[0], "max_ms": d.params[1]}
    return {"distribution": "lognormal", "median_ms": d.params[0], "sigma": d.params[1]}


def simulated_carrier(corridor: Corridor) -> dict[str, Any]:
    c = corridor.carrier
    return {
        "pop": corridor.pop,
        "kind": "simulated",
        "latency": distribution_table(c.latency_ms),
        "receipt_delay": distribution_table(c.receipt_delay_ms),
        "window": c.window or UNLIMITED_WINDOW,
        "throughput": c.throughput,  # 0 = unlimited
        "outcomes": dict(c.outcomes),
        "late_receipt_rate": c.late_receipt_rate,
        "duplicate_receipt_rate": c.duplicate_receipt_rate,
    }


def engine_overrides(
    scenario: Scenario,
    *,
    max_in_flight: int | None = None,
    http_ports: tuple[int, int] | None = None,
    smpp_carrier: Callable[[Corridor], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``overrides`` dict for ``load_settings``: POPs, one carrier and one route per corridor.

    ``smpp_carrier`` (corridor -> carrier table) replaces the simulated carriers, for ``--smsc``.
    ``http_ports`` sets (customer, control) ports, for the http path (0 = any free port).
    """
    carriers: dict[str, Any] = {}
    routes: list[dict[str, Any]] = []
    for corridor in scenario.corridors:
        name = carrier_name(corridor)
        table = smpp_carrier(corridor) if smpp_carrier else simulated_carrier(corridor)
        carriers[name] = {**table, "pop": corridor.pop}
        routes.append(
            {
                "match": [corridor.country],
                "pop": corridor.pop,
                "weight": max(1, round(corridor.share * 1000)),
                "carriers": [{"carrier": name, "priority": 1, "weight": 1}],
            }
        )
    doc: dict[str, Any] = {
        "pops": {p: {"city": POP_CITIES.get(p, p)} for p in scenario.pops},
        "carriers": carriers,
        "routes": routes,
    }
    if max_in_flight is not None:
        doc["engine"] = {"max_in_flight": int(max_in_flight)}
    if http_ports is not None:
        # The bench's webhook receiver listens on loopback, which the SSRF guard refuses by default;
        # the one bench account must not be held to a customer's rate limit (it measures the engine).
        doc["http"] = {
            "customer_port": http_ports[0],
            "control_port": http_ports[1],
            "webhook_allow_private_networks": True,
            "rate_limit_per_second": float(UNLIMITED_RATE),
            "rate_limit_burst": UNLIMITED_RATE,
        }
    return doc
