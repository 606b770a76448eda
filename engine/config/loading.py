"""Configuration: one frozen ``Settings`` object, read once from TOML.

The embedded default (``engine/default.toml``) is always the base; a config file given with
``--config`` / ``config=`` is deep-merged over it, then ``overrides`` (a dict, for embedding hosts and the
benchmark harness). Everything is validated here, so the rest of the engine can trust its settings.

>>> s = load_settings()
>>> sorted(s.pops)
['fra', 'gru', 'sin']
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from engine.errors import ConfigError
from engine.routing import MAX_MICRO_USD_PER_SEGMENT, PRIORITY, WEIGHT, RoutingTable
from engine.typed_tables import Range, is_number, ranges, typed_table

# Every number of every table has its allowed range on its field (``Annotated[int, Range(low, high)]``),
# checked when the configuration is loaded (config: <key> = <value> must be between ...) and listed in
# the README by ``ranges_text`` (a test keeps the two equal). A low end of 1 (or "more than 0") is where 0
# would refuse everything or disable a protection; a high end is beyond any use (a map no address space
# holds, a cache no memory holds) or is a promise (bodies 24 hours at most).
MAX_SWEEP_INTERVAL_SECONDS = 3600  # a body past its TTL is shredded within one sweep interval
MAX_BODY_TTL_SECONDS = 86400  # the policy's 24 hours
MAX_SECRET_OVERLAP_SECONDS = 7 * 86400
MAX_AUTH_RETRY_SECONDS = 3600.0  # a bind refused for good is still retried at least hourly
MIB = 1 << 20
# 4 TiB each: the core, each POP, and the http, mail and privacy stores together stay well inside a
# 64-bit process's 128 TiB of address space (LMDB reserves the whole map at open)
MAP_SIZE_RANGE = Range(1, 4 * MIB)
PORT = Range(1, 65535)
PORT_OR_ANY = Range(0, 65535)  # 0: any free port (printed at start-up)
TIMEOUT = Range(0, 3600, open_low=True)
CONNECTIONS = Range(1, 10_000_000)


@dataclass(frozen=True)
class EngineLimits:
    max_in_flight: Annotated[int, Range(1, 10_000_000)] = 20000
    max_segments: Annotated[int, Range(1, 255)] = 10
    default_validity_seconds: Annotated[int, Range(1, 86400)] = 30
    expiry_grace_seconds: Annotated[float, Range(0, 3600)] = 2.0
    retry_window_seconds: Annotated[float, Range(0, 86400)] = 10.0
    retry_base_ms: Annotated[float, Range(0, 60_000)] = 20.0
    retry_cap_ms: Annotated[float, Range(0, 3_600_000)] = 1000.0
    max_attempts: Annotated[int, Range(1, 100)] = 4
    resp_timeout_seconds: Annotated[float, TIMEOUT] = 3.0
    # accept per route what its carriers take in this long
    admission_horizon_seconds: Annotated[float, Range(0, 86400)] = 30.0
    body_ttl_seconds: Annotated[int, Range(
        1, MAX_BODY_TTL_SECONDS, why="the privacy policy keeps bodies 24 hours at most")] = 86400
    tick_ms: Annotated[int, Range(5, 60_000)] = 200  # 0 would re-arm the housekeeping clock in a tight loop
    sweep_interval_seconds: Annotated[float, Range(0, MAX_SWEEP_INTERVAL_SECONDS, open_low=True,
                                                   why="bodies must be shredded within the 24-hour limit")] = 60.0
    map_size_mb: Annotated[int, MAP_SIZE_RANGE] = 1024  # the core's and each POP's LMDB map
    # the other stores' maps (each names itself when full: 503 store_full, smsroute_store_full_refusals_total)
    # idempotency records (24 h), request log (90 d), control audit (1 y), tokens
    http_map_size_mb: Annotated[int, MAP_SIZE_RANGE] = 256
    mail_map_size_mb: Annotated[int, MAP_SIZE_RANGE] = 256  # the customer mail outbox
    # data-subject requests, incidents, support cases, links, challenges
    privacy_map_size_mb: Annotated[int, MAP_SIZE_RANGE] = 256
    # no analytics cell where one account has more than this
    analytics_max_account_share: Annotated[float, Range(0, 1, open_low=True)] = 0.5
    gc_tuning: bool = True  # a long-running engine's GC: freeze start-up objects, rarer collections
    ledger_reconcile_at_start: bool = True  # reconcile records and ledger in the background at start-up
    shared_pop_store: bool = True  # a new data directory: the POPs of a process in one environment
    # smsroute run --workers/--edges: a child without a heartbeat this long is hung (/readyz 503), and
    # this long is killed and restarted (engine.cluster.liveness)
    child_hung_after_seconds: Annotated[float, Range(0, 3600, open_low=True)] = 10.0
    child_kill_after_seconds: Annotated[float, Range(0, 86400, open_low=True)] = 30.0


@dataclass(frozen=True)
class HttpSettings:
    customer_host: str = "127.0.0.1"
    customer_port: Annotated[int, PORT_OR_ANY] = 8080
    control_host: str = "127.0.0.1"
    control_port: Annotated[int, PORT_OR_ANY] = 8081
    max_body_bytes: Annotated[int, Range(1024, 64 * MIB)] = 65536
    # POST /v1/messages/batch: up to 1,000 messages
    max_batch_body_bytes: Annotated[int, Range(1024, 256 * MIB)] = 2_097_152
    tls_cert: str | None = None
    tls_key: str | None = None
    # GCRA per API key (engine.http.ratelimit)
    rate_limit_per_second: Annotated[float, Range(0, 1e9, open_low=True)] = 1000.0
    rate_limit_burst: Annotated[int, Range(1, 1_000_000_000)] = 2000
    # webhook deliveries in flight at once
    webhook_concurrency: Annotated[int, Range(1, 10_000)] = 32
    # queued + waiting for retry; beyond this events are dropped
    webhook_max_backlog: Annotated[int, Range(1, 100_000_000)] = 100000
    # retries stop this long after the first attempt
    webhook_retry_window_seconds: Annotated[float, Range(0, 7 * 86400)] = 86400.0
    webhook_allow_private_networks: bool = False  # True lets webhooks reach loopback/private addresses
    # a rotated-out secret still signs this long
    webhook_secret_overlap_seconds: Annotated[float, Range(0, MAX_SECRET_OVERLAP_SECONDS)] = 86400.0
    # a request head must arrive within this (else 408, closed)
    header_timeout_seconds: Annotated[float, TIMEOUT] = 10.0
    # a request body must arrive within this (else 408, closed)
    body_timeout_seconds: Annotated[float, TIMEOUT] = 30.0
    # an idle keep-alive connection is closed after this
    keepalive_timeout_seconds: Annotated[float, TIMEOUT] = 30.0
    max_connections: Annotated[int, CONNECTIONS] = 1000  # open connections on the customer port
    # ... from one source address (IPv6: one /64)
    max_connections_per_address: Annotated[int, CONNECTIONS] = 100
    # the same bounds for the control port
    control_max_connections: Annotated[int, CONNECTIONS] = 100
    control_max_connections_per_address: Annotated[int, CONNECTIONS] = 20
    # failed control-port logins per source address
    control_auth_failures_per_minute: Annotated[int, Range(1, 1_000_000)] = 10
    # customer requests being served at once; beyond: 503 at the door
    max_pending_requests: Annotated[int, Range(1, 1_000_000_000)] = 64
    # the HTTP loop's lag beyond which requests are refused (503)
    queue_delay_target_ms: Annotated[float, Range(0, 1e9, open_low=True)] = 25.0


@dataclass(frozen=True)
class EmailSettings:
    """``[email]``: SMTP for customer mail (``engine.mail``). No ``host``: mail is only logged."""

    host: str = ""  # empty: the embedded default logs the template name and account id, sends nothing
    port: Annotated[int, PORT] = 587
    from_address: str = "smsroute <no-reply@localhost>"  # the TOML key is ``from``
    tls: str = "starttls"  # none | starttls | tls
    username: str = ""
    password_file: str = ""  # credentials come from a file or an environment variable, never the TOML
    password_env: str = ""
    timeout_seconds: Annotated[float, TIMEOUT] = 30.0
    require_confirmation: bool = False  # True: an unconfirmed account's submits are refused
    link_base: str = "http://127.0.0.1:8080"  # where the customer API is reached, for mailed links
    # mails waiting to be sent; beyond this new mail is refused (StoreFull)
    max_outbox: Annotated[int, Range(1, 10_000_000)] = 10000
    retry_base_seconds: Annotated[float, Range(0, 86400, open_low=True)] = 30.0
    # an unsendable mail is dropped after the retention row ``outbound_mail`` (storage.retention: 3 days)
    retry_cap_seconds: Annotated[float, Range(0, 3 * 86400, open_low=True)] = 3600.0


@dataclass(frozen=True)
class PrivacySettings:
    """``[privacy]``: data-subject requests (policy 7.5)."""

    # per source address and per account
    unverified_requests_per_hour: Annotated[int, Range(1, 1_000_000)] = 5
    # a wallet-signature challenge is usable this long, once
    challenge_ttl_seconds: Annotated[int, Range(60, 86400)] = 900
    # an e-mailed verification link is usable this long, once (and a challenge staff mail to a holder)
    link_ttl_seconds: Annotated[int, Range(60, 7 * 86400)] = 86400


@dataclass(frozen=True)
class KeySettings:
    """``[keys]``: where the key-encryption key lives and where the wrapped data keys are kept."""

    provider: str = "local"  # "local": a master.key file in ``dir`` | "pkcs11": an HSM token
    dir: str = ""  # "" = <data_dir>/keys; a relative path is relative to the data directory
    # unwrapped per-account keys kept in memory (LRU)
    account_key_cache: Annotated[int, Range(1, 1_000_000)] = 10000
    pkcs11_module: str = ""  # path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
    pkcs11_token_label: str = ""
    pkcs11_key_label: str = "smsroute-kek"  # the AES key object in the token (made on a first start)
    pkcs11_pin_env: str = ""  # name of the environment variable that holds the user PIN, or
    pkcs11_pin_file: str = ""  # a file that holds it (exactly one of the two)


@dataclass(frozen=True)
class NatsSettings:
    """``[nats]``: how every process of a cluster reaches a NATS deployment given with ``--nats URL``
    (``engine.cluster.nats_security``). A ``tls://`` URL is TLS 1.2+ with the server's certificate
    verified; a ``nats://`` URL beyond loopback is refused. Secrets come from files, never the TOML.
    ``smsroute run --workers N`` without ``--nats`` starts its own loopback server with a token of its
    own and needs none of this."""

    ca_file: str = ""  # CA bundle the servers' certificates are verified with ("": the system's)
    cert_file: str = ""  # a client certificate (mutual TLS), with key_file
    key_file: str = ""
    token_file: str = ""  # a file whose first line is the server's authorization token, or
    user: str = ""  # a user name, with password_file
    password_file: str = ""


@dataclass(frozen=True)
class PopSettings:
    name: str
    city: str


@dataclass(frozen=True)
class _PopTable:
    """The keys of a ``[pops.<name>]`` table (checked like every other table)."""

    city: str = ""  # "": the POP's name


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


@dataclass(frozen=True)
class Settings:
    engine: EngineLimits
    http: HttpSettings
    pops: dict[str, PopSettings]
    carriers: dict[str, CarrierSettings]
    routing: RoutingTable
    raw: dict[str, Any]  # the merged TOML document, for display and for building derived configs
    email: EmailSettings = field(default_factory=EmailSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    keys: KeySettings = field(default_factory=KeySettings)
    nats: NatsSettings = field(default_factory=NatsSettings)


#: The tables whose numbers have ranges, for ``ranges_text`` (a carrier kind lists only its own keys).
RANGED_TABLES: tuple[tuple[str, type, type | None], ...] = (
    ("[engine]", EngineLimits, None), ("[http]", HttpSettings, None), ("[email]", EmailSettings, None),
    ("[privacy]", PrivacySettings, None), ("[keys]", KeySettings, None),
    ("[carriers.<name>]", CarrierOptions, None),
    ('kind = "simulated"', SimulatedCarrierOptions, CarrierOptions),
    ('kind = "smpp"', SmppCarrierOptions, CarrierOptions),
)


def ranges_text() -> str:
    """Every numeric key with its allowed range, as the README's configuration section lists them:
    ``[1, 255]`` includes both ends, ``(0, 3600]`` excludes 0."""
    lines = []
    for title, cls, base in RANGED_TABLES:
        inherited = ranges(base) if base else {}
        own = {k: r for k, r in ranges(cls).items() if k not in inherited}
        keys = ", ".join(f"`{TOML_NAMES.get(k, k)}` {'(' if r.open_low else '['}{_grouped(r.low)}, "
                         f"{_grouped(r.high)}]" for k, r in own.items())
        lines.append(f"- `{title}`: {keys}")
    lines.append(f"- `kind = \"simulated\"` delays (`latency`, `receipt_delay`): ms and each `*_ms` "
                 f"[{_grouped(DELAY_MS.low)}, {_grouped(DELAY_MS.high)}], `sigma` "
                 f"[{_grouped(SIGMA.low)}, {_grouped(SIGMA.high)}]")
    lines.append(f"- `[rates]` and a route carrier's `cost_micro_usd`: [0, {_grouped(MAX_MICRO_USD_PER_SEGMENT)}]"
                 " micro-USD per segment")
    lines.append(f"- a route's and a route carrier's `weight` [{_grouped(WEIGHT.low)}, {_grouped(WEIGHT.high)}],"
                 f" a route carrier's `priority` [{_grouped(PRIORITY.low)}, {_grouped(PRIORITY.high)}]")
    return "\n".join(lines)


TOML_NAMES = {"from_address": "from"}  # fields whose TOML key is another word


def _grouped(value: float) -> str:
    return f"{int(value):_}" if float(value).is_integer() else f"{value:g}"


def default_document() -> dict[str, Any]:
    """The embedded default configuration as a dict."""
    text = resources.files("engine").joinpath("default.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Merge ``over`` into a copy of ``base``: tables merge, everything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                  *, replace_topology: bool = False) -> Settings:
    """Read the default, the file at ``path`` and ``overrides``; validate; return frozen settings.

    A config file that defines ``[carriers]`` or ``[[routes]]`` replaces the default topology (POPs,
    carriers, routes and rates of the file are used as given) rather than merging with the simulated one.
    """
    doc = default_document()
    for layer in (_read_toml(path) if path else None, overrides):
        if not layer:
            continue
        if replace_topology or "carriers" in layer or "routes" in layer:
            for key in ("carriers", "routes"):
                if key in layer:
                    doc.pop(key, None)
        doc = deep_merge(doc, layer)
    return settings_from_document(doc)


# The tables a config may have: anything else is a typo that would otherwise be ignored unseen.
TABLES = ("engine", "http", "keys", "pops", "carriers", "routes", "rates", "email", "privacy", "nats")


def settings_from_document(doc: dict[str, Any]) -> Settings:
    """Validate a merged config document (raises ``ConfigError`` with the offending key)."""
    for name in doc:
        if name not in TABLES:
            close = difflib.get_close_matches(str(name), TABLES, n=1)
            raise ConfigError(f"config: unknown table [{name}]"
                              + (f" (did you mean [{close[0]}]?)" if close else
                                 f" (the tables are {', '.join(TABLES)})"))
    limits = typed_table(EngineLimits, doc.get("engine", {}), "engine")
    if limits.child_kill_after_seconds <= limits.child_hung_after_seconds:
        raise ConfigError("config: engine.child_kill_after_seconds must be longer than "
                          "engine.child_hung_after_seconds (a child is reported hung before it is killed)")
    http = typed_table(HttpSettings, doc.get("http", {}), "http")
    _check_tls(http)
    keys = typed_table(KeySettings, doc.get("keys", {}), "keys")
    _check_keys(keys)
    pops = {}
    for name, table in _table(doc, "pops").items():
        if not isinstance(table, dict):
            raise ConfigError(f"config: [pops.{name}] must be a table")
        pops[name] = PopSettings(name=name, city=typed_table(_PopTable, table, f"pops.{name}").city or name)
    if not pops:
        raise ConfigError("config: at least one [pops.<name>] is required")
    carriers = {}
    for name, table in _table(doc, "carriers").items():
        where = f"carriers.{name}"
        if not isinstance(table, dict):
            raise ConfigError(f"config: [{where}] must be a table")
        pop, kind = table.get("pop"), table.get("kind", "simulated")
        for key, value in (("pop", pop), ("kind", kind)):
            if value is not None and not isinstance(value, str):  # (a missing pop is named below)
                raise ConfigError(f"config: {where}.{key} must be a string")
        if pop not in pops:
            raise ConfigError(f"config: {where}.pop = {pop!r} is not a configured POP")
        options = carrier_options(kind, {k: v for k, v in table.items() if k not in ("pop", "kind")},
                                  where)
        carriers[name] = CarrierSettings(name=name, pop=pop, kind=kind, options=options)
    routing = RoutingTable.from_document(
        {"routes": doc.get("routes", []), "rates": doc.get("rates", {})},
        pops=set(pops), carriers={n: c.pop for n, c in carriers.items()},
    )
    return Settings(engine=limits, http=http, pops=pops, carriers=carriers, routing=routing, raw=doc,
                    email=_email_settings(doc.get("email", {})),
                    privacy=typed_table(PrivacySettings, doc.get("privacy", {}), "privacy"),
                    keys=keys, nats=_nats_settings(doc.get("nats", {})))


def _nats_settings(table: Any) -> NatsSettings:
    """``[nats]``: a client certificate needs its key; one way to authenticate at most."""
    if isinstance(table, dict):
        for secret in ("password", "token", "seed", "nkey"):
            if secret in table:
                raise ConfigError(f"config: [nats] {secret} is refused: credentials never go in the "
                                  f"TOML; set {'password' if secret == 'password' else 'token'}_file")
    nats = typed_table(NatsSettings, table, "nats")
    if bool(nats.cert_file) != bool(nats.key_file):
        raise ConfigError("config: [nats] cert_file and key_file go together")
    if bool(nats.user) != bool(nats.password_file):
        raise ConfigError("config: [nats] user and password_file go together")
    if nats.token_file and nats.user:
        raise ConfigError("config: [nats] token_file and user are alternatives: one way to authenticate")
    return nats


def _email_settings(table: Any) -> EmailSettings:
    """``[email]``, with ``from`` (a Python keyword) read into ``from_address``; credentials are never
    accepted in the TOML itself."""
    if not isinstance(table, dict):
        raise ConfigError("config: [email] must be a table")
    table = dict(table)
    for secret in ("password", "pass", "secret"):
        if secret in table:
            raise ConfigError(f"config: [email] {secret} is refused: credentials never go in the "
                              "TOML; set password_file or password_env")
    if "from" in table:
        table["from_address"] = table.pop("from")
    email = typed_table(EmailSettings, table, "email")
    if email.tls not in ("none", "starttls", "tls"):
        raise ConfigError("config: email.tls must be 'none', 'starttls' or 'tls'")
    if email.password_file and email.password_env:
        raise ConfigError("config: [email] password_file and password_env are alternatives")
    if email.host and email.tls == "none" and not _is_loopback(email.host):
        raise ConfigError(f"config: email.host = {email.host!r} is beyond loopback: tls = 'none' is "
                          "refused there (use 'starttls' or 'tls': TLS 1.2+)")
    if (email.password_file or email.password_env) and not email.username:
        raise ConfigError("config: [email] a password needs a username")
    return email


def _check_keys(keys: KeySettings) -> None:
    if keys.provider not in ("local", "pkcs11"):
        raise ConfigError("config: [keys] provider must be 'local' or 'pkcs11'")
    if keys.provider == "pkcs11":
        if not (keys.pkcs11_module and keys.pkcs11_token_label and keys.pkcs11_key_label):
            raise ConfigError("config: [keys] provider = 'pkcs11' needs pkcs11_module, "
                              "pkcs11_token_label and pkcs11_key_label")
        if bool(keys.pkcs11_pin_env) == bool(keys.pkcs11_pin_file):
            raise ConfigError("config: [keys] provider = 'pkcs11' needs exactly one of "
                              "pkcs11_pin_env and pkcs11_pin_file (the PIN is never in the config)")


def _check_tls(http: HttpSettings) -> None:
    """TLS 1.2+ wherever a port is exposed beyond loopback (policy 9): refuse a plaintext public bind."""
    if bool(http.tls_cert) != bool(http.tls_key):
        raise ConfigError("config: [http] tls_cert and tls_key go together")
    if http.tls_cert:
        return
    for name in ("customer_host", "control_host"):
        host = getattr(http, name)
        if not _is_loopback(host):
            raise ConfigError(f"config: [http] {name} = {host!r} is beyond loopback: set tls_cert and "
                              "tls_key (TLS 1.2+) or bind 127.0.0.1")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: could be anything


def _read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc


def _table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"config: [{key}] must be a table")
    return value


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
