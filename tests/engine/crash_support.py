"""Config overrides shared by the crash test and its child process."""

from __future__ import annotations

from engine.config import default_document
from tests.door import LAG_NEVER_SHEDS


def _with_outcomes(outcomes: dict, latency_ms: float = 0.0) -> dict:
    doc = default_document()
    carriers = {}
    for name, table in doc["carriers"].items():
        carriers[name] = {**table, "outcomes": outcomes, "throughput": 0, "window": 100000,
                          "latency": {"distribution": "fixed", "ms": latency_ms},
                          "receipt_delay": {"distribution": "fixed", "ms": 0},
                          "late_receipt_rate": 0.0, "duplicate_receipt_rate": 0.0}
    return {"carriers": carriers, "routes": doc["routes"],
            "engine": {"default_validity_seconds": 600, "retry_window_seconds": 600,
                       "resp_timeout_seconds": 600}}


def silent_carriers() -> dict:
    """Carriers that never answer: every accepted message stays open until the process dies."""
    return _with_outcomes({"no_answer": 1.0})


def delivering_carriers() -> dict:
    """Carriers that deliver everything at once."""
    return _with_outcomes({"delivered": 1.0})


def refund_overrides() -> dict:
    """Carriers that deliver at once, and messages valid for 1 s: with their carriers suspended they
    fail (no carrier available) within about a second and are refunded."""
    overrides = delivering_carriers()
    overrides["engine"].update(default_validity_seconds=1, expiry_grace_seconds=0.2, tick_ms=20)
    return overrides


def webhook_engine_overrides() -> dict:
    """Carriers that deliver at once, HTTP on free loopback ports, webhooks allowed to loopback, a door
    that a loaded machine's lag does not shut (``tests.door``)."""
    return {**delivering_carriers(),
            "http": {"customer_port": 0, "control_port": 0, "webhook_allow_private_networks": True,
                     **LAG_NEVER_SHEDS}}
