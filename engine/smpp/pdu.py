"""The SMPP 3.4 PDU codec: bytes <-> :class:`Pdu`, written here with ``struct`` so every edge is ours.

Why not a library: the candidates on PyPI split long messages wrongly or raise untyped exceptions on bad
input. This codec covers exactly the PDUs smsroute sends or accepts (binds and their responses,
``submit_sm``, ``deliver_sm``, ``data_sm`` (receipts some SMSCs send), ``enquire_link``, ``unbind``,
``generic_nack``) and any TLV.

A PDU is a 16-octet header (``command_length``, ``command_id``, ``command_status``, ``sequence_number``,
big-endian) followed by the mandatory parameters of its command (C-octet strings, 1-octet integers and the
length-prefixed ``short_message``) and then optional TLVs (tag u16, length u16, value).

Bad input never escapes as anything but :class:`PduError`, whose ``kind`` says what was wrong, whose
``sequence`` (when the header was readable) lets the peer answer ``generic_nack``, and whose ``fatal`` flag
says the byte stream can no longer be framed (bad or oversized ``command_length``) and must be closed.

>>> raw = encode_pdu(Pdu(ENQUIRE_LINK, 7))
>>> raw.hex()
'00000010000000150000000000000007'
>>> decode_pdu(raw)
Pdu(command_id=21, sequence=7, status=0, params={}, tlvs={})
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from engine.errors import CarrierError

HEADER = struct.Struct(">IIII")
HEADER_LEN = HEADER.size
MAX_PDU_LEN = 64 * 1024  # far above any legal PDU; anything longer is an attack or a framing loss

GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
DATA_SM = 0x00000103
RESP = 0x80000000  # a response's command id is its request's with this bit set
BIND_IDS = (BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER)

# command_status values this project uses by name
ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RINVSYSTYP = 0x53
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64  # ESME receiver temporary app error: the SMSC delivers again later
ESME_RX_P_APPN = 0x65  # ESME receiver permanent app error
STATUS_NAMES = {
    v: k for k, v in globals().items() if k.startswith("ESME_R") and isinstance(v, int)
}

# TLV tags
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_SC_INTERFACE_VERSION = 0x0210
TLV_NETWORK_ERROR_CODE = 0x0423
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427
TLV_ADDITIONAL_STATUS_INFO_TEXT = 0x001D
TLV_DPF_RESULT = 0x0420
TLV_DELIVERY_FAILURE_REASON = 0x0425
#: The TLVs SMPP 5.0 gives submit_sm_resp / data_sm_resp (and SMSCs send in 3.4 error responses)
ERROR_RESP_TLVS = frozenset({TLV_ADDITIONAL_STATUS_INFO_TEXT, TLV_DPF_RESULT, TLV_NETWORK_ERROR_CODE,
                             TLV_DELIVERY_FAILURE_REASON})

# Field kinds: ("s", max octets including the NUL) C-octet string; ("b",) 1-octet int;
# ("m",) short_message: sm_length octet + that many octets.
_BIND = (
    ("system_id", "s", 16),
    ("password", "s", 9),
    ("system_type", "s", 13),
    ("interface_version", "b", 0),
    ("addr_ton", "b", 0),
    ("addr_npi", "b", 0),
    ("address_range", "s", 41),
)
_BIND_RESP = (("system_id", "s", 16),)
_SM = (
    ("service_type", "s", 6),
    ("source_addr_ton", "b", 0),
    ("source_addr_npi", "b", 0),
    ("source_addr", "s", 21),
    ("dest_addr_ton", "b", 0),
    ("dest_addr_npi", "b", 0),
    ("destination_addr", "s", 21),
    ("esm_class", "b", 0),
    ("protocol_id", "b", 0),
    ("priority_flag", "b", 0),
    ("schedule_delivery_time", "s", 17),
    ("validity_period", "s", 17),
    ("registered_delivery", "b", 0),
    ("replace_if_present_flag", "b", 0),
    ("data_coding", "b", 0),
    ("sm_default_msg_id", "b", 0),
    ("short_message", "m", 255),
)
_SM_RESP = (("message_id", "s", 65),)
# data_sm (SMPP 3.4 4.7.1): no short_message; the text, if any, is in the message_payload TLV
_DATA_SM = (
    ("service_type", "s", 6),
    ("source_addr_ton", "b", 0),
    ("source_addr_npi", "b", 0),
    ("source_addr", "s", 65),
    ("dest_addr_ton", "b", 0),
    ("dest_addr_npi", "b", 0),
    ("destination_addr", "s", 65),
    ("esm_class", "b", 0),
    ("registered_delivery", "b", 0),
    ("data_coding", "b", 0),
)

SCHEMAS: dict[int, tuple[tuple[str, str, int], ...]] = {
    GENERIC_NACK: (),
    BIND_RECEIVER: _BIND,
    BIND_TRANSMITTER: _BIND,
    BIND_TRANSCEIVER: _BIND,
    BIND_RECEIVER | RESP: _BIND_RESP,
    BIND_TRANSMITTER | RESP: _BIND_RESP,
    BIND_TRANSCEIVER | RESP: _BIND_RESP,
    SUBMIT_SM: _SM,
    SUBMIT_SM | RESP: _SM_RESP,
    DELIVER_SM: _SM,
    DELIVER_SM | RESP: _SM_RESP,
    DATA_SM: _DATA_SM,
    DATA_SM | RESP: _SM_RESP,
    ENQUIRE_LINK: (),
    ENQUIRE_LINK | RESP: (),
    UNBIND: (),
    UNBIND | RESP: (),
}
COMMAND_NAMES = {
    GENERIC_NACK: "generic_nack",
    BIND_RECEIVER: "bind_receiver",
    BIND_TRANSMITTER: "bind_transmitter",
    BIND_TRANSCEIVER: "bind_transceiver",
    SUBMIT_SM: "submit_sm",
    DELIVER_SM: "deliver_sm",
    DATA_SM: "data_sm",
    ENQUIRE_LINK: "enquire_link",
    UNBIND: "unbind",
}
for _cid, _name in list(COMMAND_NAMES.items()):
    if _cid != GENERIC_NACK:
        COMMAND_NAMES[_cid | RESP] = _name + "_resp"
# Commands whose body may carry TLVs after the mandatory parameters. The submit_sm and deliver_sm
# responses are among them: SMPP 5.0 gives them TLVs (additional_status_info_text,
# delivery_failure_reason, network_error_code) and SMSCs that speak 3.4 send them too. Refusing one
# would close the bind and get every submit it had accepted sent again.
_TAKES_TLVS = frozenset(
    {SUBMIT_SM, DELIVER_SM, SUBMIT_SM | RESP, DELIVER_SM | RESP, DATA_SM, DATA_SM | RESP,
     BIND_RECEIVER | RESP, BIND_TRANSMITTER | RESP, BIND_TRANSCEIVER | RESP}
)


class PduError(CarrierError):
    """Bytes that are not a PDU we accept.

    ``kind``: ``bad_length`` | ``oversized`` | ``truncated`` | ``unknown_command`` | ``bad_field``.
    ``sequence`` is the header's sequence number when it could be read (for the ``generic_nack``),
    ``status`` the SMPP command_status to answer with, and ``fatal`` means the stream cannot be framed.
    A body that does not parse after a good header also names the header's ``command_id`` and
    ``command_status``: a response's status is readable even when its body is not.
    """

    code = "smpp_pdu_error"

    def __init__(
        self, kind: str, detail: str, *, sequence: int | None = None, status: int = 0x02,
        fatal: bool = False,
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.sequence = sequence
        self.status = status
        self.fatal = fatal
        self.command_id: int | None = None
        self.command_status = 0


@dataclass(slots=True)
class Pdu:
    """One PDU. ``params`` holds the mandatory parameters by name, ``tlvs`` the optional ones by tag."""

    command_id: int
    sequence: int
    status: int = 0
    params: dict[str, str | int | bytes] = field(default_factory=dict)
    tlvs: dict[int, bytes] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.command_id, f"0x{self.command_id:08x}")

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESP)

    def get(self, name: str, default=None):
        return self.params.get(name, default)


def defaults(command_id: int) -> dict[str, str | int | bytes]:
    """Every mandatory parameter of ``command_id`` at its zero value ("" / 0 / b"")."""
    zero = {"s": "", "b": 0, "m": b""}
    return {name: zero[kind] for name, kind, _ in SCHEMAS[command_id]}


def encode_pdu(pdu: Pdu) -> bytes:
    """Serialise ``pdu``; missing parameters take their zero value. Raises ``PduError`` (bad_field)."""
    schema = SCHEMAS.get(pdu.command_id)
    if schema is None:
        raise PduError("unknown_command", f"cannot encode command 0x{pdu.command_id:08x}",
                       status=ESME_RINVCMDID)
    out = bytearray(HEADER_LEN)
    params = pdu.params
    for name, kind, size in schema:
        value = params.get(name)
        if kind == "s":
            raw = (value or "").encode("latin-1") if not isinstance(value, bytes) else value
            if b"\x00" in raw or len(raw) >= size:
                raise PduError("bad_field", f"{name} must be under {size} octets without NUL")
            out += raw + b"\x00"
        elif kind == "b":
            ival = value or 0
            if not 0 <= ival <= 0xFF:
                raise PduError("bad_field", f"{name} must be one octet")
            out.append(ival)
        else:
            raw = value or b""
            if len(raw) > 254:
                raise PduError("bad_field", "short_message is at most 254 octets")
            out.append(len(raw))
            out += raw
    for tag, value in pdu.tlvs.items():
        if not 0 <= tag <= 0xFFFF or len(value) > 0xFFFF:
            raise PduError("bad_field", f"TLV 0x{tag:04x} out of range")
        out += struct.pack(">HH", tag, len(value)) + value
    if len(out) > MAX_PDU_LEN:
        raise PduError("oversized", f"{len(out)} octets")
    HEADER.pack_into(out, 0, len(out), pdu.command_id, pdu.status, pdu.sequence & 0xFFFFFFFF)
    return bytes(out)


def read_header(head: bytes, max_len: int = MAX_PDU_LEN) -> tuple[int, int, int, int]:
    """Unpack and check a 16-octet header: ``(length, command_id, status, sequence)``."""
    if len(head) < HEADER_LEN:
        raise PduError("truncated", f"header of {len(head)} octets", fatal=True)
    length, command_id, status, sequence = HEADER.unpack_from(head)
    if length < HEADER_LEN:
        raise PduError("bad_length", f"command_length {length}", sequence=sequence,
                       status=ESME_RINVCMDLEN, fatal=True)
    if length > max_len:
        raise PduError("oversized", f"command_length {length} > {max_len}", sequence=sequence,
                       status=ESME_RINVCMDLEN, fatal=True)
    return length, command_id, status, sequence


def decode_pdu(raw: bytes, max_len: int = MAX_PDU_LEN) -> Pdu:
    """Parse one whole PDU (exactly ``command_length`` octets). Raises only ``PduError``."""
    length, command_id, status, sequence = read_header(raw, max_len)
    if length != len(raw):
        raise PduError("bad_length", f"command_length {length} but {len(raw)} octets",
                       sequence=sequence, status=ESME_RINVCMDLEN, fatal=True)
    return decode_body(command_id, status, sequence, memoryview(raw)[HEADER_LEN:])


def decode_body(command_id: int, status: int, sequence: int, body: memoryview | bytes) -> Pdu:
    """Parse the body that followed an already-checked header."""
    schema = SCHEMAS.get(command_id)
    if schema is None:
        raise PduError("unknown_command", f"command_id 0x{command_id:08x}", sequence=sequence,
                       status=ESME_RINVCMDID)
    body = bytes(body)
    error_resp = bool(command_id & RESP) and status != 0
    if not body and error_resp:
        # An error response may omit its body (SMPP 3.4 5.1.2.1 practice).
        return Pdu(command_id, sequence, status, defaults(command_id))
    try:
        params, pos = _read_params(schema, body, sequence)
        tlvs: dict[int, bytes] = {}
        if pos < len(body):
            if command_id not in _TAKES_TLVS:
                raise PduError("bad_length", f"{len(body) - pos} octets after the body",
                               sequence=sequence, status=ESME_RINVCMDLEN)
            tlvs = _read_tlvs(body, pos, sequence)
    except PduError as exc:
        exc.command_id, exc.command_status = command_id, status
        if error_resp and command_id in _TAKES_TLVS:
            # SMPP 3.4 sends no body with an error status; some SMSCs send the TLVs (SMPP 5.0's
            # additional_status_info_text, delivery_failure_reason...) but leave out the mandatory
            # parameters. Read so, a TLV's leading 0x00 was the message_id's NUL and the rest misparsed.
            try:
                tlvs = _read_tlvs(body, 0, sequence)
            except PduError:
                raise exc from None
            return Pdu(command_id, sequence, status, defaults(command_id), tlvs)
        raise
    if error_resp and not _plausible_message_id(params.get("message_id", "")):
        try:  # the TLVs alone, if they are what SMSCs send in an error response
            alone = _read_tlvs(body, 0, sequence)
        except PduError:
            alone = None
        if alone is not None and set(alone) <= ERROR_RESP_TLVS:
            return Pdu(command_id, sequence, status, defaults(command_id), alone)
    return Pdu(command_id, sequence, status, params, tlvs)


def _plausible_message_id(message_id: str | int | bytes) -> bool:
    """Whether an error response's message_id, read as SMPP 5.0 lays the body out (message_id, then
    TLVs), is one an SMSC sends: empty (5.0 leaves it so) or printable ASCII. Some bodies of TLVs alone
    read that way too: 04 23 00 03 03 00 11 (network_error_code) and a 13-octet
    additional_status_info_text read as the id "\\x04#" and a TLV 0x0303. When the id is not plausible
    and the body reads whole as TLVs an error response carries (:data:`ERROR_RESP_TLVS`), it is that."""
    return not message_id or (isinstance(message_id, str) and message_id.isascii()
                              and message_id.isprintable())


def _read_params(schema, body: bytes, sequence: int) -> tuple[dict, int]:
    params: dict[str, str | int | bytes] = {}
    pos, end = 0, len(body)
    for name, kind, _size in schema:
        if kind == "s":
            nul = body.find(b"\x00", pos)
            if nul < 0:
                raise PduError("truncated", f"{name} has no NUL terminator", sequence=sequence,
                               status=ESME_RINVCMDLEN)
            params[name] = body[pos:nul].decode("latin-1")
            pos = nul + 1
        elif kind == "b":
            if pos >= end:
                raise PduError("truncated", f"missing {name}", sequence=sequence,
                               status=ESME_RINVCMDLEN)
            params[name] = body[pos]
            pos += 1
        else:
            if pos >= end or pos + 1 + body[pos] > end:
                raise PduError("truncated", "short_message runs past the PDU", sequence=sequence,
                               status=ESME_RINVMSGLEN)
            n = body[pos]
            params[name] = body[pos + 1 : pos + 1 + n]
            pos += 1 + n
    return params, pos


def _read_tlvs(body: bytes, pos: int, sequence: int) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {}
    end = len(body)
    while pos < end:
        if pos + 4 > end:
            raise PduError("truncated", "TLV header runs past the PDU", sequence=sequence,
                           status=0xC0)
        tag, n = struct.unpack_from(">HH", body, pos)
        if pos + 4 + n > end:
            raise PduError("truncated", f"TLV 0x{tag:04x} runs past the PDU", sequence=sequence,
                           status=0xC2)
        tlvs[tag] = body[pos + 4 : pos + 4 + n]
        pos += 4 + n
    return tlvs


def tlv_int(value: bytes) -> int:
    """A TLV's unsigned big-endian integer value (0 for an empty value)."""
    return int.from_bytes(value, "big")


def response_to(pdu: Pdu, status: int = 0, **params) -> Pdu:
    """The response PDU for request ``pdu`` (same sequence number)."""
    return Pdu(pdu.command_id | RESP, pdu.sequence, status, params)


def generic_nack(sequence: int | None, status: int) -> Pdu:
    return Pdu(GENERIC_NACK, sequence or 0, status)


def status_name(status: int) -> str:
    """``ESME_RTHROTTLED`` for 0x58; ``0x000000ab`` for codes without a name here."""
    return STATUS_NAMES.get(status, f"0x{status:08x}")
