"""After a bench run against the in-process simulated SMSC: was anything lost, and does every status match
what the SMSC did? (``smsroute bench --smsc hostile``.)

The SMSC records every part it received, what it answered and which receipt it sent for each message id it
gave out; the engine's records hold each message's status, error, refund and - once a carrier acknowledged
every part - the carrier's id per part. The check, per message the bench's account sent:

* **lost**: still not final once the engine has nothing in flight (or its validity has long passed);
* a message acknowledged by the carrier must have every part answered ``ESME_ROK`` by the SMSC under the id
  the engine kept, and its status must be the worst of the receipts the SMSC sent for those ids
  (``expired`` if one never came); it is never refunded;
* a message never acknowledged can only be ``rejected`` with a permanent status the SMSC really answered,
  or ``failed`` (and then refunded) - never ``delivered`` or ``expired``.

Anything else is a *contradiction*, listed with the message id. The verdict is ``ok`` when nothing is lost
and nothing contradicts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from engine.smpp import pdu as p
from engine.smpp.client import outcome_of
from engine.status import DELIVERED, EXPIRED, FAILED, FINAL, REJECTED, status_from_smpp_state, worst

_EXAMPLES = 10


def wait_until_settled(engine: Any, timeout_s: float) -> None:
    """Give messages still in flight until ``timeout_s`` to reach a final status."""
    deadline = time.monotonic() + timeout_s
    while engine.gate.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)


def check(records: Iterable, smsc: Any) -> dict[str, Any]:
    """Compare the engine's ``records`` with what ``smsc`` (a ``SimulatedSmsc``) received and answered."""
    ok_ids = {part.message_id for part in smsc.parts if part.status == p.ESME_ROK}
    permanent = {p.status_name(part.status) for part in smsc.parts
                 if part.status >= 0 and outcome_of(part.status) == "reject"}
    counts = {"messages": 0, "final": 0, "lost": 0, "acknowledged": 0, "refunded": 0,
              "contradictions": 0}
    examples: list[str] = []
    for rec in records:
        counts["messages"] += 1
        problem = _problem(rec, ok_ids, permanent, smsc.receipt_log)
        if rec.status in FINAL:
            counts["final"] += 1
        else:
            counts["lost"] += 1
            problem = problem or "never reached a final status"
        counts["acknowledged"] += bool(rec.carrier_acked_at)
        counts["refunded"] += bool(rec.refunded_micro_usd)
        if problem and rec.status in FINAL:
            counts["contradictions"] += 1
        if problem and len(examples) < _EXAMPLES:
            examples.append(f"{rec.message_id}: {rec.status} ({rec.error!r}): {problem}")
    ok = counts["lost"] == 0 and counts["contradictions"] == 0 and counts["messages"] > 0
    return {"verdict": "ok" if ok else "FAILED", **counts, "examples": examples}


def _problem(rec, ok_ids: set[str], permanent: set[str], receipts: dict[str, str]) -> str:
    """What contradicts the SMSC in one record ("" if nothing)."""
    if rec.status not in FINAL:
        return ""
    if rec.carrier_acked_at:
        ids = list(rec.carrier_ids)
        if not ids or not all(ids) or not set(ids) <= ok_ids:
            return "acknowledged under ids the SMSC never accepted"
        if rec.refunded_micro_usd:
            return "refunded although the carrier acknowledged it"
        states = [receipts.get(i) for i in ids]
        expected = EXPIRED if None in states else worst([status_from_smpp_state(s) for s in states])
        if rec.status != expected:
            return f"the SMSC's receipts say {expected}"
        return ""
    if rec.status in (DELIVERED, EXPIRED):
        return "final by receipts the engine never matched to an acknowledgement"
    if rec.status == REJECTED and rec.error not in permanent:
        return "rejected for a status the SMSC never answered"
    if rec.status == FAILED and not rec.refunded_micro_usd and not any(rec.carrier_ids):
        return "failed without any acknowledgement but not refunded"
    return ""
