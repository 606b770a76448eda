"""CPU per ``POST /v1/messages`` (and per batch item): how much of this process one request costs.

What is measured: the CPU seconds (user + system, every thread of this process) spent while ``wrk``
(another process) keeps ``--connections`` keep-alive connections busy for ``--duration`` seconds, divided by
the requests answered — once per ``--target``:

* ``stub``: the HTTP layer alone in front of a stub engine that accepts at once (bench.http_load's stub):
  the request path's own cost (parse, auth, rate limit, validation, answer, request log, metrics);
* ``in-process``: ``Engine.start(http=True)`` in this process with fast carriers: the whole cost of an
  accepted, durable message (without webhooks: no webhook URL is set);
* ``bare``: a bare aiohttp + uvloop handler answering a constant JSON (the floor of any aiohttp API).

``--batch N`` posts ``/v1/messages/batch`` with N messages per request instead (the figure is then per
message). wrk's own CPU is not counted. Run before and after a change in one session and compare ratios:
the machine is shared, so absolute figures drift.

Usage::

    .venv/bin/python -m bench.http_cost --target stub --duration 8
    .venv/bin/python -m bench.http_cost --target in-process --duration 8 --batch 100
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import http_load

LUA = """
local keys = {%(keys)s}
local tos = {%(tos)s}
local batch = %(batch)d
local i = 0
request = function()
  i = i + 1
  local key = keys[(i %% #keys) + 1]
  local path = "/v1/messages"
  local body
  if batch > 0 then
    local items = {}
    for n = 1, batch do
      items[n] = '{"to":"' .. tos[((i + n) %% #tos) + 1] .. '","from":"ACME","body":"Your code is 123456"}'
    end
    body = '{"messages":[' .. table.concat(items, ",") .. ']}'
    path = "/v1/messages/batch"
  else
    body = '{"to":"' .. tos[(i %% #tos) + 1] .. '","from":"ACME","body":"Your code is 123456"}'
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key}, body)
end
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %%d, "seconds": %%.3f, "non_2xx": %%d, ' ..
    '"p50_ms": %%.3f, "p99_ms": %%.3f}\\n', summary.requests, summary.duration / 1e6,
    summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _bare(args: argparse.Namespace, tmp: Path) -> tuple[int, list[str], object, object]:
    """A bare aiohttp + uvloop app answering every POST with a constant JSON: the floor."""
    import asyncio
    import threading

    import uvloop
    from aiohttp import web

    answer = b'{"id":"msg_0","status":"accepted"}'

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202, body=answer, content_type="application/json")

    ready, box = threading.Event(), {}

    def serve() -> None:
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_post("/v1/messages", handle)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        box["port"], box["loop"] = site._server.sockets[0].getsockname()[1], loop
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait(10)
    return box["port"], ["bare"], lambda: box["loop"].call_soon_threadsafe(box["loop"].stop), _cpu


TARGETS = {**http_load.TARGETS, "bare": _bare}


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def measure(args: argparse.Namespace) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk not found (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        port, keys, stop, cpu_seconds = TARGETS[args.target](args, Path(tmp))
        try:
            script = Path(tmp) / "post.lua"
            script.write_text(LUA % {"keys": ",".join(f'"{k}"' for k in keys),
                                     "tos": ",".join(f'"{t}"' for t in http_load.DESTINATIONS),
                                     "batch": args.batch})
            cmd = [wrk, "-t", "1", "-c", str(args.connections), "-d", f"{args.duration}s",
                   "--latency", "-s", str(script), f"http://127.0.0.1:{port}"]
            before = cpu_seconds()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            cpu = cpu_seconds() - before
        finally:
            stop()
    match = re.search(r"RESULT (\{.*\})", out)
    if match is None:
        sys.exit(f"could not parse wrk output:\n{out}")
    result = json.loads(match.group(1))
    per_request = max(1, args.batch)
    messages = result["requests"] * per_request
    result.update(target=args.target, batch=args.batch, cpu_seconds=round(cpu, 3),
                  requests_per_s=round(result["requests"] / result["seconds"], 1),
                  messages_per_s=round(messages / result["seconds"], 1),
                  cpu_us_per_message=round(cpu / max(1, messages) * 1e6, 1))
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["bare", "stub", "in-process"], default="stub")
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch", type=int, default=0, help="messages per /v1/messages/batch request")
    http_load.add_accounts_argument(parser)
    parser.add_argument("--carrier-throughput", type=int, default=100_000)
    parser.add_argument("--carrier-window", type=int, default=5000)
    return http_load.resolve_accounts(parser.parse_args(argv))  # every target is one process


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(measure(parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
