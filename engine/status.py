"""The message status model: the policy's five statuses as a state machine over message parts.

States and where they come from (``sms.md`` section 4)::

    accepted   submit_sm_resp OK, ENROUTE, ACCEPTD          not final
    delivered  DELIVRD                                      final
    rejected   permanent submit error, REJECTD              final
    failed     UNDELIV, DELETED, UNKNOWN, retries exhausted final
    expired    EXPIRED, or no receipt within validity+grace final

Rules: a final state is terminal (later receipts change nothing); a duplicate receipt is harmless; receipts may
arrive in any order. A multipart message is ``delivered`` only when every part is; it stays ``accepted`` while
any part is not final; once all parts are final it takes its worst part's status
(rejected > failed > expired > delivered).

>>> s = MessageState(parts=2)
>>> s.apply(0, DELIVERED), s.status
(False, 'accepted')
>>> s.apply(1, FAILED), s.status
(True, 'failed')
>>> s.apply(1, DELIVERED), s.status   # final is terminal
(False, 'failed')
"""

from __future__ import annotations

ACCEPTED = "accepted"
DELIVERED = "delivered"
REJECTED = "rejected"
FAILED = "failed"
EXPIRED = "expired"

STATUSES = (ACCEPTED, DELIVERED, REJECTED, FAILED, EXPIRED)
FINAL = frozenset({DELIVERED, REJECTED, FAILED, EXPIRED})

# worse is larger; accepted is below every final state
_SEVERITY = {ACCEPTED: 0, DELIVERED: 1, EXPIRED: 2, FAILED: 3, REJECTED: 4}

_SMPP_STATE = {
    "ENROUTE": ACCEPTED,
    "ACCEPTD": ACCEPTED,
    "ACCEPTED": ACCEPTED,
    "DELIVRD": DELIVERED,
    "DELIVERED": DELIVERED,
    "EXPIRED": EXPIRED,
    "DELETED": FAILED,
    "UNDELIV": FAILED,
    "UNDELIVERABLE": FAILED,
    "UNKNOWN": FAILED,
    "REJECTD": REJECTED,
    "REJECTED": REJECTED,
}


def status_from_smpp_state(state: str) -> str:
    """Map an SMPP receipt state (``stat:`` text or ``message_state`` name) to one of the five statuses.

    An unrecognised state counts as ``failed`` only when it is final by SMPP's definition; we cannot know,
    so unknown names map to ``accepted`` (not final) and the message expires if nothing better arrives.
    """
    return _SMPP_STATE.get(state.strip().upper(), ACCEPTED)


def worst(statuses: list[str]) -> str:
    """The worst of several part statuses (``accepted`` if any part is not final)."""
    if any(s not in FINAL for s in statuses):
        return ACCEPTED
    return max(statuses, key=_SEVERITY.__getitem__)


class MessageState:
    """The status of one message, aggregated over its parts. Not thread-safe: one owner (its POP)."""

    __slots__ = ("parts", "status")

    def __init__(self, parts: int = 1, status: str = ACCEPTED) -> None:
        if parts < 1:
            raise ValueError("a message has at least one part")
        self.parts: list[str] = [ACCEPTED] * parts
        self.status = status

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def resize(self, parts: int) -> None:
        """The carrier told us how many parts it split the message into (it may send a long message
        whole, e.g. in SMPP ``message_payload``: then there is one part)."""
        if parts < 1 or parts == len(self.parts) or self.final:
            return
        if parts > len(self.parts):
            self.parts.extend([ACCEPTED] * (parts - len(self.parts)))
        else:
            del self.parts[parts:]
        self.status = worst(self.parts)

    def apply(self, part: int, status: str) -> bool:
        """Record ``status`` for ``part``; return True if the message's own status changed."""
        if status not in _SEVERITY:
            raise ValueError(f"unknown status {status!r}")
        if self.final or not 0 <= part < len(self.parts):
            return False
        if self.parts[part] in FINAL:
            return False  # a part's final state is terminal too
        self.parts[part] = status
        new = worst(self.parts)
        if new != self.status:
            self.status = new
            return True
        return False

    def finish(self, status: str) -> bool:
        """Force the whole message to a final status (expiry, retries exhausted); no-op if already final."""
        if status not in FINAL:
            raise ValueError(f"{status!r} is not a final status")
        if self.final:
            return False
        self.parts = [p if p in FINAL else status for p in self.parts]
        self.status = worst(self.parts)
        return True
