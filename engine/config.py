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
from typing import Any

from engine.errors import ConfigError
from engine.routing import RoutingTable
from engine.typed_tables import is_number, typed_table


@dataclass(frozen=True)
class EngineLimits:
    max_in_flight: int = 20000
    max_segments: int = 10
    default_validity_seconds: int = 30
    expiry_grace_seconds: float = 2.0
    retry_window_seconds: float = 10.0
    retry_base_ms: float = 20.0
    retry_cap_ms: float = 1000.0
    max_attempts: int = 4
    resp_timeout_seconds: float = 3.0
    admission_horizon_seconds: float = 30.0  # accept per route what its carriers take in this long
    body_ttl_seconds: int = 86400
    tick_ms: int = 200
    sweep_interval_seconds: float = 60.0
    map_size_mb: int = 1024  # the core's and each POP's LMDB map
    # the other stores' maps (each names itself when full: 503 store_full, smsroute_store_full_refusals_total)
    http_map_size_mb: int = 256  # idempotency records (24 h), request log (90 d), control audit (1 y), tokens
    mail_map_size_mb: int = 256  # the customer mail outbox
    privacy_map_size_mb: int = 256  # data-subject requests, incidents, support cases, links, challenges
    analytics_max_account_share: float = 0.5  # no analytics cell where one account has more than this
    gc_tuning: bool = True  # a long-running engine's GC: freeze start-up objects, rarer collections
    ledger_reconcile_at_start: bool = True  # reconcile records and ledger in the background at start-up
    shared_pop_store: bool = True  # a new data directory: the POPs of a process in one environment


@dataclass(frozen=True)
class HttpSettings:
    customer_host: str = "127.0.0.1"
    customer_port: int = 8080
    control_host: str = "127.0.0.1"
    control_port: int = 8081
    max_body_bytes: int = 65536
    max_batch_body_bytes: int = 2_097_152  # POST /v1/messages/batch: up to 1,000 messages
    tls_cert: str | None = None
    tls_key: str | None = None
    rate_limit_per_second: float = 1000.0  # GCRA per API key (engine.http.ratelimit)
    rate_limit_burst: int = 2000
    webhook_concurrency: int = 32  # webhook deliveries in flight at once
    webhook_max_backlog: int = 100000  # queued + waiting for retry; beyond this events are dropped
    webhook_retry_window_seconds: float = 86400.0  # retries stop this long after the first attempt
    webhook_allow_private_networks: bool = False  # True lets webhooks reach loopback/private addresses
    webhook_secret_overlap_seconds: float = 86400.0  # a rotated-out secret still signs this long
    header_timeout_seconds: float = 10.0  # a request head must arrive within this (else 408, closed)
    body_timeout_seconds: float = 30.0  # a request body must arrive within this (else 408, closed)
    keepalive_timeout_seconds: float = 30.0  # an idle keep-alive connection is closed after this
    max_connections: int = 1000  # open connections on the customer port
    max_connections_per_address: int = 100  # ... from one source address (IPv6: one /64)
    control_max_connections: int = 100  # the same bounds for the control port
    control_max_connections_per_address: int = 20
    control_auth_failures_per_minute: int = 10  # failed control-port logins per source address
    max_pending_requests: int = 64  # customer requests being served at once; beyond: 503 at the door
    queue_delay_target_ms: float = 25.0  # the HTTP loop's lag beyond which requests are refused (503)


@dataclass(frozen=True)
class EmailSettings:
    """``[email]``: SMTP for customer mail (``engine.mail``). No ``host``: mail is only logged."""

    host: str = ""  # empty: the embedded default logs the template name and account id, sends nothing
    port: int = 587
    from_address: str = "smsroute <no-reply@localhost>"  # the TOML key is ``from``
    tls: str = "starttls"  # none | starttls | tls
    username: str = ""
    password_file: str = ""  # credentials come from a file or an environment variable, never the TOML
    password_env: str = ""
    timeout_seconds: float = 30.0
    require_confirmation: bool = False  # True: an unconfirmed account's submits are refused
    link_base: str = "http://127.0.0.1:8080"  # where the customer API is reached, for mailed links
    max_outbox: int = 10000  # mails waiting to be sent; beyond this new mail is refused (StoreFull)
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 3600.0  # an unsendable mail is dropped after the retention row
    # ``outbound_mail`` (storage.retention: 3 days)


