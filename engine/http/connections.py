"""Connection hygiene for both HTTP ports: bounded connections, read timeouts, brief logs of bad input.

Without these, half-open connections were never closed: clients that trickle a header byte every few
seconds held their sockets forever and, enough of them, exhausted file descriptors so that normal
requests and the control port's ``/healthz`` failed. Each port gets its own :class:`ConnectionGate`, so a
flood on the customer port never takes the control port's slots.

* **Bounds** (:class:`ConnectionGate`): at most ``max_total`` open connections per port and
  ``max_per_address`` per source address (an IPv6 source counts per /64, the block one host usually
  holds). A connection over either bound is answered ``503`` (JSON, ``Retry-After``) at once and closed.
* **Timeouts** (:class:`GuardedRequestHandler`): a request head (request line and headers) must arrive
  complete within ``header_timeout_s`` of the connection opening or of its first byte after the previous
  answer, else ``408`` and close; a body must be read within ``body_timeout_s`` (enforced where bodies are
  read, :func:`engine.http.jsonio.read_body`); an idle keep-alive connection is closed after
  ``keepalive_timeout_s`` (aiohttp's own timer, which also covers a connection that never sends a byte).
* **Logs**: a request aiohttp cannot parse is answered in the one JSON error shape and logged once, at
  INFO, with the error's class and status only — never the offending bytes, which may be an
  ``Authorization`` header. At most :data:`LOG_PER_SECOND` such lines a second; the rest are counted.

The handler relies on four attributes of aiohttp's ``RequestHandler`` (``_request_count``,
``_request_in_progress``, ``_messages``, ``_lingering_time``); ``tests/engine/http/test_connections_functional.py`` fails if an
aiohttp upgrade changes them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from engine.http.errors import error_body, error_response

log = logging.getLogger(__name__)

LOG_PER_SECOND = 5
# The longest request URL (path and query; aiohttp's Python parser: the whole request line) and header
# line. They differ on purpose: aiohttp raises the same LineTooLong for both and names only the limit, so
# the limit tells a URL too long (414 uri_too_long) from a header line too long (431 header_too_large).
MAX_URL_BYTES = 8192
MAX_HEADER_LINE_BYTES = 8190
#: The keyword arguments every ``web.AppRunner`` of a :class:`GuardedServer` is made with.
PARSER_LIMITS = {"max_line_size": MAX_URL_BYTES, "max_field_size": MAX_HEADER_LINE_BYTES}
DESCRIPTOR_RESERVE = 256  # for stores, webhook connections, logs: what the connection bounds must leave


@dataclass(frozen=True)
class ConnectionLimits:
    max_total: int = 1000
    max_per_address: int = 100
    header_timeout_s: float = 10.0
    keepalive_timeout_s: float = 30.0


def ensure_descriptors(*limits: ConnectionLimits) -> int:
    """Make room for the connection bounds in the process's file-descriptor limit: raise the soft limit
    (up to the hard one) when the bounds plus a reserve need more, and warn if they still do not fit.
    Returns the soft limit in force."""
    needed = sum(limit.max_total for limit in limits) + DESCRIPTOR_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
        if soft < needed:
            log.warning("file-descriptor limit below the connection bounds",
                        extra={"limit": soft, "needed": needed})
    return soft


def _canned(status: int, reason: str, code: str, message: str, extra: str = "") -> bytes:
    """A complete HTTP/1.1 answer written straight to a transport (no request was parsed)."""
    body = error_body(code, message)
    head = (f"HTTP/1.1 {status} {reason}\r\nServer: smsroute\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n")
    return head.encode() + body


OVERLOADED = _canned(503, "Service Unavailable", "too_many_connections",
                     "too many open connections; retry shortly", "Retry-After: 1\r\n")
HEAD_TIMEOUT = _canned(408, "Request Timeout", "request_timeout",
                       "the request head did not arrive in time")


class ConnectionGate:
    """Counts open connections per port and per source address (one asyncio loop; not thread-safe)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open = 0
        self._by_address: dict[str, int] = {}
        self.counts = {"refused": 0, "head_timeouts": 0, "malformed": 0}
        self._log_window = 0.0
        self._logged_in_window = 0

    @staticmethod
    def address_key(peer: Any) -> str:
        """The bucket of a peer: its IPv4 address, or the /64 of an IPv6 address."""
        host = peer[0] if isinstance(peer, tuple) and peer else str(peer or "")
        try:
            ip = ipaddress.ip_address(str(host).split("%", 1)[0])
        except ValueError:
            return str(host)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
            return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
        return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)

    def admit(self, key: str) -> bool:
        """Take a slot for a new connection from ``key``; False (and counted) when over a bound."""
        held = self._by_address.get(key, 0)
        if self.open >= self.limits.max_total or held >= self.limits.max_per_address:
            self.counts["refused"] += 1
            return False
        self.open += 1
        self._by_address[key] = held + 1
        return True

    def release(self, key: str) -> None:
        self.open -= 1
        held = self._by_address.get(key, 0) - 1
        if held > 0:
            self._by_address[key] = held
        else:
            self._by_address.pop(key, None)

    def log_allowed(self) -> bool:
        """At most LOG_PER_SECOND lines about bad input a second (a flood must not flood the log)."""
        now = time.monotonic()
        if now - self._log_window >= 1.0:
            self._log_window, self._logged_in_window = now, 0
        self._logged_in_window += 1
        return self._logged_in_window <= LOG_PER_SECOND


