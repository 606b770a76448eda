"""``smsroute webhook-receiver``: a local endpoint that prints every webhook and checks its signature.

For trying the engine out (the README's quickstart) and for debugging an integration: it listens on
``127.0.0.1:9000`` by default, answers ``204`` to each POST with a valid (or unchecked) signature and
``400`` to one whose signature does not verify, and prints one line per webhook::

    signature verified: {"id":"evt_…","type":"message.status","data":{"id":"…","status":"delivered",…}}

The signing secret is read from ``--secret-file`` at every request (the file may appear after the
receiver started, e.g. when the quickstart rotates the secret); without it signatures are not checked.
The engine reaches a receiver on this machine only with ``[http] webhook_allow_private_networks = true``.
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from engine.http.webhooks import SIGNATURE_HEADER, verify

MAX_BODY_BYTES = 1 << 20


class WebhookReceiver(ThreadingHTTPServer):
    """The receiving server; ``serve_forever()`` until ``shutdown()``."""

    daemon_threads = True

    def __init__(self, host: str, port: int, secret_file: Path | None, out=None) -> None:
        super().__init__((host, port), _Handler)
        self.secret_file = secret_file
        self.out = out or sys.stdout  # the stream of now, not of the first import
        self.lock = threading.Lock()
        self.received = 0

    def secrets(self) -> list[str] | None:
        """The current secret (None: signatures are not checked)."""
        if self.secret_file is None:
            return None
        try:
            secret = self.secret_file.read_text(encoding="utf-8").strip()
        except OSError:
            return []  # named but not there (yet): nothing verifies
        return [secret] if secret else []

    def report(self, verdict: str, body: bytes) -> None:
        with self.lock:
            self.received += 1
            print(f"signature {verdict}: {body.decode('utf-8', 'replace')}", file=self.out,
                  flush=True)


class _Handler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY_BYTES:
            self._answer(413)
            return
        body = self.rfile.read(length)
        secrets = self.server.secrets()
        if secrets is None:
            verdict = "not checked"
        else:
            header = self.headers.get(SIGNATURE_HEADER, "")
            verdict = "verified" if verify(header, secrets, body, time.time()) else "INVALID"
        self.server.report(verdict, body)
        self._answer(400 if verdict == "INVALID" else 204)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's naming)
        pass  # one line per webhook is printed by report(); no access log


def start_receiver(host: str, port: int, secret_file: str | None) -> WebhookReceiver:
    """Bind, serve on a daemon thread and print where; ``shutdown()`` the result to stop it."""
    server = WebhookReceiver(host, port, Path(secret_file) if secret_file else None)
    threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True).start()
    bound = server.server_address[1]
    checked = f"checking signatures with {secret_file}" if secret_file else "signatures not checked"
    print(f"webhook receiver: http://{host}:{bound}/ ({checked})", flush=True)
    return server
