"""Configuration: one frozen ``Settings`` object, read once from TOML.

The embedded default (``engine/default.toml``) is always the base; a config file given with
``--config`` / ``config=`` is deep-merged over it, then ``overrides``; everything is validated when it is
loaded, so the rest of the engine can trust its settings. One module per section, each with its keys,
their defaults and ranges, and its checks across keys:

    loading.py            Settings, load_settings: default + file + overrides, merged and validated
    engine_limits.py      [engine]     in flight, retries, body TTL and sweeps, map sizes, child supervision
    http_settings.py      [http]       binds and TLS, bodies, rate limit, webhooks, connections, the door
    email_settings.py     [email]      SMTP for customer mail
    privacy_settings.py   [privacy]    data-subject request limits and lifetimes
    key_settings.py       [keys]       the KEK's provider and where the keys live
    nats_settings.py      [nats]       how a cluster's processes reach NATS
    pops.py               [pops.*]     the points of presence
    carriers.py           [carriers.*] each carrier's kind and typed options (simulated, smpp)
    bounds.py             the ranges several sections share; hosts.py: loopback or not
    documented_ranges.py  every range as the README lists it

Routes and rates (``[[routes]]``, ``[rates]``) are ``engine.routing``'s. Import from here:
``from engine.config import X`` is the public API.
"""

from engine.config.bounds import MIB, PORT, TIMEOUT
from engine.config.carriers import (
    BIND_MODES,
    CARRIER_KINDS,
    DELAY_MS,
    DISTRIBUTIONS,
    MAX_AUTH_RETRY_SECONDS,
    SIGMA,
    SIMULATED_OUTCOMES,
    SMPP_BIND_FIELDS,
    CarrierOptions,
    CarrierSettings,
    SimulatedCarrierOptions,
    SmppCarrierOptions,
    carrier_options,
)
from engine.config.documented_ranges import RANGED_TABLES, TOML_NAMES, ranges_text
from engine.config.email_settings import EmailSettings
from engine.config.engine_limits import (
    MAP_SIZE_RANGE,
    MAX_BODY_TTL_SECONDS,
    MAX_SWEEP_INTERVAL_SECONDS,
    EngineLimits,
)
from engine.config.hosts import is_loopback as _is_loopback
from engine.config.http_settings import (
    CONNECTIONS,
    MAX_SECRET_OVERLAP_SECONDS,
    PORT_OR_ANY,
    HttpSettings,
)
from engine.config.key_settings import KeySettings
from engine.config.loading import (
    TABLES,
    Settings,
    deep_merge,
    default_document,
    load_settings,
    settings_from_document,
)
from engine.config.nats_settings import NatsSettings
from engine.config.pops import PopSettings
from engine.config.privacy_settings import PrivacySettings

__all__ = [
    "BIND_MODES",
    "CARRIER_KINDS",
    "CONNECTIONS",
    "DELAY_MS",
    "DISTRIBUTIONS",
    "MAP_SIZE_RANGE",
    "MAX_AUTH_RETRY_SECONDS",
    "MAX_BODY_TTL_SECONDS",
    "MAX_SECRET_OVERLAP_SECONDS",
    "MAX_SWEEP_INTERVAL_SECONDS",
    "MIB",
    "PORT",
    "PORT_OR_ANY",
    "RANGED_TABLES",
    "SIGMA",
    "SIMULATED_OUTCOMES",
    "SMPP_BIND_FIELDS",
    "TABLES",
    "TIMEOUT",
    "TOML_NAMES",
    "CarrierOptions",
    "CarrierSettings",
    "EmailSettings",
    "EngineLimits",
    "HttpSettings",
    "KeySettings",
    "NatsSettings",
    "PopSettings",
    "PrivacySettings",
    "Settings",
    "SimulatedCarrierOptions",
    "SmppCarrierOptions",
    "_is_loopback",  # engine.cluster.nats_security's name for it (hosts.is_loopback)
    "carrier_options",
    "deep_merge",
    "default_document",
    "load_settings",
    "ranges_text",
    "settings_from_document",
]
