"""Delivery receipts: parse a receipt ``deliver_sm``, normalise message ids, and match receipts to submits.

A receipt is a ``deliver_sm`` - or a ``data_sm``, as some SMSCs send them, its text in ``message_payload`` -
with ``esm_class & 0x04``. The ``receipted_message_id`` / ``message_state`` /
``network_error_code`` TLVs win when present; otherwise the text is parsed::

    id:<id> sub:<n> dlvrd:<n> submit date:<YYMMDDhhmm[ss]> done date:<YYMMDDhhmm[ss]> stat:<STATE> err:<e> text:..

tolerating the vendor variants seen in the field: 10- or 12-digit dates, ``Text:``/``text:``/missing,
``submit_date``, long state names (``DELIVERED``), any case.

Ids are the classic cause of lost receipts: the ``submit_sm_resp`` may say ``0001A2F0`` while the receipt says
``107248``. :func:`id_keys` gives the lookup keys of an id, exact form first (lower case, leading zeros
stripped), then the hex<->decimal reinterpretation, and :class:`IdIndex` looks up by them in that order, so
an exact match always beats a reinterpreted one.

:class:`IdIndex` is also how a receipt that arrives *before* its ``submit_sm_resp`` is held: the connector
puts it in an index of early receipts (bounded in size and time) and checks that index on every resp; a held
receipt that times out is reported by :meth:`IdIndex.expire` so it is counted and logged, never dropped
silently.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from engine.errors import CarrierError
from engine.smpp.pdu import (
    DATA_SM,
    DELIVER_SM,
    TLV_MESSAGE_PAYLOAD,
    TLV_MESSAGE_STATE,
    TLV_NETWORK_ERROR_CODE,
    TLV_RECEIPTED_MESSAGE_ID,
    Pdu,
    tlv_int,
)

STATE_BY_CODE = {
    1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED",
    5: "UNDELIV", 6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD",
}
CODE_BY_STATE = {v: k for k, v in STATE_BY_CODE.items()}
FINAL_STATES = frozenset({"DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "UNKNOWN", "REJECTD"})
_STATE_ALIASES = {
    "DELIVERED": "DELIVRD", "UNDELIVERABLE": "UNDELIV", "UNDELIVERED": "UNDELIV",
    "REJECTED": "REJECTD", "ACCEPTED": "ACCEPTD", "EXPIRD": "EXPIRED", "DELETD": "DELETED",
}
_HEX = frozenset("0123456789abcdef")
# A field label: a known name at the start or after a blank, then a colon. The text between one label and
# the next is the field's value (its first word; none is an empty value): a value is never taken from the
# next field's label, and a word that only ends in a name (``msgid:``) is no label.
_LABEL = re.compile(
    r"(?:^|(?<=\s))(id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err|text)\s*:", re.IGNORECASE
)


class ReceiptError(CarrierError):
    """A ``deliver_sm`` flagged as a receipt that has no usable id or state."""

    code = "smpp_bad_receipt"


@dataclass(frozen=True, slots=True)
class Receipt:
    message_id: str  # as the SMSC wrote it
    state: str  # normalised 7-letter state name
    error: str  # err: field or network error code, "" when none
    submit_date: str = ""
    done_date: str = ""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def is_receipt(pdu: Pdu) -> bool:
    return pdu.command_id in (DELIVER_SM, DATA_SM) and bool(int(pdu.params.get("esm_class", 0)) & 0x04)


def normalise_state(raw: str) -> str:
    """``DELIVRD`` for ``delivrd``/``DELIVERED``/``2``; ``UNKNOWN`` for anything unrecognised."""
    s = raw.strip().upper()
    if _is_digits(s):
        return STATE_BY_CODE.get(int(s), "UNKNOWN")
    s = _STATE_ALIASES.get(s, s)
    return s if s in CODE_BY_STATE else "UNKNOWN"


def parse_receipt(pdu: Pdu) -> Receipt:
    """The receipt in a receipt ``deliver_sm`` or ``data_sm``: TLVs first, then the text. Raises ``ReceiptError``."""
    fields = parse_receipt_text(_receipt_text(pdu))
    tlvs = pdu.tlvs
    # an empty TLV (no octet, or only its NUL) names no id: the text's id: is used instead
    mid = tlvs.get(TLV_RECEIPTED_MESSAGE_ID, b"").rstrip(b"\x00").decode("latin-1").strip()
    message_id = mid or fields.get("id", "")
    if TLV_MESSAGE_STATE in tlvs:
        state = STATE_BY_CODE.get(tlv_int(tlvs[TLV_MESSAGE_STATE]), "UNKNOWN")
    elif fields.get("stat"):  # an empty stat: says nothing (not UNKNOWN, which is final)
        state = normalise_state(fields["stat"])
    else:
        raise ReceiptError("receipt has neither a message_state TLV nor a stat: field")
    if not message_id:
        raise ReceiptError("receipt has neither a receipted_message_id TLV nor an id: field")
    error = fields.get("err", "")
    nec = tlvs.get(TLV_NETWORK_ERROR_CODE)
    if nec and len(nec) == 3 and not error.strip("0"):
        error = f"{nec[0]}:{tlv_int(nec[1:])}"
    return Receipt(bounded_id(message_id), state, "" if not error.strip("0") else error,
                   fields.get("submit_date", ""), fields.get("done_date", ""))


def _receipt_text(pdu: Pdu) -> str:
    raw = pdu.params.get("short_message") or pdu.tlvs.get(TLV_MESSAGE_PAYLOAD, b"")
    return bytes(raw).decode("latin-1")


def parse_receipt_text(text: str) -> dict[str, str]:
    """The ``key:value`` fields of a receipt text (keys lower case, ``submit_date``/``done_date``).

    Fields are found by their labels (``id:``, ``sub:``, ... up to ``text:``), so an empty value stays
    empty (``id: sub:001`` has the id ``""``, not ``sub:001``) and unknown words are skipped.
    """
    labels = list(_LABEL.finditer(text))
    out: dict[str, str] = {}
    for i, label in enumerate(labels):
        k = label.group(1).lower().replace(" ", "_")
        if k == "text":  # the rest is the message's text, whatever it looks like
            break
        if k in ("submitdate", "donedate"):
            k = k[:-4] + "_date"
        end = labels[i + 1].start() if i + 1 < len(labels) else len(text)
        words = text[label.end() : end].split(None, 1)
        out.setdefault(k, words[0] if words else "")
    return out


def format_receipt_text(
    message_id: str, state: str, error: str = "000", *, submit_date: str = "", done_date: str = "",
    text_label: str = "text:", text: str = "",
) -> str:
    """A receipt text in the de-facto format (the simulated SMSC and tests use this)."""
    dlvrd = "001" if state == "DELIVRD" else "000"
    out = (
        f"id:{message_id} sub:001 dlvrd:{dlvrd} submit date:{submit_date} "
        f"done date:{done_date} stat:{state} err:{error}"
    )
    return f"{out} {text_label}{text[:20]}" if text_label else out


def parse_smpp_date(raw: str) -> float | None:
    """Unix seconds (UTC) of a ``YYMMDDhhmm`` or ``YYMMDDhhmmss`` date; None when it is not one."""
    if len(raw) not in (10, 12) or not _is_digits(raw):
        return None
    parts = [int(raw[i : i + 2]) for i in range(0, len(raw), 2)] + ([0] if len(raw) == 10 else [])
    yy, mo, dd, hh, mi, ss = parts
    if not (1 <= mo <= 12 and 1 <= dd <= 31 and hh < 24 and mi < 60 and ss < 61):
        return None
    try:
        return float(calendar.timegm((2000 + yy, mo, dd, hh, mi, ss, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


def _is_digits(s: str) -> bool:
    """ASCII digits only. ``str.isdigit`` also accepts ``"²"`` (latin-1 0xB2, so it can come off the
    wire), which ``int()`` refuses with a ValueError that would escape the reader."""
    return s.isascii() and s.isdigit()


MAX_ID_CHARS = 64  # SMPP 3.4: a message_id is a C-Octet String of at most 65 octets, its NUL included


def bounded_id(message_id: str) -> str:
    """The carrier's message id as the engine keeps it: as sent when it is at most ``MAX_ID_CHARS`` long
    (every SMSC that follows SMPP 3.4), else a fixed-length digest of its canonical form (``h:`` + 32
    hex digits). A non-conforming SMSC's kilobyte-long ids are then neither stored per part in every
    record nor held in memory; its receipts still match, since both sides go through this function."""
    if len(message_id) <= MAX_ID_CHARS:
        return message_id
    return "h:" + hashlib.sha256(canonical_id(message_id).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def canonical_id(message_id: str) -> str:
    """Lower case, no surrounding blanks, no leading zeros (``"0"`` stays ``"0"``)."""
    return message_id.strip().lower().lstrip("0") or "0"


def id_keys(message_id: str) -> list[str]:
    """Lookup keys of a message id: its canonical form, then its hex<->decimal reinterpretations."""
    c = canonical_id(message_id)
    keys = [c]
    if len(c) <= 40:
        if _is_digits(c):
            keys.append(format(int(c), "x"))
        if _HEX.issuperset(c):
            keys.append(str(int(c, 16)))
    return list(dict.fromkeys(keys))


class IdIndex:
    """Message id -> value, matched through :func:`id_keys`, bounded in size and age.

    ``put`` stores under the canonical key; ``get``/``pop`` try every key of the looked-up id, exact first.
    Values are lists so several entries may share an id (e.g. an ENROUTE and a DELIVRD receipt).
    """

    def __init__(self, ttl: float, max_size: int) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._d: OrderedDict[str, tuple[float, list[Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def put(self, message_id: str, value: Any, now: float) -> list[Any]:
        """Store ``value``; return the values evicted to stay within ``max_size``."""
        key = canonical_id(message_id)
        entry = self._d.get(key)
        if entry is None:
            self._d[key] = (now + self.ttl, [value])
        else:
            entry[1].append(value)
        evicted: list[Any] = []
        while len(self._d) > self.max_size:
            evicted.extend(self._d.popitem(last=False)[1][1])
        return evicted

    def _find(self, message_id: str) -> str | None:
        key = canonical_id(message_id)
        if key in self._d or not self._d:
            return key if self._d else None
        for key in id_keys(message_id)[1:]:
            if key in self._d:
                return key
        return None

    def get(self, message_id: str) -> list[Any] | None:
        key = self._find(message_id)
        return None if key is None else self._d[key][1]

    def pop(self, message_id: str) -> list[Any] | None:
        key = self._find(message_id)
        return None if key is None else self._d.pop(key)[1]

    def expire(self, now: float) -> list[Any]:
        """Remove and return every value whose deadline has passed (entries are in deadline order)."""
        out: list[Any] = []
        while self._d:
            key, (deadline, values) = next(iter(self._d.items()))
            if deadline > now:
                break
            del self._d[key]
            out.extend(values)
        return out
