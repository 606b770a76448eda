"""An HTTP edge forwarding a request to the core's customer API: the deadline it waits, and the answer
passed on as it comes.

Deadlines. An ordinary request (a read, a setting, a submit with an ``Idempotency-Key``) is answered by
the core whole within ``FORWARD_TIMEOUT_S`` (the core's own questions to its workers give up after
30 s), else the edge answers 503 ``cluster_unavailable``. An export (``EXPORT_PATHS``: ``GET
/v1/usage``) is streamed by the core for as long as the account's usage takes to read - a large
account's takes minutes - and the core sets it no deadline; so neither does the edge: it waits as long
as the core keeps sending, and gives up only when the core has sent nothing for ``EXPORT_IDLE_S``. Before,
every forwarded request had 60 s in all, and an export that would have succeeded through the core
answered 503 through an edge.

Streaming. An answer without a ``Content-Length`` (the core streams exports chunked) or longer than
``BUFFER_UP_TO`` is passed on a part of at most ``PART_BYTES`` at a time, each written to the client
(and drained) before the next is read, so the edge holds about one part per answer, whatever its size
(aiohttp reads at most a few parts ahead of it from the core); before, the edge read the whole export
into memory first. The core's request crosses loopback HTTP, not NATS: no part limit of NATS applies.
If the core's answer breaks off (the core stopped, a store error mid-export, the idle deadline) after
the first byte went to the client, the client's connection is cut without the answer's end, so the
client sees an incomplete transfer, never a short export that looks complete - as from the core itself.
The edge records that cut as the core records its own (``engine.http.errors.cut_off``): a warning line
with the status the client saw and ``cut: true``, ``smsroute_http_answers_cut_total`` in the edge's
metrics, and - by :func:`forward`'s caller - the request log entry and request metric with that status
and the body bytes that went out. Before, the edge raised, and aiohttp logged an unhandled error and
answered it 500 to nobody. A client that leaves mid-answer is not a cut (its write raises, as before):
the core records that request ``499`` when the edge drops its connection to it.

The edge's own answers (:class:`OwnAnswer`: 503 ``cluster_unavailable`` when the core does not answer,
a body refused before forwarding) are recorded by the edge - request log entry and request metric -
since the core never saw those requests; before, no request-log entry was written anywhere.

Headers. A request's go to the core without the hop-by-hop ones and without ``Content-Encoding``
(:func:`forwarded_headers`: the edge has read the body decoded); an answer's come back without the
hop-by-hop ones.
"""

from __future__ import annotations

import json
import logging

from aiohttp import ClientError, ClientResponse, ClientSession, ClientTimeout, web
from multidict import CIMultiDict, CIMultiDictProxy

from engine.http.errors import CutAnswer, client_gone, cut_off
from engine.http.streamed import StreamedAnswer

log = logging.getLogger(__name__)

FORWARD_TIMEOUT_S = 60.0  # an ordinary forwarded request: the core's whole answer within this
EXPORT_PATHS = frozenset({"/v1/usage"})  # streamed by the core as long as it takes
EXPORT_IDLE_S = 300.0  # an export: the core silent this long (no byte) has stopped; no total deadline
BUFFER_UP_TO = 256 * 1024  # an answer with a Content-Length up to this is read whole, then answered
PART_BYTES = 64 * 1024  # a larger or chunked answer is passed on a part of at most this at a time
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                        "proxy-authorization", "proxy-authenticate", "host", "content-length"})
# not forwarded either: the edge reads the body decoded (aiohttp undoes gzip and deflate as it reads),
# and decoded bytes still labelled gzip were a 500 at the core for every compressed forwarded request
_NOT_FORWARDED = HOP_BY_HOP | {"content-encoding"}


def forwarded_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The client's request headers the edge passes on to the core: all but the hop-by-hop ones and
    ``Content-Encoding``. A multidict: a header the client sent twice (two Authorization headers, which
    the core refuses) stays twice instead of the last one silently winning."""
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _NOT_FORWARDED)


def deadline_for(path: str) -> ClientTimeout:
    """The edge's deadline for the core's answer to a request on ``path`` (see the module's docstring)."""
    if path in EXPORT_PATHS:
        return ClientTimeout(total=None, connect=FORWARD_TIMEOUT_S, sock_read=EXPORT_IDLE_S)
    return ClientTimeout(total=FORWARD_TIMEOUT_S)


async def forward(session: ClientSession, request: web.Request, url: str, headers: CIMultiDict,
                  body: bytes) -> web.StreamResponse:
    """Send ``request`` (its method, ``headers`` and ``body``) to ``url`` on the core and answer the
    client what the core answers: small answers whole, others streamed. 503 ``cluster_unavailable``
    if the core does not answer (the connection, its head, or a small answer within the deadline); a
    :class:`~engine.http.errors.CutAnswer` (never sent: for the record) if a streamed answer broke off
    after it started."""
    answer: ClientResponse | None = None
    try:
        try:
            answer = await session.request(request.method, url, headers=headers, data=body or None,
                                           timeout=deadline_for(request.path))
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            size = answer.content_length
            if size is not None and size <= BUFFER_UP_TO:
                return web.Response(status=answer.status, body=await answer.read(), headers=out)
        except (TimeoutError, ClientError) as exc:
            log.warning("edge: the core did not answer (%s)", type(exc).__name__)
            return error_answer(503, "cluster_unavailable", "the engine is not reachable; retry "
                                "shortly", {"Retry-After": "1"})
        return await _stream(request, answer, out, size)
    finally:
        if answer is not None:
            answer.release()  # (an answer not read to its end: its connection to the core is closed)


async def _stream(request: web.Request, answer: ClientResponse, headers: dict[str, str],
                  size: int | None) -> web.StreamResponse:
    """The core's answer passed on a part at a time (a client that leaves ends it: its write raises);
    if the core's answer breaks off, the client's connection is cut and a :class:`CutAnswer` returned."""
    resp = StreamedAnswer(status=answer.status, headers=headers)
    if size is not None:
        resp.content_length = size
    else:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    while True:
        try:
            part = await answer.content.read(PART_BYTES)
        except (TimeoutError, ClientError) as exc:
            if client_gone(request):  # the client left as well: nothing to cut, nothing it saw
                raise ConnectionResetError("the client left") from None
            cut = CutAnswer(status=resp.status)
            cut.sent_bytes = resp.sent_bytes
            cut_off(request, exc, cut.status)  # no final chunk: the client sees an incomplete transfer
            return cut
        if not part:
            break
        await resp.write(part)  # (drained to the client before the next part is read)
    await resp.write_eof()
    return resp


class OwnAnswer(web.Response):
    """An answer the edge made itself (the core never saw the request: it is unreachable, or the body
    was refused here), so the edge writes its request-log entry and request metric, as the core's
    customer middleware does for the requests it answers."""


def error_answer(status: int, code: str, message: str, headers: dict[str, str] | None = None
                 ) -> web.Response:
    """An answer the edge makes itself (an :class:`OwnAnswer`), in the core's error shape and with
    its frame's headers (a forwarded answer has them from the core)."""
    return OwnAnswer(status=status, text=json.dumps({"error": {"code": code, "message": message}}),
                        content_type="application/json",
                        headers={**(headers or {}), "Server": "smsroute", "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff"})
