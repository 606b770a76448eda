"""SMPP 3.4 for smsroute: the PDU codec (``pdu``), receipt parsing (``receipts``), building submits from
messages (``submit``) and the asyncio ESME connector (``client``).

:func:`smsc_carrier_settings` gives the settings dict an ``SmppCarrierActor`` takes, for wiring
``kind = "smpp"`` carriers and the ``--smsc HOST:PORT`` flags.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.config import SmppCarrierOptions, carrier_options

__all__ = ["DEFAULT_SETTINGS", "smpp_settings", "smsc_carrier_settings"]

#: Every SMPP carrier option with its default (the one definition is
#: :class:`engine.config.SmppCarrierOptions`; this is its dict form, as the connector reads it).
DEFAULT_SETTINGS: dict[str, Any] = dataclasses.asdict(SmppCarrierOptions())


def smsc_carrier_settings(
    host: str, port: int, system_id: str = "smsroute", password: str = "secret", **overrides: Any
) -> dict[str, Any]:
    """The settings dict of an SMPP carrier bound to ``host:port`` (unknown keys raise ``TypeError``).

    >>> smsc_carrier_settings("127.0.0.1", 2775, window=20)["window"]
    20
    """
    unknown = set(overrides) - set(DEFAULT_SETTINGS)
    if unknown:
        raise TypeError(f"unknown SMPP carrier settings: {sorted(unknown)}")
    settings = dict(DEFAULT_SETTINGS)
    settings.update(host=host, port=int(port), system_id=system_id, password=password)
    settings.update(overrides)
    return settings


def smpp_settings(options: SmppCarrierOptions | dict[str, Any]) -> dict[str, Any]:
    """The connector's settings dict from typed options, or from a dict validated like a config table
    (unknown keys and wrong types raise ``ConfigError``)."""
    if isinstance(options, dict):
        options = carrier_options("smpp", options)
    return dataclasses.asdict(options)
