"""What the simulated SMSC does wrong on purpose: per-part fault scripts and named profiles.

A **part script** answers particular parts a particular way, in order: ``{1: [0x58], 2: [0x0B]}`` answers
the first part 1 (the UDH sequence number; a message sent whole is part 1) the SMSC sees with 0x58
ESME_RTHROTTLED and the first part 2 with 0x0B ESME_RINVDSTADR; every later part gets the configured
behaviour. Besides a command status an entry may be ``"drop"`` (close that connection as the part arrives,
unanswered), ``"silent"`` (read the part, never answer it) or ``"unterminated"`` (accept it with a
``submit_sm_resp`` whose message_id lacks its NUL terminator, as some SMSCs write it). Tests use scripts to produce exact
situations - a permanent and a retryable error on two parts of one message, a throttled first part while
the others wait - and count what the SMSC received.

A **profile** is a named :class:`bench.smsc.SmscConfig`: ``default`` (answers everything at once, every
receipt DELIVRD) and ``hostile`` (``python -m bench.smsc --profile hostile``, ``smsroute bench --smsc
hostile``): latency, per-bind throttling, retryable and permanent errors and ``generic_nack``s on single
parts, a dropped connection every 1,500 submits, and receipts that are early, duplicated, in hex vs
decimal and of every final state.
"""

from __future__ import annotations

from collections import deque

from engine.smpp import pdu as p

DROP = "drop"  # close the connection as this part arrives; it is never answered
SILENT = "silent"  # read the part and never answer it
UNTERMINATED = "unterminated"  # accept it; the resp's message_id has no NUL terminator

HOSTILE = {
    "latency": (0.0, 0.02),
    "throttle": 800.0,  # submit_sm per second per bind, beyond which 0x58
    "error_rates": {p.ESME_RTHROTTLED: 0.01, p.ESME_RMSGQFUL: 0.01, p.ESME_RSYSERR: 0.005,
                    p.ESME_RX_T_APPN: 0.005, p.ESME_RINVDSTADR: 0.005, p.ESME_RINVMSGLEN: 0.002},
    "nack_rate": 0.002,
    "close_every_submits": 1500,
    "receipt_delay": (0.0, 0.3),
    "receipt_states": {"DELIVRD": 0.86, "UNDELIV": 0.05, "EXPIRED": 0.03, "REJECTD": 0.03,
                       "DELETED": 0.01, "UNKNOWN": 0.02},
    "early_receipt_rate": 0.05,
    "duplicate_receipt_rate": 0.05,
    "receipt_tlvs": True,
    "id_format": "hex",
    "receipt_id_format": "padded_decimal",
}
PROFILES: dict[str, dict] = {"default": {}, "hostile": HOSTILE}


def part_number(pdu: p.Pdu) -> int:
    """The 1-based sequence number of a concatenated part (its UDH), 1 for a message sent whole."""
    data = pdu.params.get("short_message") or b""
    if pdu.params.get("esm_class", 0) & 0x40 and len(data) >= 6 and data[:3] == b"\x05\x00\x03":
        return data[5]
    return 1


class PartScript:
    """The scripted answers still to give, per part number (consumed in order)."""

    def __init__(self, script: dict[int, list] | None = None) -> None:
        self._left = {int(k): deque(v) for k, v in (script or {}).items()}

    def __bool__(self) -> bool:
        return any(self._left.values())

    def next_for(self, part_no: int) -> int | str | None:
        """The scripted answer for the next part with this number, or None (behave as configured)."""
        left = self._left.get(part_no)
        return left.popleft() if left else None
