"""The webhook sender's HTTP/1.1 client: one POST, its status and ``Retry-After``, nothing else.

Why not aiohttp's client: every status change of every message may be one signed POST, and aiohttp's
client costs ~50 µs of CPU per request on this kind of machine against ~14 µs for this one (measured
side by side, 32 kept-alive connections to one receiver: ``python -m bench.webhook_client_cost``). That
difference was most of what a webhook cost the engine.

What it does, and all it does:

* ``post(url, body, headers)`` sends ``POST`` with ``Host``, ``Content-Length`` and the given headers over
  a kept-alive connection to the URL's origin (at most ``max_idle_per_origin`` idle ones per origin,
  ``MAX_IDLE_TOTAL`` in all, each closed after ``IDLE_SECONDS`` unused: customers' endpoints are many), and
  returns ``(status, Retry-After value or None)`` as soon as the response's headers are in. Its body is
  read and discarded in the background; the connection is reused only once the response is complete
  and the server keeps it alive. Responses are parsed by ``httptools`` (content-length, chunked and
  close-delimited bodies; ``1xx`` answers are skipped). Redirects are never followed: a ``3xx`` is an
  answer like any other.
* URLs are parsed by yarl, the parser :func:`engine.http.egress.judge_url` judges them with, so the host
  connected to is the host that was judged. ``https`` is verified against the system's CA store with
  the URL's host name.
* The SSRF guard of :mod:`engine.http.egress` holds at connect time exactly as with aiohttp's connector:
  names resolve through the given resolver (``GuardedResolver`` drops non-public answers) and every socket
  comes from ``guarded_socket`` (which refuses a non-public peer), unless private networks are allowed.
* Errors raise ``EgressRefused`` (a refused destination), ``TimeoutError`` or ``OSError`` /
  ``ConnectionError`` (anything else: the caller retries); a failed connection is never reused. A request
  that fails on a kept-alive connection before any answer (the receiver closed it while it was idle) is
  sent once more on a new connection at once.

Threads: one asyncio loop (the webhook dispatcher's).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import httptools
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

from engine.http.egress import GuardedResolver, guarded_socket

MAX_RESPONSE_HEADER_BYTES = 64 * 1024  # a receiver that sends more is cut off
IDLE_SECONDS = 15.0  # an idle kept-alive connection is closed after this (aiohttp's default too)
MAX_IDLE_TOTAL = 256  # idle connections kept over all origins (the oldest closed first)


class _Response(asyncio.Protocol):
    """One connection: writes requests, parses responses (httptools callbacks)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, str | None]] | None = None
        self.complete = True  # no response outstanding (the connection may be reused)
        self.closed = False
        self.after_complete: Any = None  # called with self once the outstanding response is complete
        self.idle_since = 0.0  # loop time it was last put back in the pool
        self.keep_alive = False  # the last response lets the connection be used again
        self._retry_after: str | None = None
        self._header_bytes = 0

    # --- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionError("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("connection closed before the response"))

    # --- httptools callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._retry_after = None
        self._header_bytes = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_RESPONSE_HEADER_BYTES:
            raise httptools.HttpParserError("response headers too large")
        if name.lower() == b"retry-after":
            self._retry_after = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            return  # an informational answer: the real one follows
        self.keep_alive = self.parser.should_keep_alive()  # (the parser forgets it once complete)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, self._retry_after))

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() >= 200:
            self.complete = True
            then, self.after_complete = self.after_complete, None
            if then is not None:
                then(self)

    # --- use -------------------------------------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[tuple[int, str | None]]:
        assert self.transport is not None
        self.complete = self.keep_alive = False
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    @property
    def reusable(self) -> bool:
        return (self.complete and not self.closed and self.transport is not None
                and not self.transport.is_closing() and self.keep_alive)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def time_out(self) -> None:
        """No answer in time: the waiting request fails with ``TimeoutError``, the connection closes."""
        self._fail(TimeoutError("no response in time"))

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()


