"""Reading and writing whole PDUs on an asyncio stream, shared by the ESME client and the simulated SMSC.

Framing is the ``command_length`` in each header. A fatal :class:`PduError` (a length below 16 or above the
maximum) means the stream has lost its framing and the caller must close it; a non-fatal one (unknown
command, truncated body) has consumed exactly one PDU, so the caller can answer ``generic_nack`` and go on.
"""

from __future__ import annotations

import asyncio

from engine.smpp.pdu import HEADER_LEN, MAX_PDU_LEN, Pdu, PduError, decode_body, read_header


async def read_pdu(reader: asyncio.StreamReader, max_len: int = MAX_PDU_LEN) -> Pdu | None:
    """The next PDU, or None at a clean end of stream (EOF between PDUs).

    Raises :class:`PduError`; ``fatal`` is set when the connection must be closed (also for an EOF in
    the middle of a PDU).
    """
    try:
        head = await reader.readexactly(HEADER_LEN)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise PduError("truncated", "stream ended inside a header", fatal=True) from None
    length, command_id, status, sequence = read_header(head, max_len)
    try:
        body = await reader.readexactly(length - HEADER_LEN)
    except asyncio.IncompleteReadError:
        raise PduError("truncated", "stream ended inside a PDU", sequence=sequence,
                       fatal=True) from None
    return decode_body(command_id, status, sequence, body)
