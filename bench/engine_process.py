"""The engine in a child process, for the http path: the bench's client must not share the engine's GIL.

Why: on the http path the bench runs an HTTP client and a webhook receiver. In the engine's own process
they would take a large share of the one interpreter lock, and the figure would measure the bench as much
as the engine — real customers' clients run elsewhere. So the engine (with its HTTP servers) runs in a
``spawn``ed child; the parent drives it over loopback like any client.

The child also forwards carrier acknowledgements (message id, ``time.perf_counter()`` at the ack; the
clock is system-wide ``CLOCK_MONOTONIC`` on Linux, so the parent can subtract its own intended times) in
batches every ``ACK_FLUSH_S`` over a pipe, which answers ``set_webhook`` calls too. CPU time and peak RSS
of the child are read from ``/proc``, so the bench reports the engine's cost, not its own.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

ACK_FLUSH_S = 0.005
START_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 30.0


def _child(conn: Any, overrides: dict[str, Any], data_dir: str, account: dict[str, str]) -> None:
    """The child's main: start the engine with HTTP, open the bench account, serve the pipe."""
    from engine import Engine
    from engine.config import load_settings

    engine = Engine.start(data_dir=data_dir, http=True, settings=load_settings(None, overrides))
    try:
        acc = engine.create_account(email=account["email"])
        engine.register_sender(acc.id, account["sender"])
        engine.deposit(
            acc.id, usd=account["usd"], chain="bench", tx_hash="0xbench", from_address="bench"
        )
        acks: collections.deque[tuple[str, float]] = collections.deque()
        engine.on_carrier_ack(lambda mid, at: acks.append((mid, time.perf_counter())))
        conn.send(
            (
                "ready",
                {
                    "customer_port": engine.http.customer_port,
                    "account_id": acc.id,
                    "api_key": acc.api_key,
                    "webhook_secret": acc.webhook_secret,
                },
            )
        )
        _serve(conn, engine, acks)
    finally:
        engine.stop()
        conn.send(("stopped", None))


def _serve(conn: Any, engine: Any, acks: collections.deque) -> None:
    while True:
        if conn.poll(ACK_FLUSH_S):
            cmd, args = conn.recv()
            if cmd == "stop":
                return
            if cmd == "flush":
                if acks:
                    conn.send(("acks", [acks.popleft() for _ in range(len(acks))]))
                conn.send(("ok", None))
                continue
            if cmd == "set_webhook":
                try:
                    account_id, url, statuses, batch_max, batch_wait_ms = args
                    engine.set_webhook(account_id, url, statuses, batch_max=batch_max,
                                       batch_wait_ms=batch_wait_ms)
                    conn.send(("ok", None))
                except Exception as exc:  # reported to the caller, the child keeps serving
                    conn.send(("error", f"{type(exc).__name__}: {exc}"))
        if acks:
            batch = [acks.popleft() for _ in range(len(acks))]
            conn.send(("acks", batch))


class EngineProcess:
    """A started engine in a child process, looking enough like ``Engine`` for the bench's http path."""

    def __init__(self, overrides: dict[str, Any], data_dir: str, account: dict[str, str]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child,
            args=(child_conn, overrides, data_dir, account),
            name="smsroute-bench-engine",
            daemon=True,
        )
        self._ack_callbacks: list[Callable[[str, float], None]] = []
        self._replies: collections.deque[tuple[str, Any]] = collections.deque()
        self._reply_ready = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="bench-engine-pipe", daemon=True)
        self.http = SimpleNamespace(customer_port=0)
        self.info: dict[str, Any] = {}

    def start(self) -> EngineProcess:
        self._proc.start()
        if not self._conn.poll(START_TIMEOUT_S):
            self._proc.kill()
            raise RuntimeError("the engine process did not start in time")
        kind, info = self._conn.recv()
        if kind != "ready":
            raise RuntimeError(f"the engine process failed to start: {kind}")
        self.info = info
        self.http.customer_port = info["customer_port"]
        self._reader.start()
        return self

    def stop(self) -> None:
        if self._proc.is_alive():
            try:
                self._conn.send(("stop", None))
            except OSError:
                pass
            self._proc.join(CALL_TIMEOUT_S)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._reader.join(CALL_TIMEOUT_S)

    # --- what the bench calls ------------------------------------------------------------------------

    def on_carrier_ack(self, callback: Callable[[str, float], None]) -> None:
        """``callback(message_id, perf_counter_time)`` for every forwarded carrier acknowledgement."""
        self._ack_callbacks.append(callback)

    def set_webhook(
        self, account_id: str, url: str | None, statuses: list[str] | None = None,
        batch_max: int = 1, batch_wait_ms: int = 1000,
    ) -> None:
        self._call("set_webhook", (account_id, url, statuses, batch_max, batch_wait_ms))

    def flush_acks(self) -> None:
        """Return once every carrier ack the engine has seen so far went to the callbacks."""
        self._call("flush", None)

    def _call(self, cmd: str, args: Any) -> None:
        self._conn.send((cmd, args))
        with self._reply_ready:
            if not self._reply_ready.wait_for(lambda: self._replies, CALL_TIMEOUT_S):
                raise RuntimeError(f"the engine process did not answer {cmd}")
            kind, detail = self._replies.popleft()
        if kind != "ok":
            raise RuntimeError(f"{cmd} failed in the engine process: {detail}")

    @property
    def pid(self) -> int:
        return self._proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the engine process so far (from /proc/<pid>/stat)."""
        with open(f"/proc/{self._proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        """The engine process's peak resident set (VmHWM), in MB."""
        with open(f"/proc/{self._proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def _read(self) -> None:
        while True:
            try:
                kind, payload = self._conn.recv()
            except (EOFError, OSError):
                return
            if kind == "acks":
                for cb in self._ack_callbacks:
                    for mid, at in payload:
                        cb(mid, at)
            elif kind == "stopped":
                return
            else:
                with self._reply_ready:
                    self._replies.append((kind, payload))
                    self._reply_ready.notify_all()
