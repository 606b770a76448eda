"""Bench scenarios: a TOML file read once into frozen dataclasses.

Why: a benchmark is only comparable with another when everything that shaped it is written down — which
corridors (POP → destination country) carry what share of the traffic, what the messages look like, how
each corridor's carrier behaves (latency, outcomes, throttling, receipt delay) and what load was offered.
A scenario file says all of that; the built-in ones live in ``bench/scenarios/*.toml``.

The file format (every key optional unless marked)::

    name = "default"                    # required
    description = "..."
    path = "embedded"                   # embedded | http
    seed = 1

    [load]
    mode = "open"                       # open | saturation
    arrival = "fixed"                   # fixed | poisson
    rate = 2000                         # offered messages/s (open mode)
    duration_s = 5.0
    warmup_s = 0.5                      # sent and tracked, but not in the figures
    max_in_flight = 5000                # the bench waits (and the wait counts as latency) beyond this
    drain_timeout_s = 15.0              # after the last send: how long to wait for final statuses
    p99_bound_ms = 5.0                  # saturation: the highest rate whose final p99 stays under this
    start_rate = 2000                   # saturation: first step; doubles until a step fails, then bisects
    max_rate = 200000
    step_s = 3.0
    bisect_steps = 3
    min_completion = 0.97               # saturation: a step must complete this share of what it offered

    [[corridors]]                       # at least one
    pop = "fra"                         # required
    country = "DE"                      # required, ISO 3166 alpha-2
    share = 1.0                         # relative weight
    mix = [{ share = 0.9, length = 60, encoding = "GSM-7" }, { share = 0.1, length = 60, encoding = "UCS-2" }]
    [corridors.carrier]
    latency_ms = { kind = "fixed", value = 0 }   # fixed(value) | uniform(low, high) | lognormal(median, sigma)
    receipt_delay_ms = { kind = "fixed", value = 0 }
    outcomes = { delivered = 1.0 }      # relative weights of: delivered, undeliverable, expired, rejected,
                                        # throttled (submit refused, retried), no_answer (no submit_sm_resp)
    window = 0                          # outstanding submits per link, 0 = unlimited
    throughput = 0                      # submits/s per link, 0 = unlimited
    late_receipt_rate = 0.0             # share of receipts 10x late
    duplicate_receipt_rate = 0.0        # share of receipts sent twice

Anything else is a :class:`~engine.errors.ConfigError` naming the key, so a typo never silently changes what
was measured.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

PATHS = ("embedded", "http")
MODES = ("open", "saturation")
ARRIVALS = ("fixed", "poisson")
ENCODINGS = ("GSM-7", "UCS-2")
OUTCOMES = ("delivered", "undeliverable", "expired", "rejected", "throttled", "no_answer")
DISTRIBUTIONS = {"fixed": ("value",), "uniform": ("low", "high"), "lognormal": ("median", "sigma")}


@dataclass(frozen=True)
class Distribution:
    """A latency in ms: ``fixed(value)``, ``uniform(low, high)`` or ``lognormal(median, sigma)``."""

    kind: str = "fixed"
    params: tuple[float, ...] = (0.0,)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dict(zip(DISTRIBUTIONS[self.kind], self.params, strict=True))}

    def median(self) -> float:
        if self.kind == "uniform":
            return (self.params[0] + self.params[1]) / 2
        return self.params[0]


@dataclass(frozen=True)
class MixEntry:
    """One kind of message in a corridor's traffic: its share, body length in characters and encoding."""

    share: float = 1.0
    length: int = 60
    encoding: str = "GSM-7"


@dataclass(frozen=True)
class CarrierBehaviour:
    """How the simulated carrier of one corridor behaves."""

    latency_ms: Distribution = Distribution()
    receipt_delay_ms: Distribution = Distribution()
    outcomes: tuple[tuple[str, float], ...] = (("delivered", 1.0),)
    window: int = 0
    throughput: float = 0.0
    late_receipt_rate: float = 0.0
    duplicate_receipt_rate: float = 0.0


@dataclass(frozen=True)
class Corridor:
    """A (POP, destination country) pair with its share of the traffic and its carrier's behaviour."""

    pop: str
    country: str
    share: float = 1.0
    mix: tuple[MixEntry, ...] = (MixEntry(),)
    carrier: CarrierBehaviour = CarrierBehaviour()

    @property
    def key(self) -> tuple[str, str]:
        return (self.pop, self.country)


