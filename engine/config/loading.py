"""Loading: the embedded default, a config file and overrides merged into one frozen ``Settings``.

The embedded default (``engine/default.toml``) is always the base; a config file given with
``--config`` / ``config=`` is deep-merged over it, then ``overrides`` (a dict, for embedding hosts and the
benchmark harness). Everything is validated here, each section by its own module, so the rest of the
engine can trust its settings.

>>> s = load_settings()
>>> sorted(s.pops)
['fra', 'gru', 'sin']
"""

from __future__ import annotations

import copy
import difflib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from engine.config.carriers import CarrierSettings, carriers_from_table
from engine.config.email_settings import EmailSettings, email_from_table
from engine.config.engine_limits import EngineLimits, limits_from_table
from engine.config.http_settings import HttpSettings, http_from_table
from engine.config.key_settings import KeySettings, keys_from_table
from engine.config.nats_settings import NatsSettings, nats_from_table
from engine.config.pops import PopSettings, pops_from_table
from engine.config.privacy_settings import PrivacySettings, privacy_from_table
from engine.errors import ConfigError
from engine.routing import RoutingTable


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
    limits = limits_from_table(doc.get("engine", {}))
    http = http_from_table(doc.get("http", {}))
    keys = keys_from_table(doc.get("keys", {}))
    pops = pops_from_table(_table(doc, "pops"))
    carriers = carriers_from_table(_table(doc, "carriers"), pops)
    routing = RoutingTable.from_document(
        {"routes": doc.get("routes", []), "rates": doc.get("rates", {})},
        pops=set(pops), carriers={n: c.pop for n, c in carriers.items()},
    )
    return Settings(engine=limits, http=http, pops=pops, carriers=carriers, routing=routing, raw=doc,
                    email=email_from_table(doc.get("email", {})),
                    privacy=privacy_from_table(doc.get("privacy", {})),
                    keys=keys, nats=nats_from_table(doc.get("nats", {})))


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
