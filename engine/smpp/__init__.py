"""SMPP 3.4 for smsroute: the PDU codec (``pdu``), receipt parsing (``receipts``), building submits from
messages (``submit``) and the asyncio ESME connector (``client``).

:func:`smsc_carrier_settings` gives the settings dict an ``SmppCarrierActor`` takes, for wiring
``kind = "smpp"`` carriers and the ``--smsc HOST:PORT`` flags.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_SETTINGS", "smsc_carrier_settings"]

DEFAULT_SETTINGS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 2775,
    "system_id": "smsroute",
    "password": "secret",
    "system_type": "",
    "window": 10,  # submits in flight per bind
    "throughput": 0,  # submit_sm per second per bind; 0 = unlimited
    "binds": 1,
    "bind_mode": "transceiver",  # or "transmitter_receiver": one transmitter + one receiver per bind
    "tls": False,
    "tls_verify": True,
    "tls_ca_file": "",  # PEM bundle to trust instead of the system store ("" = system)
    "enquire_link_seconds": 30.0,
    "resp_timeout_seconds": 10.0,
    "gsm7_packed": False,
    "use_message_payload": False,
    "reconnect_min_seconds": 0.5,
    "reconnect_max_seconds": 30.0,
    "registered_delivery": 1,  # ask for a receipt on final state
    "early_receipt_seconds": 30.0,  # how long a receipt for an unknown id is held for its resp
    "receipt_match_seconds": 259200.0,  # how long a submitted id waits for its receipt (3 days)
    "max_pending_receipts": 1_000_000,
    "queue_limit": 100_000,  # parts waiting for a window slot, per carrier
}


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