@dataclass(frozen=True)
class PrivacySettings:
    """``[privacy]``: data-subject requests (policy 7.5)."""

    unverified_requests_per_hour: int = 5  # per source address and per account
    challenge_ttl_seconds: int = 900  # a wallet-signature challenge is usable this long, once
    link_ttl_seconds: int = 86400  # an e-mailed verification link is usable this long, once


@dataclass(frozen=True)
class KeySettings:
    """``[keys]``: where the key-encryption key lives and where the wrapped data keys are kept."""

    provider: str = "local"  # "local": a master.key file in ``dir`` | "pkcs11": an HSM token
    dir: str = ""  # "" = <data_dir>/keys; a relative path is relative to the data directory
    account_key_cache: int = 10000  # unwrapped per-account keys kept in memory (LRU)
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
BIND_MODES = ("transceiver", "transmitter_receiver")
MAX_AUTH_RETRY_SECONDS = 3600.0  # a bind refused for good is still retried at least hourly


@dataclass(frozen=True)
class CarrierOptions:
    """The keys every carrier kind has, each with one default (adding a key: one line in a class below)."""

    window: int = 10  # submits in flight without an answer (per bind for SMPP)
    throughput: float = 0.0  # submits per second (per bind for SMPP); 0 = unlimited

    def check(self, where: str) -> None:
        if self.window < 1:
            raise ConfigError(f"config: {where}.window must be at least 1")


@dataclass(frozen=True)
class SimulatedCarrierOptions(CarrierOptions):
    """``kind = "simulated"``: an in-process carrier (``actors.carrier_sim``)."""

    latency: float | dict[str, Any] | None = None  # submit answer delay: ms or {distribution, ...}
    receipt_delay: float | dict[str, Any] | None = None  # answer -> receipt delay, same form
    outcomes: dict[str, Any] = field(default_factory=lambda: {"delivered": 1.0})
    late_receipt_rate: float = 0.01  # share of receipts that arrive ten times later
    duplicate_receipt_rate: float = 0.01  # share of receipts sent twice

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
        for key in ("late_receipt_rate", "duplicate_receipt_rate"):
            if getattr(self, key) > 1:
                raise ConfigError(f"config: {where}.{key} must be between 0 and 1")


# The bind's C-octet strings, in characters without the NUL (SMPP 3.4 section 4.1: 16, 9 and 13 octets)
SMPP_BIND_FIELDS = {"system_id": 15, "password": 8, "system_type": 12}


