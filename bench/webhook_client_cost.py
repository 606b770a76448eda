"""CPU per webhook POST: aiohttp's client against the engine's webhook client (``engine.http.webhook_client``).

A bare aiohttp receiver on loopback runs in a child process (its CPU is not counted); this process POSTs
``--requests`` small signed-looking JSON bodies over ``--connections`` kept-alive connections with each
client in turn, and prints the client's CPU µs per request and the rate. Run both in one session and
compare the ratio: the machine is shared, so absolute figures drift.

Usage::

    .venv/bin/python -m bench.webhook_client_cost --requests 20000 --connections 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time

import aiohttp
import uvloop
from aiohttp import web

from engine.cluster.nats_server import free_port
from engine.http.webhook_client import WebhookClient

BODY = b'{"type":"message.status","data":{"id":"msg_0","status":"delivered"}}'
HEADERS = {"Content-Type": "application/json", "Smsroute-Signature": "t=1,v1=00",
           "Smsroute-Event-Id": "evt_0"}


def _receiver(port: int) -> None:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, loop=uvloop.new_event_loop())


async def _run(post, requests: int, connections: int) -> tuple[float, float]:
    left = [requests]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await post()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return (time.process_time() - cpu) / requests * 1e6, requests / (time.perf_counter() - wall)


async def _aiohttp(url: str, requests: int, connections: int) -> tuple[float, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        async def post() -> None:
            async with session.post(url, data=BODY, headers=HEADERS, allow_redirects=False) as r:
                await r.read()

        return await _run(post, requests, connections)


async def _webhook_client(url: str, requests: int, connections: int) -> tuple[float, float]:
    client = WebhookClient(timeout_s=10, allow_private_networks=True,
                           max_idle_per_origin=connections)
    try:
        return await _run(lambda: client.post(url, BODY, HEADERS), requests, connections)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    port = free_port()
    receiver = multiprocessing.Process(target=_receiver, args=(port,), daemon=True)
    receiver.start()
    try:
        url = f"http://127.0.0.1:{port}/hook"
        deadline = time.monotonic() + 10
        while True:  # wait for the receiver to listen
            try:
                uvloop.run(_webhook_client(url, 1, 1))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        results = []
        for _ in range(args.rounds):
            for name, run in (("aiohttp", _aiohttp), ("webhook_client", _webhook_client)):
                cpu_us, rate = uvloop.run(run(url, args.requests, args.connections))
                results.append({"client": name, "cpu_us_per_request": round(cpu_us, 1),
                                "requests_per_s": round(rate)})
                print(json.dumps(results[-1]))
    finally:
        receiver.terminate()


if __name__ == "__main__":
    main()
