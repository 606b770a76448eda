"""A lean HTTP/1.1 client and webhook receiver for the bench's http path (loopback only).

Why not aiohttp: the bench drives the engine from the same two cores the engine runs on. With aiohttp's
client and server, the driver took ~0.7 of a core at ~2,400 messages/s (a POST ~50 µs of CPU, a received
webhook about as much), so the figure measured the bench as much as the engine. ``wrk`` is what the
plain submit path is measured with for the same reason. These two pieces do only what the bench needs,
parsed by ``httptools`` (the parser the engine's webhook client uses):

* :class:`LoopbackClient` POSTs to one origin over at most ``connections`` kept-alive connections (a
  request waits for a free one) and returns ``(status, body)``; a connection that fails is closed, never
  reused, and the failure is raised as ``ConnectionError``.
* :class:`HookServer` answers every request with the status its handler returns for ``(path, signature
  header, body)``, keeping the connection alive as the client asks; a malformed request gets ``400`` and
  the connection is closed.

Threads: one asyncio loop (the bench's http thread).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

import httptools

_REASONS = {200: b"OK", 202: b"Accepted", 204: b"No Content", 400: b"Bad Request",
            401: b"Unauthorized", 404: b"Not Found"}


class _Exchange(asyncio.Protocol):
    """One client connection: one request at a time, its response's status and body."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self.keep_alive = False
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("connection closed before the response"))

    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            return  # an informational answer: the real one follows
        self.keep_alive = self.parser.should_keep_alive()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, b"".join(self._body)))

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.keep_alive = False
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc if isinstance(exc, ConnectionError) else ConnectionError(exc))
        self.close()


class LoopbackClient:
    """Kept-alive POSTs to ``http://host:port`` with fixed extra headers (see the module docstring)."""

    def __init__(self, host: str, port: int, headers: dict[str, str], connections: int,
                 timeout_s: float = 60.0) -> None:
        self._addr = (host, port)
        self._head = b"".join([b"Host: ", f"{host}:{port}".encode(), b"\r\n", *(
            f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())])
        self._max = connections
        self._timeout = timeout_s
        self._open = 0
        self._idle: list[_Exchange] = []
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def post(self, path: str, body: bytes,
                   content_type: str = "application/json") -> tuple[int, bytes]:
        request = b"".join([b"POST ", path.encode("ascii"), b" HTTP/1.1\r\n", self._head,
                            b"Content-Type: ", content_type.encode("ascii"),
                            b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n\r\n", body])
        async with asyncio.timeout(self._timeout):
            conn = await self._take()
            try:
                answer = await conn.send(request)
            except BaseException:
                conn.close()
                self._give_back(None)
                raise
        if not conn.keep_alive or conn.closed:
            conn.close()
            conn = None
        self._give_back(conn)
        return answer

    async def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    async def _take(self) -> _Exchange:
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
                self._open -= 1
            if self._open < self._max:
                self._open += 1
                try:
                    _, conn = await asyncio.get_running_loop().create_connection(
                        _Exchange, *self._addr)
                except BaseException:
                    self._open -= 1
                    raise
                return conn
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            await waiter

    def _give_back(self, conn: _Exchange | None) -> None:
        """A connection back to the pool, or None for one that was closed; wakes one waiting request."""
        if conn is None:
            self._open -= 1
        else:
            self._idle.append(conn)
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break


Handler = Callable[[str, str, bytes], int]  # (path, Smsroute-Signature header, body) -> status


class _Hook(asyncio.Protocol):
    """One receiver connection."""

    def __init__(self, handler: Handler, live: set[_Hook]) -> None:
        self._handler = handler
        self._live = live
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._signature = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._live.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._live.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._answer(400, keep_alive=False)

    def on_message_begin(self) -> None:
        self._url, self._signature, self._body = b"", b"", []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"smsroute-signature":
            self._signature = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._handler(self._url.decode("latin-1"), self._signature.decode("latin-1"),
                               b"".join(self._body))
        self._answer(status, keep_alive=self.parser.should_keep_alive())

    def _answer(self, status: int, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\n%s\r\n" % (
            status, _REASONS.get(status, b"Status"), b"" if keep_alive else b"Connection: close\r\n"))
        if not keep_alive:
            self.transport.close()


class HookServer:
    """Receives webhooks on ``127.0.0.1`` (a free port unless given)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._live: set[_Hook] = set()
        self.port = 0

    async def start(self, port: int = 0) -> HookServer:
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Hook(self._handler, self._live), "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for hook in list(self._live):  # kept-alive connections would hold wait_closed open
                if hook.transport is not None:
                    hook.transport.close()
            await self._server.wait_closed()
            self._server = None