@dataclass(frozen=True)
class SmppCarrierOptions(CarrierOptions):
    """``kind = "smpp"``: binds to an SMSC (``actors.carrier_smpp``, ``engine.smpp.client``)."""

    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "smsroute"
    password: str = "secret"
    system_type: str = ""
    binds: int = 1  # sessions to the SMSC, each with its own window
    bind_mode: str = "transceiver"  # or "transmitter_receiver": one transmitter + one receiver per bind
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str = ""  # PEM bundle to trust instead of the system store ("" = system)
    enquire_link_seconds: float = 30.0  # keep-alive when idle
    resp_timeout_seconds: float = 10.0  # a submit_sm unanswered this long is retried
    gsm7_packed: bool = False
    use_message_payload: bool = False  # long messages whole in the message_payload TLV
    reconnect_min_seconds: float = 0.5
    reconnect_max_seconds: float = 1.0  # bounded low: a bind is back within about a second of its SMSC
    # a bind refused for good (bad credentials, system type, already bound...: engine.smpp.bind) waits
    # auth_retry_min_seconds, doubling per refusal up to auth_retry_max_seconds; a successful bind resets it
    auth_retry_min_seconds: float = 5.0
    auth_retry_max_seconds: float = 300.0
    bind_wait_seconds: float = 5.0  # a part waits this long in the queue for a bind to come up
    registered_delivery: int = 1  # ask for a receipt on final state
    early_receipt_seconds: float = 30.0  # how long a receipt for an unknown id is held for its resp
    receipt_match_seconds: float = 259200.0  # how long a submitted id waits for its receipt (3 days)
    max_pending_receipts: int = 1_000_000
    queue_limit: int = 100_000  # parts waiting for a window slot, per carrier

    def check(self, where: str) -> None:
        super().check(where)
        if not 0 < self.port < 65536:
            raise ConfigError(f"config: {where}.port must be between 1 and 65535")
        if self.binds < 1:
            raise ConfigError(f"config: {where}.binds must be at least 1")
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
    http = typed_table(HttpSettings, doc.get("http", {}), "http")
    _check_tls(http)
    keys = typed_table(KeySettings, doc.get("keys", {}), "keys")
    _check_keys(keys)
    _check_bounds(limits, http)
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
    if not 0 < email.port < 65536 or email.max_outbox < 1:
        raise ConfigError("config: email.port must be a TCP port and max_outbox at least 1")
    return email


def _check_keys(keys: KeySettings) -> None:
    if keys.provider not in ("local", "pkcs11"):
        raise ConfigError("config: [keys] provider must be 'local' or 'pkcs11'")
    if keys.account_key_cache < 1:
        raise ConfigError("config: [keys] account_key_cache must be at least 1")
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


MAX_SWEEP_INTERVAL_SECONDS = 3600  # a body past its TTL is shredded within one sweep interval
MAX_BODY_TTL_SECONDS = 86400  # the policy's 24 hours
MAX_SECRET_OVERLAP_SECONDS = 7 * 86400
MAP_SIZE_KEYS = ("map_size_mb", "http_map_size_mb", "mail_map_size_mb", "privacy_map_size_mb")


def _check_bounds(limits: EngineLimits, http: HttpSettings) -> None:
    """Refuse values that would break a promise (the 24-hour body limit) or disable a protection."""
    if not 0 < limits.sweep_interval_seconds <= MAX_SWEEP_INTERVAL_SECONDS:
        raise ConfigError(
            f"config: engine.sweep_interval_seconds = {limits.sweep_interval_seconds:g} must be more "
            f"than 0 and at most {MAX_SWEEP_INTERVAL_SECONDS} (bodies must be shredded within the "
            "24-hour limit)")
    if not 1 <= limits.body_ttl_seconds <= MAX_BODY_TTL_SECONDS:
        raise ConfigError(
            f"config: engine.body_ttl_seconds = {limits.body_ttl_seconds} must be between 1 and "
            f"{MAX_BODY_TTL_SECONDS} (the privacy policy keeps bodies 24 hours at most)")
    for name in MAP_SIZE_KEYS:
        if not getattr(limits, name) >= 1:
            raise ConfigError(f"config: engine.{name} must be at least 1 (MiB)")
    if not 0 < limits.analytics_max_account_share <= 1:
        raise ConfigError("config: engine.analytics_max_account_share must be more than 0 and at most 1")
    for name in ("header_timeout_seconds", "body_timeout_seconds", "keepalive_timeout_seconds",
                 "max_connections", "max_connections_per_address", "control_max_connections",
                 "control_max_connections_per_address", "control_auth_failures_per_minute",
                 "max_pending_requests", "queue_delay_target_ms", "max_batch_body_bytes"):
        if not getattr(http, name) > 0:
            raise ConfigError(f"config: http.{name} must be more than 0")
    if http.webhook_secret_overlap_seconds > MAX_SECRET_OVERLAP_SECONDS:
        raise ConfigError(f"config: http.webhook_secret_overlap_seconds must be at most "
                          f"{MAX_SECRET_OVERLAP_SECONDS} (7 days)")


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
