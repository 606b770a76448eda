"""``[carriers.<name>]``: each carrier's POP, its ``kind`` and that kind's typed options — ``simulated``
(in-process, ``actors.carrier_sim``) or ``smpp`` (binds to an SMSC, ``actors.carrier_smpp``).

The keys both kinds have (``window``, 10 submits in flight, per bind for SMPP; ``throughput``, 0 =
unlimited) have one default. A simulated delay is at most an hour (past any answer or receipt a test or
benchmark would wait for), so a typo'd unit cannot park every message. SMPP reconnects are bounded low
(0.5 to 1 s: a bind is back within about a second of its SMSC), while a bind refused for good backs off
from 5 s to 300 s, at most an hour so it is still retried. ``system_id``, ``password`` and ``system_type``
are as long as SMPP 3.4's bind fields allow: a longer one could never bind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any

from engine.config.bounds import PORT, TIMEOUT
from engine.errors import ConfigError
from engine.typed_tables import Range, is_number, typed_table

MAX_AUTH_RETRY_SECONDS = 3600.0  # a bind refused for good is still retried at least hourly
#: What a simulated carrier can do with a submit (``outcomes`` is a weighted mix of these).
SIMULATED_OUTCOMES = ("delivered", "undeliverable", "rejected", "expired", "throttled", "no_answer")
#: Delay distributions of a simulated carrier, with the keys each one takes.
DISTRIBUTIONS = {"fixed": ("ms",), "uniform": ("min_ms", "max_ms"), "lognormal": ("median_ms", "sigma")}
#: A simulated delay in ms (a plain number or a distribution's ``*_ms``): an hour is past any carrier's
#: answer or receipt a test or benchmark would wait for; 1e12 (a typo'd unit) would park every message.
DELAY_MS = Range(0, 3_600_000)
#: A lognormal's sigma: real carriers spread around 0.3-1.5; at 3, one draw in a thousand is already
#: ~10,000 times the median.
SIGMA = Range(0, 3)
BIND_MODES = ("transceiver", "transmitter_receiver")


@dataclass(frozen=True)
class CarrierOptions:
    """The keys every carrier kind has, each with one default (adding a key: one line in a class below)."""

    # submits in flight without an answer (per bind for SMPP)
    window: Annotated[int, Range(1, 1_000_000)] = 10
    # submits per second (per bind for SMPP); 0 = unlimited
    throughput: Annotated[float, Range(0, 1e9)] = 0.0

    def check(self, where: str) -> None:
        """The checks across keys (each key's own range is on its field)."""


@dataclass(frozen=True)
class SimulatedCarrierOptions(CarrierOptions):
    """``kind = "simulated"``: an in-process carrier (``actors.carrier_sim``)."""

    latency: float | dict[str, Any] | None = None  # submit answer delay: ms or {distribution, ...}
    receipt_delay: float | dict[str, Any] | None = None  # answer -> receipt delay, same form
    outcomes: dict[str, Any] = field(default_factory=lambda: {"delivered": 1.0})
    # share of receipts that arrive ten times later
    late_receipt_rate: Annotated[float, Range(0, 1)] = 0.01
    duplicate_receipt_rate: Annotated[float, Range(0, 1)] = 0.01  # share of receipts sent twice

    def check(self, where: str) -> None:
        super().check(where)
        for key in ("latency", "receipt_delay"):
            _check_distribution(getattr(self, key), f"{where}.{key}")
        unknown = sorted(set(self.outcomes) - set(SIMULATED_OUTCOMES))
        if unknown:
            raise ConfigError(f"config: {where}.outcomes: unknown outcome {unknown[0]!r} "
                              f"(one of {', '.join(SIMULATED_OUTCOMES)})")
        weights = list(self.outcomes.values())
        if not weights or any(not is_number(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"config: {where}.outcomes must map outcomes to non-negative "
                              "weights, at least one of them positive")


# The bind's C-octet strings, in characters without the NUL (SMPP 3.4 section 4.1: 16, 9 and 13 octets)
SMPP_BIND_FIELDS = {"system_id": 15, "password": 8, "system_type": 12}


@dataclass(frozen=True)
class SmppCarrierOptions(CarrierOptions):
    """``kind = "smpp"``: binds to an SMSC (``actors.carrier_smpp``, ``engine.smpp.client``)."""

    host: str = "127.0.0.1"
    port: Annotated[int, PORT] = 2775
    system_id: str = "smsroute"
    password: str = "secret"
    system_type: str = ""
    binds: Annotated[int, Range(1, 1000)] = 1  # sessions to the SMSC, each with its own window
    bind_mode: str = "transceiver"  # or "transmitter_receiver": one transmitter + one receiver per bind
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str = ""  # PEM bundle to trust instead of the system store ("" = system)
    enquire_link_seconds: Annotated[float, TIMEOUT] = 30.0  # keep-alive when idle
    # a submit_sm unanswered this long is retried
    resp_timeout_seconds: Annotated[float, TIMEOUT] = 10.0
    gsm7_packed: bool = False
    use_message_payload: bool = False  # long messages whole in the message_payload TLV
    reconnect_min_seconds: Annotated[float, Range(0, MAX_AUTH_RETRY_SECONDS, open_low=True)] = 0.5
    # bounded low: a bind is back within about a second of its SMSC
    reconnect_max_seconds: Annotated[float, Range(0, MAX_AUTH_RETRY_SECONDS, open_low=True)] = 1.0
    # a bind refused for good (bad credentials, system type, already bound...: engine.smpp.bind) waits
    # auth_retry_min_seconds, doubling per refusal up to auth_retry_max_seconds; a successful bind resets it
    auth_retry_min_seconds: Annotated[float, Range(0, MAX_AUTH_RETRY_SECONDS, open_low=True)] = 5.0
    auth_retry_max_seconds: Annotated[float, Range(0, MAX_AUTH_RETRY_SECONDS, open_low=True)] = 300.0
    # a part waits this long in the queue for a bind to come up
    bind_wait_seconds: Annotated[float, Range(0, 3600)] = 5.0
    registered_delivery: Annotated[int, Range(0, 255)] = 1  # ask for a receipt on final state
    # how long a receipt for an unknown id is held for its resp
    early_receipt_seconds: Annotated[float, Range(0, 86400)] = 30.0
    # how long a submitted id waits for its receipt (3 days)
    receipt_match_seconds: Annotated[float, Range(0, 7 * 86400)] = 259200.0
    max_pending_receipts: Annotated[int, Range(1, 100_000_000)] = 1_000_000
    # the deliver_sm_resp status of a receipt that could not be stored (e.g. a full disk), so the SMSC
    # delivers it again later: 0x64 ESME_RX_T_APPN (SMPP 3.4's temporary error of a receiving ESME); an SMSC
    # that retries only other statuses needs its own (Vonage: 0x08 ESME_RSYSERR, 0x14, 0x58)
    receipt_retry_status: Annotated[int, Range(1, 0xFFFFFFFF)] = 0x64
    # parts waiting for a window slot, per carrier
    queue_limit: Annotated[int, Range(1, 100_000_000)] = 100_000

    def check(self, where: str) -> None:
        super().check(where)
        if self.bind_mode not in BIND_MODES:
            raise ConfigError(f"config: {where}.bind_mode must be one of {', '.join(BIND_MODES)}")
        if not 0 < self.reconnect_min_seconds <= self.reconnect_max_seconds:
            raise ConfigError(f"config: {where}.reconnect_min_seconds must be more than 0 and at most "
                              f"{where}.reconnect_max_seconds")
        for name, most in SMPP_BIND_FIELDS.items():  # what a bind PDU can carry (engine.smpp.pdu._BIND)
            value = getattr(self, name)
            try:
                size = len(value.encode("latin-1"))
            except UnicodeEncodeError:
                size = None
            if size is None or size > most or "\x00" in value:
                raise ConfigError(f"config: {where}.{name} must be at most {most} Latin-1 characters "
                                  "without NUL (SMPP 3.4's bind field; a longer one could never bind)")
        if not 0 < self.auth_retry_min_seconds <= self.auth_retry_max_seconds <= MAX_AUTH_RETRY_SECONDS:
            raise ConfigError(f"config: {where}.auth_retry_min_seconds must be more than 0 and at most "
                              f"{where}.auth_retry_max_seconds, itself at most {MAX_AUTH_RETRY_SECONDS:g}"
                              " (1 hour: a refused bind is still retried)")


#: The options class of each carrier ``kind``.
CARRIER_KINDS: dict[str, type[CarrierOptions]] = {
    "simulated": SimulatedCarrierOptions,
    "smpp": SmppCarrierOptions,
}


@dataclass(frozen=True)
class CarrierSettings:
    name: str
    pop: str
    kind: str  # a key of CARRIER_KINDS
    options: CarrierOptions = field(default_factory=SimulatedCarrierOptions)


def carrier_options(kind: str, table: dict[str, Any], where: str = "carrier") -> CarrierOptions:
    """Validate a carrier's options (its table without ``pop`` and ``kind``) for its kind.

    >>> carrier_options("smpp", {"window": 20}).window
    20
    >>> carrier_options("smpp", {"windw": 20})
    Traceback (most recent call last):
    ...
    engine.errors.ConfigError: config: unknown key 'windw' in [carrier] (kind = "smpp"; did you mean 'window'?)
    """
    cls = CARRIER_KINDS.get(kind)
    if cls is None:
        raise ConfigError(f"config: {where}.kind must be one of {', '.join(CARRIER_KINDS)}, "
                          f"got {kind!r}")
    options = typed_table(cls, table, where, f'kind = "{kind}"')
    options.check(where)
    return options


def carriers_from_table(table: dict[str, Any], pops: set[str] | dict[str, Any]) -> dict[str, CarrierSettings]:
    """The ``[carriers]`` table's carriers by name, each at one of ``pops``."""
    carriers = {}
    for name, carrier in table.items():
        where = f"carriers.{name}"
        if not isinstance(carrier, dict):
            raise ConfigError(f"config: [{where}] must be a table")
        pop, kind = carrier.get("pop"), carrier.get("kind", "simulated")
        for key, value in (("pop", pop), ("kind", kind)):
            if value is not None and not isinstance(value, str):  # (a missing pop is named below)
                raise ConfigError(f"config: {where}.{key} must be a string")
        if pop not in pops:
            raise ConfigError(f"config: {where}.pop = {pop!r} is not a configured POP")
        options = carrier_options(kind, {k: v for k, v in carrier.items() if k not in ("pop", "kind")},
                                  where)
        carriers[name] = CarrierSettings(name=name, pop=pop, kind=kind, options=options)
    return carriers


def _check_distribution(spec: Any, where: str) -> None:
    """A delay is a number of ms or ``{distribution = fixed|uniform|lognormal, <its keys>}``."""
    if spec is None or is_number(spec):
        if spec is not None and not math.isfinite(spec):
            raise ConfigError(f"config: {where} must be a finite number")
        if spec is not None and spec < 0:
            raise ConfigError(f"config: {where} must not be negative")
        if spec is not None and not DELAY_MS.admits(spec):
            raise ConfigError(f"config: {where} = {spec:g} must be {DELAY_MS.words()} (ms)")
        return
    kind = spec.get("distribution", "fixed")
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"config: {where}.distribution must be one of {', '.join(DISTRIBUTIONS)}")
    for key, value in spec.items():
        if key == "distribution":
            continue
        if key not in DISTRIBUTIONS[kind]:
            raise ConfigError(f"config: unknown key {key!r} in {where} (distribution = \"{kind}\" "
                              f"takes {', '.join(DISTRIBUTIONS[kind])})")
        if not is_number(value) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"config: {where}.{key} must be a finite, non-negative number")
        bounds = SIGMA if key == "sigma" else DELAY_MS
        if not bounds.admits(value):
            raise ConfigError(f"config: {where}.{key} = {value:g} must be {bounds.words()}"
                              + ("" if key == "sigma" else " (ms)"))
