"""kill -9 with webhooks pending: after the restart every event is delivered, none is lost, a duplicate
only ever carries the same event id, and each message's events arrive in order."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine import Engine
from engine.http.webhooks import SIGNATURE_HEADER, verify
from tests.engine.crash_support import webhook_engine_overrides
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[3]


class HookReceiver:
    """A threaded webhook receiver on loopback; :meth:`answer` decides each POST's status and headers."""

    def __init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers = outer.answer(dict(self.headers), body)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": "0"}.items():
                    self.send_header(name, value)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, headers: dict, body: bytes) -> tuple[int, dict[str, str]]:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FlakyReceiver(HookReceiver):
    """Records every webhook POST; while ``failing`` answers 500 to most of them (so they stay pending)."""

    def __init__(self) -> None:
        self.failing = True
        self.received: list[tuple[float, bool, dict, bytes]] = []  # (time, answered 2xx, headers, body)
        self.lock = threading.Lock()
        self.rng = random.Random(7)
        super().__init__()

    def answer(self, headers: dict, body: bytes) -> tuple[int, dict[str, str]]:
        with self.lock:
            ok = not self.failing or self.rng.random() < 0.3
            self.received.append((time.monotonic(), ok, headers, body))
        return (200 if ok else 500), {}

    def events(self) -> list[tuple[bool, dict, dict]]:
        """(answered 2xx, headers, event) for every event received, in arrival order."""
        out = []
        with self.lock:
            received = list(self.received)
        for _, ok, headers, body in received:
            parsed = json.loads(body)
            for event in parsed if isinstance(parsed, list) else [parsed]:
                out.append((ok, headers, event))
        return out


@pytest.mark.parametrize("batch_max", [1, 20])
def test_webhooks_pending_at_sigkill_are_all_delivered_after_the_restart(tmp_path, batch_max):
    receiver = FlakyReceiver()
    data_dir, out = tmp_path / "data", tmp_path / "accepted.txt"
    proc = subprocess.Popen([sys.executable, "-m", "tests.engine.webhook_crash_child", str(data_dir),
                             str(out), receiver.url, str(batch_max)], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: proc.poll() is not None or (out.exists() and "done" in out.read_text()),
                 timeout=90)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        wait_for(lambda: len(receiver.received) >= 20, timeout=30)  # deliveries under way, most failing
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = out.read_text().split()
    account_id = lines[1]
    accepted = [lines[i + 1] for i, word in enumerate(lines) if word == "accepted"]
    assert len(accepted) == 150
    delivered_before = {(e["data"]["id"], e["data"]["status"]) for ok, _, e in receiver.events() if ok}
    assert len(delivered_before) < 300  # some were still pending at the kill

    receiver.failing = False
    engine = Engine.start(data_dir=data_dir, http=True, overrides=webhook_engine_overrides())
    try:
        wanted = {(mid, status) for mid in accepted for status in ("accepted", "delivered")}

        def all_delivered() -> bool:
            return wanted <= {(e["data"]["id"], e["data"]["status"])
                              for ok, _, e in receiver.events() if ok}

        wait_for(all_delivered, timeout=60)
        secret = engine.account(account_id).webhook_secrets[0]
    finally:
        engine.stop()
        receiver.close()
    with receiver.lock:
        for _, _, headers, body in receiver.received:  # every POST signed over its raw body
            assert verify(headers[SIGNATURE_HEADER], [secret], body, now=time.time())
    ids: dict[tuple[str, str], set[str]] = {}
    first_ok: dict[tuple[str, str], int] = {}
    for n, (ok, _, event) in enumerate(receiver.events()):
        key = (event["data"]["id"], event["data"]["status"])
        ids.setdefault(key, set()).add(event["id"])
        if ok:
            first_ok.setdefault(key, n)
        assert event["data"]["client_ref"].startswith("ref-")
    assert set(ids) == wanted  # nothing else, nothing lost
    assert all(len(v) == 1 for v in ids.values())  # a duplicate only ever with the same event id
    for mid in accepted:  # each message's events in order: delivered never before accepted
        assert first_ok[(mid, "accepted")] < first_ok[(mid, "delivered")]


class RetryAfterReceiver(HookReceiver):
    """Answers ``503`` with ``Retry-After: RETRY_AFTER_S`` while ``failing``, then ``200``; records
    (wall time, answered 2xx) of every POST."""

    RETRY_AFTER_S = 6

    def __init__(self) -> None:
        self.failing = True
        self.received: list[tuple[float, bool]] = []
        super().__init__()

    def answer(self, headers: dict, body: bytes) -> tuple[int, dict[str, str]]:
        ok = not self.failing
        self.received.append((time.time(), ok))
        return (200, {}) if ok else (503, {"Retry-After": str(self.RETRY_AFTER_S)})


def test_a_retry_schedule_survives_a_restart_so_the_event_is_not_resent_at_once(tmp_path):
    receiver = RetryAfterReceiver()
    data_dir = tmp_path / "data"
    engine = Engine.start(data_dir=data_dir, http=True, overrides=webhook_engine_overrides())
    try:
        account = engine.create_account(email="retry@example.com")
        engine.register_sender(account.id, "RETRY")
        engine.deposit(account.id, usd="10", chain="test", tx_hash="0xr", from_address="addr")
        engine.set_webhook(account.id, receiver.url, ["accepted"])
        message_id = engine.submit(account.api_key, to="+4915112345678", sender="RETRY",
                                   body="retry schedule").message_id

        def recorded():  # the POP has committed the failed attempt's schedule beside the event
            rows = [r for r in engine.pending_webhook_events() if r[2].message_id == message_id]
            return rows if rows and rows[0][3] == 1 else None

        (_, _, _, attempt, next_at), = wait_for(recorded, "the retry schedule in the outbox")
        failed_at = receiver.received[0][0]
        assert next_at >= failed_at + receiver.RETRY_AFTER_S - 0.5  # the receiver's Retry-After
    finally:
        engine.stop()
    receiver.failing = False
    engine = Engine.start(data_dir=data_dir, http=True, overrides=webhook_engine_overrides())
    try:
        assert time.time() < next_at  # (the restart took less than the Retry-After)
        wait_for(lambda: any(ok for _, ok in receiver.received), "the delivery after the restart",
                 timeout=30)
        sent_again = [t for t, _ in receiver.received[1:]]
        assert min(sent_again) >= next_at - 0.05  # not at once: the backoff resumed where it was
        wait_for(lambda: not [r for r in engine.pending_webhook_events()
                              if r[2].message_id == message_id], "the event removed once delivered")
    finally:
        engine.stop()
        receiver.close()
