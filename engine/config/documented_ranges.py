"""Every numeric key's allowed range, listed as the README's configuration section shows it (a test keeps
the two equal): the ranges are written once, on the settings' fields, and this reads them back."""

from __future__ import annotations

from engine.config.carriers import (
    DELAY_MS,
    SIGMA,
    CarrierOptions,
    SimulatedCarrierOptions,
    SmppCarrierOptions,
)
from engine.config.email_settings import EmailSettings
from engine.config.engine_limits import EngineLimits
from engine.config.http_settings import HttpSettings
from engine.config.key_settings import KeySettings
from engine.config.privacy_settings import PrivacySettings
from engine.routing import MAX_MICRO_USD_PER_SEGMENT, PRIORITY, WEIGHT
from engine.typed_tables import ranges

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
