"""How the simulated SMSC writes a delivery receipt: a ``deliver_sm`` (or a ``data_sm``, its text in
``message_payload``) in the text format, optionally with the ``receipted_message_id`` / ``message_state``
TLVs, its id in the format a vendor might use."""

from __future__ import annotations

import time

from engine.smpp import pdu as p
from engine.smpp.receipts import CODE_BY_STATE, format_receipt_text

ID_FORMATS = ("same", "decimal", "hex", "padded_hex", "padded_decimal")


def receipt_id(n: int, resp_id: str, fmt: str) -> str:
    """The id a receipt names for message number ``n`` (answered as ``resp_id``)."""
    return {
        "same": resp_id,
        "decimal": str(n),
        "hex": format(n, "x"),
        "padded_hex": format(n, "012X"),
        "padded_decimal": format(n, "012d"),
    }[fmt]


def receipt_with(command: str, params: dict, text: bytes, tlvs: dict[int, bytes]) -> p.Pdu:
    """A ``deliver_sm`` (``text`` in short_message) or ``data_sm`` (``text``, if any, in
    message_payload) with these parameters and TLVs (sequence 0: the sender numbers it)."""
    if command == "data_sm":
        names = {name for name, _kind, _size in p.SCHEMAS[p.DATA_SM]}
        payload = {p.TLV_MESSAGE_PAYLOAD: text} if text else {}
        return p.Pdu(p.DATA_SM, 0, 0, {k: v for k, v in params.items() if k in names},
                     {**payload, **tlvs})
    if command != "deliver_sm":
        raise ValueError(f"receipts are sent as deliver_sm or data_sm, not {command!r}")
    return p.Pdu(p.DELIVER_SM, 0, 0, {**params, "short_message": text}, tlvs)


def receipt_pdu(submit: p.Pdu, rid: str, state: str, *, date_digits: int = 10,
                text_label: str = "text:", tlvs: bool = False, command: str = "deliver_sm") -> p.Pdu:
    """The receipt (``command``: deliver_sm or data_sm) for a received ``submit``."""
    stamp = time.strftime("%y%m%d%H%M%S", time.gmtime())[:date_digits]
    text = format_receipt_text(rid, state, "000" if state == "DELIVRD" else "001",
                               submit_date=stamp, done_date=stamp, text_label=text_label)
    extra = {}
    if tlvs:
        extra = {p.TLV_RECEIPTED_MESSAGE_ID: rid.encode() + b"\x00",
                 p.TLV_MESSAGE_STATE: bytes([CODE_BY_STATE[state]])}
    params = {
        "source_addr_ton": submit.get("dest_addr_ton", 0),
        "source_addr_npi": submit.get("dest_addr_npi", 0),
        "source_addr": submit.get("destination_addr", ""),
        "dest_addr_ton": submit.get("source_addr_ton", 0),
        "dest_addr_npi": submit.get("source_addr_npi", 0),
        "destination_addr": submit.get("source_addr", ""),
        "esm_class": 0x04,
    }
    return receipt_with(command, params, text.encode("latin-1"), extra)