@dataclass(frozen=True)
class Load:
    """The offered load and, for saturation, the search it runs."""

    mode: str = "open"
    arrival: str = "fixed"
    rate: float = 2000.0
    duration_s: float = 5.0
    warmup_s: float = 0.5
    max_in_flight: int = 5000
    drain_timeout_s: float = 15.0
    p99_bound_ms: float = 5.0
    start_rate: float = 2000.0
    max_rate: float = 200_000.0
    step_s: float = 3.0
    bisect_steps: int = 3
    min_completion: float = 0.97


@dataclass(frozen=True)
class Scenario:
    name: str
    corridors: tuple[Corridor, ...]
    description: str = ""
    path: str = "embedded"
    seed: int = 1
    load: Load = field(default_factory=Load)

    def with_load(self, **changes: Any) -> Scenario:
        """A copy with some load settings changed (the CLI's overrides)."""
        return replace(self, load=replace(self.load, **changes))

    @property
    def pops(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.pop for c in self.corridors))


# --- loading ----------------------------------------------------------------------------------------


def builtin_names() -> list[str]:
    """Names of the scenarios shipped in ``bench/scenarios``."""
    root = resources.files("bench") / "scenarios"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """Load a built-in scenario by name, or a scenario file by path."""
    if name_or_path in builtin_names():
        text = (resources.files("bench") / "scenarios" / f"{name_or_path}.toml").read_text("utf-8")
        return parse_scenario(text, source=name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(
            f"no scenario {name_or_path!r}: not a file, and built-ins are {', '.join(builtin_names())}"
        )
    return parse_scenario(path.read_text("utf-8"), source=str(path))


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse scenario TOML text; any unknown key or bad value raises ``ConfigError``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    _only(doc, ("name", "description", "path", "seed", "load", "corridors"), source)
    name = _get(doc, "name", str, source, required=True)
    path = _choice(doc, "path", PATHS, source, "embedded")
    corridors = doc.get("corridors")
    if not isinstance(corridors, list) or not corridors:
        raise ConfigError(f"{source}: at least one [[corridors]] table is required")
    parsed = tuple(_corridor(c, f"{source}: corridors[{i}]") for i, c in enumerate(corridors))
    seen: set[tuple[str, str]] = set()
    for c in parsed:
        if c.key in seen:
            raise ConfigError(f"{source}: corridor {c.pop}/{c.country} appears twice")
        seen.add(c.key)
    return Scenario(
        name=name,
        corridors=parsed,
        description=_get(doc, "description", str, source, default=""),
        path=path,
        seed=_get(doc, "seed", int, source, default=1),
        load=_load(_table(doc, "load", source), f"{source}: load"),
    )


def _load(t: dict[str, Any], where: str) -> Load:
    d = Load()
    _only(t, tuple(Load.__dataclass_fields__), where)
    load = Load(
        mode=_choice(t, "mode", MODES, where, d.mode),
        arrival=_choice(t, "arrival", ARRIVALS, where, d.arrival),
        rate=_positive(t, "rate", where, d.rate),
        duration_s=_positive(t, "duration_s", where, d.duration_s),
        warmup_s=_non_negative(t, "warmup_s", where, d.warmup_s),
        max_in_flight=int(_positive(t, "max_in_flight", where, d.max_in_flight)),
        drain_timeout_s=_positive(t, "drain_timeout_s", where, d.drain_timeout_s),
        p99_bound_ms=_positive(t, "p99_bound_ms", where, d.p99_bound_ms),
        start_rate=_positive(t, "start_rate", where, d.start_rate),
        max_rate=_positive(t, "max_rate", where, d.max_rate),
        step_s=_positive(t, "step_s", where, d.step_s),
        bisect_steps=int(_non_negative(t, "bisect_steps", where, d.bisect_steps)),
        min_completion=_positive(t, "min_completion", where, d.min_completion),
    )
    if load.max_rate < load.start_rate:
        raise ConfigError(f"{where}: max_rate must be >= start_rate")
    if load.min_completion > 1:
        raise ConfigError(f"{where}: min_completion is a share, at most 1")
    return load


def _corridor(t: Any, where: str) -> Corridor:
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: must be a table")
    _only(t, ("pop", "country", "share", "mix", "carrier"), where)
    country = _get(t, "country", str, where, required=True).upper()
    if len(country) != 2 or not country.isalpha():
        raise ConfigError(f"{where}: country must be an ISO 3166 alpha-2 code, got {country!r}")
    mix_raw = t.get("mix", [{}])
    if not isinstance(mix_raw, list) or not mix_raw:
        raise ConfigError(f"{where}: mix must be a non-empty list of tables")
    return Corridor(
        pop=_get(t, "pop", str, where, required=True).lower(),
        country=country,
        share=_positive(t, "share", where, 1.0),
        mix=tuple(_mix(m, f"{where}.mix[{i}]") for i, m in enumerate(mix_raw)),
        carrier=_carrier(_table(t, "carrier", where), f"{where}.carrier"),
    )


def _mix(t: Any, where: str) -> MixEntry:
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: must be a table")
    _only(t, ("share", "length", "encoding"), where)
    length = _get(t, "length", int, where, default=60)
    if not 1 <= length <= 1000:
        raise ConfigError(f"{where}: length must be 1..1000 characters")
    return MixEntry(
        share=_positive(t, "share", where, 1.0),
        length=length,
        encoding=_choice(t, "encoding", ENCODINGS, where, "GSM-7"),
    )


def _carrier(t: dict[str, Any], where: str) -> CarrierBehaviour:
    _only(t, tuple(CarrierBehaviour.__dataclass_fields__), where)
    outcomes = _table(t, "outcomes", where) or {"delivered": 1.0}
    for k, v in outcomes.items():
        if k not in OUTCOMES:
            raise ConfigError(
                f"{where}.outcomes: unknown outcome {k!r} (one of {', '.join(OUTCOMES)})"
            )
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise ConfigError(f"{where}.outcomes.{k}: must be a non-negative number")
    if sum(outcomes.values()) <= 0:
        raise ConfigError(f"{where}.outcomes: the weights must not all be zero")
    return CarrierBehaviour(
        latency_ms=_distribution(t.get("latency_ms"), f"{where}.latency_ms"),
        receipt_delay_ms=_distribution(t.get("receipt_delay_ms"), f"{where}.receipt_delay_ms"),
        outcomes=tuple((k, float(v)) for k, v in outcomes.items()),
        window=int(_non_negative(t, "window", where, 0)),
        throughput=_non_negative(t, "throughput", where, 0.0),
        late_receipt_rate=_share(t, "late_receipt_rate", where),
        duplicate_receipt_rate=_share(t, "duplicate_receipt_rate", where),
    )


def _distribution(t: Any, where: str) -> Distribution:
    if t is None:
        return Distribution()
    if isinstance(t, int | float) and not isinstance(t, bool):
        t = {"kind": "fixed", "value": t}
    if not isinstance(t, dict):
        raise ConfigError(
            f"{where}: must be a number or a table like {{ kind = 'fixed', value = 0 }}"
        )
    kind = _choice(t, "kind", tuple(DISTRIBUTIONS), where, "fixed")
    names = DISTRIBUTIONS[kind]
    _only(t, ("kind", *names), where)
    params = tuple(_non_negative(t, n, where, None) for n in names)
    if kind == "uniform" and params[1] < params[0]:
        raise ConfigError(f"{where}: uniform needs low <= high")
    return Distribution(kind, params)


# --- small validators ---------------------------------------------------------------------------------


def _only(t: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(t) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")


def _table(t: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = t.get(key, {})
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: {key} must be a table")
    return v


def _get(
    t: dict[str, Any],
    key: str,
    typ: type,
    where: str,
    *,
    required: bool = False,
    default: Any = None,
) -> Any:
    if key not in t:
        if required:
            raise ConfigError(f"{where}: {key} is required")
        return default
    v = t[key]
    if not isinstance(v, typ) or isinstance(v, bool):
        raise ConfigError(f"{where}: {key} must be {typ.__name__}, got {type(v).__name__}")
    return v


def _choice(t: dict[str, Any], key: str, choices: tuple[str, ...], where: str, default: str) -> str:
    v = _get(t, key, str, where, default=default)
    if v not in choices:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(choices)}, got {v!r}")
    return v


def _number(t: dict[str, Any], key: str, where: str, default: float | None) -> float:
    if key not in t:
        if default is None:
            raise ConfigError(f"{where}: {key} is required")
        return float(default)
    v = t[key]
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise ConfigError(f"{where}: {key} must be a number, got {type(v).__name__}")
    return float(v)


def _positive(t: dict[str, Any], key: str, where: str, default: float | None) -> float:
    v = _number(t, key, where, default)
    if not v > 0:
        raise ConfigError(f"{where}: {key} must be > 0, got {v}")
    return v


def _share(t: dict[str, Any], key: str, where: str) -> float:
    v = _non_negative(t, key, where, 0.0)
    if v > 1:
        raise ConfigError(f"{where}: {key} is a share, at most 1, got {v}")
    return v


def _non_negative(t: dict[str, Any], key: str, where: str, default: float | None) -> float:
    v = _number(t, key, where, default)
    if not v >= 0:
        raise ConfigError(f"{where}: {key} must be >= 0, got {v}")
    return v
