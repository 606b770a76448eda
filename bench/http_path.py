"""The bench's http path: submit over the customer API on loopback, final statuses by signed webhook.

Why: the HTTP path is how most customers reach the engine, so its figure (messages/s through
``POST /v1/messages`` with receipts delivered to a webhook) is one of the targets. Everything runs on one
uvloop event loop in a thread of its own:

- a keep-alive client (``CONNECTIONS`` pooled connections) posts each message with the bench account's
  key; a 202 is "accepted", anything else a submit error with the API's error code;
- a receiver on ``127.0.0.1:0`` takes the webhooks, checks the ``Smsroute-Signature`` with the account's
  webhook secret (a bad signature is answered 401 and counted, never recorded as a status) and reports
  final statuses to the recorder.

Both are the lean ones of :mod:`bench.http_wire`, not aiohttp's: the driver shares the engine's two cores,
and with aiohttp it took ~0.7 of a core at ~2,400 messages/s.

The sending thread never waits for the loop: it appends to a deque and wakes the loop only when the deque
was empty (one ``call_soon_threadsafe`` per burst, not per message).
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from typing import Any

import uvloop

from bench.http_wire import HookServer, LoopbackClient
from bench.recorder import FINAL_STATUSES, Recorder
from bench.traffic import SENDER, Planned

CONNECTIONS = 64
START_TIMEOUT_S = 15.0
HOOK_PATH = "/hook"


class HttpTarget:
    """Submits over HTTP; receives final statuses by webhook. Start with :meth:`start`, end with
    :meth:`close`."""

    def __init__(self, engine: Any, api_key: str, account_id: str, webhook_secret: str,
                 webhook_batch: int = 1) -> None:
        self.engine = engine
        self.webhook_batch = webhook_batch
        self.api_key = api_key
        self.account_id = account_id
        self.secrets = [webhook_secret]
        self.bad_signatures = 0
        self.hook_port = 0
        self._recorder: Recorder | None = None
        self._queue: collections.deque[tuple] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: LoopbackClient | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="bench-http", daemon=True)

    # --- lifecycle (host thread) ---------------------------------------------------------------------

    def start(self) -> HttpTarget:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError("bench http client/receiver did not start")
        if self._error is not None:
            raise self._error
        self.engine.set_webhook(
            self.account_id, f"http://127.0.0.1:{self.hook_port}{HOOK_PATH}", sorted(FINAL_STATUSES),
            batch_max=self.webhook_batch, batch_wait_ms=50)
        return self

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(START_TIMEOUT_S)

    def bind(self, recorder: Recorder | None) -> None:
        self._recorder = recorder

    # --- the Target protocol (sending thread) ------------------------------------------------------

    def submit(
        self, recorder: Recorder, planned: Planned, pop: str, country: str, intended: float
    ) -> None:
        queue = self._queue
        was_empty = not queue
        queue.append((recorder, planned, pop, country, intended))
        if was_empty:
            self._loop.call_soon_threadsafe(self._drain)

    # --- the loop --------------------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            uvloop.run(self._serve())
        except BaseException as exc:  # reported to start(); the thread ends
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        hooks = await HookServer(self._on_hook).start()
        self.hook_port = hooks.port
        self._client = LoopbackClient("127.0.0.1", self.engine.http.customer_port,
                                      {"Authorization": f"Bearer {self.api_key}"}, CONNECTIONS)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._client.close()
            await hooks.close()

    def _drain(self) -> None:
        queue, create = self._queue, self._loop.create_task
        while queue:
            create(self._post(*queue.popleft()))

    async def _post(
        self, recorder: Recorder, planned: Planned, pop: str, country: str, intended: float
    ) -> None:
        payload = json.dumps({"to": planned.to, "from": SENDER, "body": planned.body}).encode()
        try:
            status, raw = await self._client.post("/v1/messages", payload)
            data = json.loads(raw)
        except (TimeoutError, OSError, ValueError) as exc:  # ConnectionError is an OSError
            recorder.submit_failed(pop, country, intended, f"http_{type(exc).__name__}")
            return
        if status == 202:
            recorder.accepted(data["id"], data.get("pop", pop), country, intended)
        else:
            code = (data.get("error") or {}).get("code") if isinstance(data, dict) else None
            recorder.submit_failed(pop, country, intended, code or f"http_{status}")

    def _on_hook(self, path: str, signature: str, raw: bytes) -> int:
        from engine.http.webhooks import verify

        if path != HOOK_PATH:
            return 404
        if not verify(signature, self.secrets, raw, time.time()):
            self.bad_signatures += 1
            return 401
        try:
            events = json.loads(raw)  # one event, or an array of them (opt-in batching)
            recorder = self._recorder
            if recorder is not None:
                for event in events if isinstance(events, list) else [events]:
                    data = event.get("data", {})
                    recorder.status(data["id"], data["status"], data["pop"], data["country"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return 400  # signed but not an event: the engine would retry it, so it is refused loudly
        return 204
