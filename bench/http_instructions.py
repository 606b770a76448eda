"""The customer API's own cost per request, without sockets: raw HTTP requests fed to the customer server's
protocol through an in-memory transport, on its loop, in front of bench.http_load's stub engine.

Why: on the shared 2-core machine ``bench.http_cost`` (wrk over loopback) moves by 10-20 % between runs
of the same code, more than most single changes to the request path. Without sockets the figure is the
Python work of aiohttp and of the API alone; run under valgrind it becomes an instruction count that
does not depend on the machine's load (a change of 1 % shows). Startup is subtracted by running twice::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.http_instructions --route post --requests 300
    # ... and again with --requests 1800: (instructions of the second - the first) / 1500

Without valgrind it prints the HTTP thread's CPU per request (noisy, as any timing here). Routes:
``post`` (``POST /v1/messages``), ``batch`` (``POST /v1/messages/batch``, ``--batch`` messages),
``get`` (``GET /v1/messages/{id}``) and ``bare`` (a bare aiohttp handler on the same loop: the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench import http_load

WARM = 300  # requests before the measured ones (imports, caches, first series)


class MemoryTransport(asyncio.Transport):
    """Just enough transport for aiohttp's protocol; each answer is written in one call."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: asyncio.Future | None = None
        self.last = b""
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: Any) -> None:
        self.last = bytes(data)
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(None)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_write_buffer_size(self) -> int:
        return 0


class StatusStub(http_load.StubEngine):
    """The stub engine, also answering ``status`` (for the ``get`` route)."""

    def status(self, message_id: str, *, account_id: str | None = None) -> Any:
        return SimpleNamespace(
            message_id=message_id, account_id="acc_0", status="delivered", to=http_load.DESTINATIONS[0],
            sender="ACME", country="DE", pop="fra", carrier="sim-de", encoding="GSM-7", segments=1,
            price_micro_usd=75000, submitted_at=1.0, updated_at=2.0, carrier_acked_at=1.5, error=None,
            validity_seconds=None, callback_url=None, attempts=1, refunded_micro_usd=0, client_ref=None)


def requests(keys: list[str], route: str, batch: int) -> list[bytes]:
    out = []
    for i in range(64):
        message = {"to": http_load.DESTINATIONS[i % 3], "from": "ACME", "body": "Your code is 123456"}
        method, path, body = "POST", "/v1/messages", json.dumps(message, separators=(",", ":"))
        if route == "batch":
            path = "/v1/messages/batch"
            body = json.dumps({"messages": [message] * batch}, separators=(",", ":"))
        elif route == "get":
            method, path, body = "GET", "/v1/messages/msg_" + "0" * 31 + "1", ""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer {keys[i % len(keys)]}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        out.append(head.encode() + b"\r\n" + body.encode())
    return out


async def drive(server: Any, reqs: list[bytes], n: int) -> tuple[float, bytes]:
    """Feed ``n`` requests one at a time (keep-alive); the HTTP thread's CPU per request and an answer."""
    loop = asyncio.get_running_loop()
    transport = MemoryTransport()
    protocol = server()
    protocol.connection_made(transport)
    await asyncio.sleep(0)

    async def one(raw: bytes) -> None:
        transport.answered = loop.create_future()
        protocol.data_received(raw)
        await transport.answered

    for i in range(WARM):
        await one(reqs[i % len(reqs)])
    started = time.thread_time()
    for i in range(n):
        await one(reqs[i % len(reqs)])
    cpu = time.thread_time() - started
    protocol.connection_lost(None)
    return cpu / max(1, n), transport.last


async def bare_server() -> Any:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202, body=b'{"id":"msg_0","status":"accepted"}',
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/messages", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    return runner.server


def measure(route: str, n: int, batch: int = 10) -> tuple[float, bytes]:
    from engine.config import load_settings
    from engine.http.connections import GuardedServer
    from engine.http.server import HttpServers

    with tempfile.TemporaryDirectory() as tmp:
        stub = StatusStub(Path(tmp) / "data")
        stub.data_dir.mkdir()
        # the door's queue-delay test would shed this back-to-back load: judge the path, not the door
        stub.settings = load_settings(None, {"http": {**http_load.HTTP_FAST, "queue_delay_target_ms": 1e9}})
        stub.keys = {f"sk_live_stub{n}": "acc_0" for n in range(8)}
        servers = HttpServers(stub, stub.settings).start()
        try:
            # HttpServers keeps no runner; its customer server is the one GuardedServer named so
            server = next(o for o in gc.get_objects()
                          if isinstance(o, GuardedServer) and o.app_name == "customer")
            if route == "bare":
                server = asyncio.run_coroutine_threadsafe(bare_server(), servers._loop).result(30)
            reqs = requests(list(stub.keys), route, batch)
            return asyncio.run_coroutine_threadsafe(drive(server, reqs, n), servers._loop).result(600)
        finally:
            servers.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=["post", "batch", "get", "bare"], default="post")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=10, help="messages per batch request")
    args = parser.parse_args(argv)
    cpu, answer = measure(args.route, args.requests, args.batch)
    print(json.dumps({"route": args.route, "requests": args.requests,
                      "thread_cpu_us_per_request": round(cpu * 1e6, 2),
                      "status_line": answer.split(b"\r\n", 1)[0].decode()}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