class WebhookClient:
    """A pool of kept-alive connections per origin (see the module docstring)."""

    def __init__(self, *, timeout_s: float, allow_private_networks: bool = False,
                 resolver: AbstractResolver | None = None, max_idle_per_origin: int = 8,
                 user_agent: str = "smsroute-webhooks/1", tls: ssl.SSLContext | None = None,
                 idle_seconds: float = IDLE_SECONDS, max_idle_total: int = MAX_IDLE_TOTAL) -> None:
        self._timeout = timeout_s
        self._guard = not allow_private_networks
        inner = resolver or DefaultResolver()
        self._resolver = GuardedResolver(inner) if self._guard else inner
        self._max_idle = max_idle_per_origin
        self._idle: dict[tuple[str, str, int], list[_Response]] = {}
        self._idle_seconds = idle_seconds
        self._max_idle_total = max_idle_total
        self._idle_count = 0
        self._sweep: asyncio.TimerHandle | None = None
        self._tls = tls  # None: the system's CA store, TLS 1.2 or later (made on first use)
        self._user_agent = user_agent.encode()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str | None]:
        """POST ``body``; ``(status, Retry-After)`` once the response's headers are in."""
        target = URL(url)
        if target.scheme not in ("http", "https") or not target.raw_host:
            raise ValueError("not an http(s) URL")
        origin = (target.scheme, target.raw_host, target.port or (443 if target.scheme == "https"
                                                                   else 80))
        request = self._request(target, body, headers)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout  # for the whole call, connecting included
        conn = self._take_idle(origin)
        if conn is not None:
            try:
                status = await self._exchange(conn, request, deadline)
            except ConnectionError:
                # a kept-alive connection the receiver had closed meanwhile (its idle time-out): once
                # more on a new one (had the receiver taken the first, the event id de-duplicates)
                conn = None
        if conn is None:
            conn = await asyncio.wait_for(self._connect(origin, target.raw_host),
                                          max(0.0, deadline - loop.time()))
            status = await self._exchange(conn, request, deadline)
        self._put_back_when_complete(origin, conn)
        return status

    @staticmethod
    async def _exchange(conn: _Response, request: bytes, deadline: float) -> tuple[int, str | None]:
        """Send on ``conn`` and await the answer's head until ``deadline`` (loop time; then
        ``TimeoutError``); a connection that failed is closed. (One timer per request: an
        ``asyncio.timeout`` block cost several times as much, on every webhook.)"""
        timer = asyncio.get_running_loop().call_at(deadline, conn.time_out)
        try:
            return await conn.send(request)
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._idle_count = 0
        await self._resolver.close()

    @property
    def idle_connections(self) -> int:
        return self._idle_count

    # --- connections --------------------------------------------------------------------------------

    def _take_idle(self, origin: tuple[str, str, int]) -> _Response | None:
        conns = self._idle.get(origin)
        while conns:
            conn = conns.pop()
            self._idle_count -= 1
            if not conns:
                del self._idle[origin]
            if conn.reusable:
                return conn
            conn.close()
        return None

    def _put_back_when_complete(self, origin: tuple[str, str, int], conn: _Response) -> None:
        if conn.complete:
            self._keep(origin, conn)
            return
        # the body is still arriving: keep the connection once it is complete (if reusable then), and
        # close it if it is not complete within the timeout (a receiver that never ends its body)
        conn.after_complete = lambda c: self._keep(origin, c)
        asyncio.get_running_loop().call_later(
            self._timeout, lambda: None if conn.complete else conn.close())

    def _keep(self, origin: tuple[str, str, int], conn: _Response) -> None:
        idle = self._idle.get(origin, [])
        if not conn.reusable or len(idle) >= self._max_idle:
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle[origin] = idle
        idle.append(conn)
        self._idle_count += 1
        if self._idle_count > self._max_idle_total:
            self._close_idle(lambda c: True, at_most=self._idle_count - self._max_idle_total)
        if self._sweep is None:
            self._sweep = loop.call_later(self._idle_seconds, self._sweep_idle)

    def _sweep_idle(self) -> None:
        """Close the connections idle for ``idle_seconds``; again later while any are left."""
        self._sweep = None
        cutoff = asyncio.get_running_loop().time() - self._idle_seconds
        self._close_idle(lambda c: c.idle_since <= cutoff)
        if self._idle_count:
            self._sweep = asyncio.get_running_loop().call_later(self._idle_seconds / 2,
                                                                self._sweep_idle)

    def _close_idle(self, which: Any, at_most: int | None = None) -> None:
        """Close idle connections ``which(conn)`` selects, oldest first (at most ``at_most``)."""
        chosen = sorted((c.idle_since, id(c), origin, c) for origin, conns in self._idle.items()
                        for c in conns if which(c))
        for _, _, origin, conn in chosen[:at_most]:
            self._idle[origin].remove(conn)
            if not self._idle[origin]:
                del self._idle[origin]
            self._idle_count -= 1
            conn.close()

    async def _connect(self, origin: tuple[str, str, int], server_name: str) -> _Response:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        answers = await self._resolver.resolve(host, port, family=socket.AF_UNSPEC)
        last: BaseException = ConnectionError(f"no address for {host}")
        for answer in answers:
            family = answer.get("family") or (socket.AF_INET6 if ":" in answer["host"]
                                               else socket.AF_INET)
            sockaddr: Any = (answer["host"], answer["port"])
            if family == socket.AF_INET6:
                sockaddr = (answer["host"], answer["port"], 0, 0)
            info = (family, socket.SOCK_STREAM, answer.get("proto", 0) or socket.IPPROTO_TCP, "",
                    sockaddr)
            try:
                sock = guarded_socket(info) if self._guard else socket.socket(family,
                                                                              socket.SOCK_STREAM)
            except OSError as exc:  # EgressRefused: this address may not be used
                last = exc
                continue
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, sockaddr)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                tls = self._tls_context() if scheme == "https" else None
                _, conn = await loop.create_connection(
                    _Response, sock=sock, ssl=tls, server_hostname=server_name if tls else None)
                return conn
            except BaseException as exc:
                sock.close()
                if not isinstance(exc, OSError | ssl.SSLError):
                    raise
                last = exc
        raise last

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
            self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        return self._tls

    # --- requests -------------------------------------------------------------------------------------

    def _request(self, target: URL, body: bytes, headers: dict[str, str]) -> bytes:
        host = target.raw_host or ""
        if ":" in host:
            host = f"[{host}]"  # an IPv6 literal
        if not target.is_default_port():
            host = f"{host}:{target.port}"
        head = [b"POST ", (target.raw_path_qs or "/").encode("ascii"), b" HTTP/1.1\r\nHost: ",
                host.encode("ascii"), b"\r\nUser-Agent: ", self._user_agent,
                b"\r\nContent-Length: ", str(len(body)).encode("ascii"), b"\r\n"]
        for name, value in headers.items():
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError("a header may not contain a line break")
            head += [name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
        head.append(b"\r\n")
        return b"".join(head) + body
