"""Turning one carrier message (``CarrierSubmitItem``) into the ``submit_sm`` parameters of its parts.

Rules (sms.md sections 1-3): the body is split with :mod:`engine.segments`; GSM-7 goes as data_coding 0x00,
unpacked (one septet per octet) unless the carrier wants packed septets, UCS-2 as data_coding 0x08; parts
carry the 6-octet concatenation UDH (``05 00 03 ref total seq``) with esm_class 0x40 (UDHI). A carrier that
asks for ``message_payload`` gets the whole encoded body in TLV 0x0424 as one submit and splits it itself.
Addresses: an alphanumeric sender goes as TON 5 / NPI 0, a numeric one as TON 1 / NPI 1; the destination as
TON 1 / NPI 1, digits without the '+'.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from engine import segments
from engine.errors import InvalidBody, InvalidNumber
from engine.smpp.pdu import TLV_MESSAGE_PAYLOAD

ESM_UDHI = 0x40
DC_DEFAULT = 0x00
DC_UCS2 = 0x08
_UDH_FILL_BITS = 1  # a 6-octet UDH is 48 bits; the next septet boundary is at 49


@dataclass(slots=True)
class SubmitPart:
    """One ``submit_sm`` to send, with the message ref and part index it answers for."""

    ref: str
    part: int
    parts: int
    params: dict = field(default_factory=dict)
    tlvs: dict = field(default_factory=dict)


def address_of_sender(sender: str) -> tuple[int, int, str]:
    """``(ton, npi, addr)``: alphanumeric -> 5/0 as given; numeric (optional '+') -> 1/1 digits."""
    digits = sender[1:] if sender.startswith("+") else sender
    if digits.isdigit() and digits.isascii():
        return 1, 1, digits
    if not sender or len(sender) > 20:
        raise InvalidNumber("sender ID must be 1..20 characters")
    return 5, 0, sender


def address_of_destination(to: str) -> tuple[int, int, str]:
    digits = to[1:] if to.startswith("+") else to
    if not (digits.isdigit() and digits.isascii() and 1 <= len(digits) <= 15):
        raise InvalidNumber("destination must be E.164 digits")
    return 1, 1, digits


class SubmitBuilder:
    """Builds the parts of each message for one carrier (it owns the rolling concatenation reference)."""

    def __init__(self, *, gsm7_packed: bool = False, use_message_payload: bool = False,
                 registered_delivery: int = 1) -> None:
        self.gsm7_packed = gsm7_packed
        self.use_message_payload = use_message_payload
        self.registered_delivery = registered_delivery
        self._refs = itertools.cycle(range(256))

    def build(self, ref: str, to: str, sender: str, body: str) -> list[SubmitPart]:
        """The parts of one message. Raises ``InvalidNumber`` / ``InvalidBody`` for what cannot go."""
        s_ton, s_npi, s_addr = address_of_sender(sender)
        d_ton, d_npi, d_addr = address_of_destination(to)
        plan = segments.plan(body, max_segments=segments.MAX_PARTS)
        base = {
            "source_addr_ton": s_ton, "source_addr_npi": s_npi, "source_addr": s_addr,
            "dest_addr_ton": d_ton, "dest_addr_npi": d_npi, "destination_addr": d_addr,
            "registered_delivery": self.registered_delivery,
            "data_coding": DC_DEFAULT if plan.encoding == segments.GSM7 else DC_UCS2,
        }
        if self.use_message_payload:
            payload = self._encode(plan.encoding, body, fill_bits=0)
            return [SubmitPart(ref, 0, 1, {**base, "short_message": b""},
                               {TLV_MESSAGE_PAYLOAD: payload})]
        if len(plan.parts) == 1:
            data = self._encode(plan.encoding, body, fill_bits=0)
            return [SubmitPart(ref, 0, 1, {**base, "short_message": data})]
        concat_ref = next(self._refs)
        total = len(plan.parts)
        out = []
        for i, text in enumerate(plan.parts):
            udh = segments.concat_udh(concat_ref, total, i + 1)
            data = udh + self._encode(plan.encoding, text, fill_bits=_UDH_FILL_BITS)
            out.append(SubmitPart(ref, i, total,
                                  {**base, "esm_class": ESM_UDHI, "short_message": data}))
        return out

    def _encode(self, encoding: str, text: str, fill_bits: int) -> bytes:
        if encoding == segments.UCS2:
            return segments.encode_ucs2(text)
        septets = segments.encode_gsm7(text)
        return segments.pack_septets(septets, fill_bits) if self.gsm7_packed else septets


def decode_part(params: dict, tlvs: dict, packed: bool = False) -> tuple[tuple[int, int, int] | None,
                                                                         str]:
    """``(udh (ref, total, seq) or None, text)`` of a submitted part (the SMSC and tests read parts)."""
    data = bytes(params.get("short_message") or tlvs.get(TLV_MESSAGE_PAYLOAD, b""))
    udh, fill = None, 0
    if params.get("esm_class", 0) & ESM_UDHI and data:
        udh = segments.parse_udh(data)
        octets = data[0] + 1
        fill = (7 - (octets * 8) % 7) % 7
        data = data[octets:]
    if params.get("data_coding", 0) == DC_UCS2:
        return udh, segments.decode_ucs2(data)
    if packed:
        count = (len(data) * 8 - fill) // 7
        data = segments.unpack_septets(data, count, fill) if count else b""
        if data.endswith(b"\x00") and (7 * count + fill) % 8 == 0:
            data = data[:-1]  # 7 padding bits read as '@': ambiguous, so a final '@' is lost
    try:
        return udh, segments.decode_gsm7(data)
    except InvalidBody:
        return udh, data.decode("latin-1")