class GuardedRequestHandler(RequestHandler):
    """aiohttp's protocol with the gate, the head timeout and JSON, brief error answers."""

    gate: ConnectionGate
    app_name: str = "http"

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._slot = self.gate.address_key(transport.get_extra_info("peername"))
        self._admitted = self.gate.admit(self._slot)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_count = 0
        if not self._admitted:
            transport.write(OVERLOADED)
            self.force_close()
            return
        self._start_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if getattr(self, "_admitted", False):
            self._admitted = False
            self.gate.release(self._slot)
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._cancel_head_timer()  # a head is complete
        elif data and self._admitted and self._head_timer is None \
                and not self._request_in_progress and not self._messages:
            self._start_head_timer()  # the first byte of the next head

    def _start_head_timer(self) -> None:
        self._head_count = self._request_count
        self._head_timer = self._loop.call_later(self.gate.limits.header_timeout_s,
                                                 self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._request_count != self._head_count or self._request_in_progress:
            return  # a request arrived meanwhile
        self.gate.counts["head_timeouts"] += 1
        if self.gate.log_allowed():
            log.info("request head timed out", extra={"app": self.app_name})
        if self.transport is not None:
            self.transport.write(HEAD_TIMEOUT)
        self.force_close()

    def close_after_answer(self) -> None:
        """Close as soon as the current answer is sent, without reading the rest of a stalled body
        (aiohttp would otherwise linger up to 10 s reading it)."""
        self._lingering_time = 0.0

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """Answer what aiohttp could not parse (or a bug) in the JSON error shape; log it briefly."""
        if request.writer.output_size > 0:
            raise ConnectionError("an answer is already being sent")
        if status == 500:
            log.error("unhandled error answering a request", extra={"app": self.app_name},
                      exc_info=exc)
            resp = error_response(500, "internal_error", "internal error")
        else:
            self.gate.counts["malformed"] += 1
            if self.gate.log_allowed():
                log.info("malformed HTTP request", extra={
                    "app": self.app_name, "status": status,
                    "error": type(exc).__name__ if exc is not None else "none"})
            if isinstance(exc, LineTooLong) and exc.args[1:2] == (MAX_URL_BYTES,):
                resp = error_response(414, "uri_too_long",
                                      f"the request URL is longer than {MAX_URL_BYTES} bytes")
            elif isinstance(exc, LineTooLong) and exc.args[1:2] == (MAX_HEADER_LINE_BYTES,):
                resp = error_response(431, "header_too_large", "a request header line is longer than "
                                      f"{MAX_HEADER_LINE_BYTES} bytes")
            else:
                resp = error_response(status, "malformed_http", "the HTTP request could not be parsed")
        resp.headers["Server"] = "smsroute"  # no software versions on the wire
        resp.force_close()
        return resp

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's own error logs: the exception's class only (its text may quote request bytes)."""
        exc = kw.get("exc_info")
        log.warning("HTTP connection error", extra={
            "app": self.app_name, "error": type(exc).__name__ if exc is not None else "none"})


class GuardedServer(web.Server):
    """aiohttp's low-level server making :class:`GuardedRequestHandler` protocols."""

    gate: ConnectionGate
    app_name: str = "http"

    def __call__(self) -> RequestHandler:
        handler = GuardedRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.gate = self.gate
        handler.app_name = self.app_name
        return handler
