"""How a message body is encoded and split into SMS segments: GSM-7 or UCS-2, and how many parts.

The segment count is what a message costs, so it must match what the carrier will bill. This module is
pure (no I/O) and follows 3GPP TS 23.038 with the rules the popular libraries get wrong:

- GSM-7 is the 128-position basic table (0x1B is the escape, not a character) plus the extension table
  reached through it; each extension character (``^ { } \\ [ ~ ] | €`` and form feed) costs 2 septets.
  Lowercase ``ç``, the backtick, curly quotes and the em dash are *not* GSM-7. A raw ESC in user text is
  invalid input.
- If any character is outside basic+extension the whole message is UCS-2 (UTF-16BE, counted in 16-bit
  code units; a character outside the BMP is a surrogate pair = 2 units).
- One segment holds 160 septets / 70 units; concatenated segments (6-octet UDH, 8-bit reference) hold
  153 / 67. An escape pair or a surrogate pair is never split, so the count can exceed ``ceil(units/153)``.

The tables are built here from TS 23.038 rather than taken from the ``gsm0338`` codec, which accepts a raw
ESC (U+001B) as if it were a character.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from engine.errors import BodyTooLarge, InvalidBody

__all__ = [
    "GSM7",
    "UCS2",
    "SegmentPlan",
    "concat_udh",
    "decode_gsm7",
    "decode_ucs2",
    "encode_gsm7",
    "encode_ucs2",
    "is_gsm7",
    "pack_septets",
    "parse_udh",
    "plan",
    "unpack_septets",
]

GSM7 = "GSM-7"
UCS2 = "UCS-2"

GSM7_SINGLE = 160
GSM7_CONCAT = 153
UCS2_SINGLE = 70
UCS2_CONCAT = 67
MAX_PARTS = 255  # the UDH "total" field is one octet

_ESC = 0x1B
# TS 23.038 6.2.1, basic table, positions 0x00..0x7F; the "\x1b" at 0x1B is the escape placeholder.
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# TS 23.038 6.2.1.1, extension table: character -> code after the escape.
_EXTENSION = {
    "\x0c": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
assert len(_BASIC) == 128

_BASIC_CODE = {ch: code for code, ch in enumerate(_BASIC) if code != _ESC}
_EXT_CHARS = frozenset(_EXTENSION)
_GSM_CHARS = frozenset(_BASIC_CODE) | _EXT_CHARS
_EXT_BY_CODE = {code: ch for ch, code in _EXTENSION.items()}
# str.translate table: each character -> its unpacked septet(s) as latin-1 code points.
_TO_SEPTETS = {ord(ch): chr(code) for ch, code in _BASIC_CODE.items()}
_TO_SEPTETS.update({ord(ch): chr(_ESC) + chr(code) for ch, code in _EXTENSION.items()})


class SegmentPlan(NamedTuple):
    """How one message body goes on the wire: its encoding, size and the text of each segment.

    A named tuple, not a frozen dataclass: every submit builds one, and a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__`` (~0.4 µs of a plan's ~1.5)."""

    encoding: str  # GSM7 or UCS2
    units: int  # septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2
    segments: list[int]  # units per segment, e.g. [153, 8]
    parts: list[str]  # the text of each segment; "".join(parts) == the original text

    def to_json(self) -> str:
        """The billable summary: ``{"encoding": ..., "units": ..., "segments": [...]}``, in that order."""
        return json.dumps(
            {"encoding": self.encoding, "units": self.units, "segments": self.segments}
        )


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM-7 basic or extension table (a raw ESC is not)."""
    return _GSM_CHARS.issuperset(text)


def plan(text: str, *, max_segments: int = 10) -> SegmentPlan:
    """Choose the encoding and split ``text`` into segments.

    Raises :class:`InvalidBody` for empty text, a raw ESC (U+001B) or a lone surrogate, and
    :class:`BodyTooLarge` when more than ``max_segments`` segments (1..255) would be needed.
    """
    if not 1 <= max_segments <= MAX_PARTS:
        raise ValueError(f"max_segments must be 1..{MAX_PARTS}, got {max_segments}")
    if not text:
        raise InvalidBody("message body is empty")
    if _GSM_CHARS.issuperset(text):
        units = len(text) if _EXT_CHARS.isdisjoint(text) else len(text) + _count_ext(text)
        return _split(text, GSM7, units, GSM7_SINGLE, GSM7_CONCAT, max_segments)
    if "\x1b" in text:
        raise InvalidBody("message body contains a raw ESC (U+001B) character")
    try:
        units = len(text.encode("utf-16-be")) // 2
    except UnicodeEncodeError:
        raise InvalidBody("message body contains a lone UTF-16 surrogate") from None
    return _split(text, UCS2, units, UCS2_SINGLE, UCS2_CONCAT, max_segments)


def _count_ext(text: str) -> int:
    return sum(map(text.count, _EXT_CHARS))


def _split(
    text: str, encoding: str, units: int, single: int, per_part: int, max_segments: int
) -> SegmentPlan:
    if units <= single:
        return SegmentPlan(encoding, units, [units], [text])
    if units > per_part * max_segments:  # cheap bound before walking the text
        raise _too_large(encoding, units, max_segments)
    if units == len(text):  # every character is one unit: plain slicing
        parts = [text[i : i + per_part] for i in range(0, units, per_part)]
        return SegmentPlan(encoding, units, [len(p) for p in parts], parts)
    wide = _EXT_CHARS if encoding == GSM7 else None
    sizes: list[int] = []
    parts: list[str] = []
    start = size = 0
    for i, ch in enumerate(text):
        cost = 2 if (ch in wide if wide is not None else ch > "\uffff") else 1
        if size + cost > per_part:  # close the segment: a 2-unit character is never cut in half
            sizes.append(size)
            parts.append(text[start:i])
            start, size = i, 0
        size += cost
    sizes.append(size)
    parts.append(text[start:])
    if len(parts) > max_segments:
        raise _too_large(encoding, units, max_segments)
    return SegmentPlan(encoding, units, sizes, parts)


def _too_large(encoding: str, units: int, max_segments: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"message body of {units} {encoding} units needs more than {max_segments} segments"
    )


def encode_gsm7(text: str) -> bytes:
    """Unpacked GSM-7: one septet value per octet, extension characters as ``0x1B`` + code."""
    if not _GSM_CHARS.issuperset(text):
        raise InvalidBody("message body has characters outside the GSM-7 alphabet")
    return text.translate(_TO_SEPTETS).encode("latin-1")


def decode_gsm7(data: bytes) -> str:
    """Decode unpacked GSM-7 septets.

    Following TS 23.038, an escape followed by a code the extension table does not define shows the
    basic-table character for that code, and an escape that is last or followed by another escape shows
    as a space. An octet above 0x7F is not a septet and raises :class:`InvalidBody`.
    """
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code > 0x7F:
            raise InvalidBody(f"octet 0x{code:02X} at {i} is not a GSM-7 septet")
        if code != _ESC:
            out.append(_BASIC[code])
            i += 1
            continue
        nxt = data[i + 1] if i + 1 < n else _ESC
        if nxt == _ESC:
            out.append(" ")
            i += 1
            continue
        if nxt > 0x7F:
            raise InvalidBody(f"octet 0x{nxt:02X} at {i + 1} is not a GSM-7 septet")
        out.append(_EXT_BY_CODE.get(nxt, _BASIC[nxt]))
        i += 2
    return "".join(out)


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets into octets, least significant bit first (TS 23.038 6.1.2.1.1).

    ``fill_bits`` (0..6) zero bits come first, so the septets start on a septet boundary after a UDH.
    """
    _check_fill(fill_bits)
    if any(s > 0x7F for s in septets):
        raise InvalidBody("a septet value is above 0x7F")
    acc = 0
    for i, s in enumerate(septets):
        acc |= s << (7 * i)
    nbits = 7 * len(septets) + fill_bits
    return (acc << fill_bits).to_bytes((nbits + 7) // 8, "little")


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """Read ``count`` septets packed in ``data`` after ``fill_bits`` (0..6) leading fill bits."""
    _check_fill(fill_bits)
    if count < 0 or 7 * count + fill_bits > 8 * len(data):
        raise InvalidBody(
            f"{len(data)} octets cannot hold {count} septets after {fill_bits} fill bits"
        )
    acc = int.from_bytes(data, "little") >> fill_bits
    return bytes((acc >> (7 * i)) & 0x7F for i in range(count))


def _check_fill(fill_bits: int) -> None:
    if not 0 <= fill_bits <= 6:
        raise ValueError(f"fill_bits must be 0..6, got {fill_bits}")


def encode_ucs2(text: str) -> bytes:
    """UTF-16BE; a lone surrogate raises :class:`InvalidBody`."""
    try:
        return text.encode("utf-16-be")
    except UnicodeEncodeError:
        raise InvalidBody("message body contains a lone UTF-16 surrogate") from None


def decode_ucs2(data: bytes) -> str:
    """Decode UTF-16BE; an odd length or a lone surrogate raises :class:`InvalidBody`."""
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise InvalidBody(f"not valid UTF-16BE: {exc.reason}") from None


def concat_udh(ref: int, total: int, seq: int) -> bytes:
    """The 6-octet concatenation header ``05 00 03 ref total seq`` (8-bit reference, seq 1-based)."""
    if not 0 <= ref <= 0xFF:
        raise ValueError(f"8-bit reference must be 0..255, got {ref}")
    if not 1 <= seq <= total <= MAX_PARTS:
        raise ValueError(f"need 1 <= seq <= total <= {MAX_PARTS}, got seq={seq} total={total}")
    return bytes((0x05, 0x00, 0x03, ref, total, seq))


def parse_udh(data: bytes) -> tuple[int, int, int] | None:
    """``(ref, total, seq)`` from the concatenation element of the UDH that starts ``data``, else None.

    ``data`` is a payload sent with UDHI set: its first octet is the header length. Both the 8-bit (IEI
    0x00) and 16-bit (IEI 0x08) reference forms are read; a malformed header or one without a
    concatenation element gives None. The user data starts at ``data[0] + 1``.
    """
    if not data or data[0] + 1 > len(data):
        return None
    end = 1 + data[0]
    i = 1
    while i + 2 <= end:
        iei, length = data[i], data[i + 1]
        body = data[i + 2 : i + 2 + length]
        if i + 2 + length > end:
            return None
        if iei == 0x00 and length == 3:
            ref, total, seq = body
            return (ref, total, seq) if 1 <= seq <= total else None
        if iei == 0x08 and length == 4:
            ref, total, seq = (body[0] << 8) | body[1], body[2], body[3]
            return (ref, total, seq) if 1 <= seq <= total else None
        i += 2 + length
    return None
