"""A streamed answer that counts the body bytes it wrote, for the request log's response size.

A chunked answer has no ``Content-Length``, and the size the request log took from it was 0 for every
streamed answer (each usage export, complete or cut). :class:`StreamedAnswer` counts the body bytes
each ``write`` handed to the connection (not the status line, headers or chunk framing: the same
measure as a whole answer's ``len(body)``), so a complete export records its size and a cut one what
went out before the cut.
"""

from __future__ import annotations

from aiohttp import web


class StreamedAnswer(web.StreamResponse):
    """``web.StreamResponse`` with ``sent_bytes``: the body bytes written so far."""

    sent_bytes = 0

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        await super().write(data)
        self.sent_bytes += memoryview(data).nbytes

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        self.sent_bytes += len(data)
