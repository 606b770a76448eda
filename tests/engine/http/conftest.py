"""Shared helpers for the HTTP tests: a running engine with both servers on loopback, a tiny client."""

from __future__ import annotations

import http.client
import json
import logging
import queue
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pykka
import pytest

from engine import Engine
from engine.config import default_document
from tests.door import LAG_NEVER_SHEDS
from tests.mailbox import Mailbox
from tests.waiting import wait_for  # noqa: F401  (re-exported for the http tests)

ALL_DELIVERED = {"delivered": 1.0, "undeliverable": 0.0, "rejected": 0.0, "expired": 0.0,
                 "throttled": 0.0, "no_answer": 0.0}
DE_NUMBER = "+4915112345678"


def overrides(**http: Any) -> dict[str, Any]:
    """Settings overrides: free ports, fast deterministic delivery in the fra corridor, a door that a
    loaded machine's lag does not shut (``tests.door``; ``http`` may set another target)."""
    fast = {"outcomes": ALL_DELIVERED,
            "receipt_delay": {"distribution": "fixed", "ms": 5},
            "latency": {"distribution": "fixed", "ms": 1}}
    carriers = default_document()["carriers"]  # overriding carriers replaces the whole table
    for name in ("fra-telekom", "fra-vodafone"):
        carriers[name].update(fast)
    # the suites make many unauthenticated control requests on purpose: the failed-login limit has its
    # own test (test_credentials_functional.py)
    return {"http": {"customer_port": 0, "control_port": 0, "webhook_allow_private_networks": True,
                     "control_auth_failures_per_minute": 1_000_000, **LAG_NEVER_SHEDS, **http},
            "carriers": carriers}


class Client:
    """Blocking HTTP client for one server (a fresh connection per request keeps tests simple)."""

    def __init__(self, port: int, token: str | None = None, tls: ssl.SSLContext | None = None,
                 source: str | None = None):
        self.port = port
        self.token = token
        self.tls = tls
        self.source = (source, 0) if source else None  # another loopback address, e.g. 127.0.0.7

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                headers: dict[str, str] | None = None, raw: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, dict[str, str], Any]:
        if self.tls is not None:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                               context=self.tls, source_address=self.source)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                              source_address=self.source)
        hdrs = dict(headers or {})
        credential = token if token is not None else self.token
        if credential:
            hdrs["Authorization"] = f"Bearer {credential}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            hdrs.setdefault("Content-Type", content_type)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            got = dict(resp.getheaders())
        finally:
            conn.close()
        parsed = json.loads(payload) if payload and "json" in got.get("Content-Type", "") else payload
        return resp.status, got, parsed

    def message_status(self, message_id: str) -> str | None:
        """``GET /v1/messages/{id}``'s status, or None while the API asks to be retried (``503`` or
        ``429`` with ``Retry-After``: a loaded host sheds at the door, and a client retries); any other
        answer - a ``404`` for a message it acknowledged above all - fails the test with what it was."""
        status, headers, body = self.request("GET", f"/v1/messages/{message_id}")
        if status == 200:
            return body["status"]
        if status in (429, 503) and "Retry-After" in headers:
            return None
        raise AssertionError(f"GET /v1/messages/{message_id} answered {status}: {body!r}")




class Receiver:
    """A webhook receiver on loopback: records (headers, body) of every POST; answers a script."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.got: queue.Queue[tuple[dict[str, str], bytes, str]] = queue.Queue()
        self.answers = list(answers or [])
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.got.put((dict(self.headers), body, self.path))
                status = outer.answers.pop(0) if outer.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self, timeout: float = 15.0) -> tuple[dict[str, str], bytes, str]:
        return self.got.get(timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_engine(tmp_path, **http: Any) -> Engine:
    return Engine.start(tmp_path / "data", http=True, overrides=overrides(**http))


def funded_account(engine: Engine, email: str = "dev@example.com", usd: str = "50.00",
                   sender: str = "ACME") -> Any:
    account = engine.create_account(email)
    engine.register_sender(account.id, sender)
    if usd:
        engine.deposit(account.id, usd, "tron", f"0x{account.id[-8:]}", "TXYZ")
    return account


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """One engine with both servers for a test module; stopped at the end of the module."""
    engine = start_engine(tmp_path_factory.mktemp("http"))
    yield engine
    engine.stop()


@pytest.fixture(autouse=True)
def _stop_all_actors():
    """Overrides the suite-wide per-test actor cleanup: here one engine serves a whole module and
    is stopped by its module fixture; :func:`_stop_leftover_actors` still stops anything left."""
    yield


@pytest.fixture(autouse=True, scope="module")
def _stop_leftover_actors():
    yield
    pykka.ActorRegistry.stop_all()


# --- log lines, to prove what never appears in one ---------------------------------------------------


class LogCapture(logging.Handler):
    """Each record as its message, its whole ``__dict__`` (structured fields) and any traceback text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__!r} {record.exc_text or ''}")


@pytest.fixture
def logs():
    """A :class:`LogCapture` on the root logger at DEBUG for the test's duration."""
    root, handler = logging.getLogger(), LogCapture()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="module")
def mailbox():
    """A loopback SMTP server for a module's engine (``tests.mailbox``)."""
    box = Mailbox()
    yield box
    box.close()
