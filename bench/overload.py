"""Offer the customer API a multiple of its capacity and see how it answers: the door's figures.

What is measured: ``smsroute run`` in its own process (simulated carriers made fast and wide, rate limit
raised, connection bounds raised for one source address) gets ``POST /v1/messages`` at ``--rate`` per second
(open loop: each request has an intended send time, and its latency counts from then, so client-side
waiting is not hidden) over ``--connections`` keep-alive connections for ``--duration`` seconds, once. It
reports, per answer status, the count and p50/p99/max latency, the requests not answered within 1 s, and
the server's RSS (and its anonymous part, the heap: the rest is LMDB's file-backed pages, which grow with
the messages stored) before the burst, at its peak and ``--settle`` seconds after it.

Usage (first find the capacity, then offer three times it)::

    .venv/bin/python -m bench.overload --rate 2500 --duration 10
    .venv/bin/python -m bench.overload --rate 7500 --duration 30
    .venv/bin/python -m bench.overload --rate 7500 --duration 30 --no-door   # the same without the door

The client runs in this process on the same two cores as the server: its own cost limits the offered
rate (it reports the rate it achieved).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from bench import http_load

CONFIG = """[http]
customer_port = 0
control_port = 0
rate_limit_per_second = 1000000.0
rate_limit_burst = 1000000
max_connections = 5000
max_connections_per_address = 5000
max_pending_requests = {pending}
queue_delay_target_ms = {delay}

[engine]
max_in_flight = 200000
"""


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    """The process's resident memory (``RssAnon``: the heap, without LMDB's file-backed pages)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _start(tmp: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, int, list[str]]:
    config = tmp / "overload.toml"
    pending, delay = (args.max_pending, args.delay_ms) if args.door else (10**9, 10**9)
    config.write_text(CONFIG.format(pending=pending, delay=delay))
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "--data-dir", str(tmp / "data"),
                             "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    ports: dict[str, int] = {}
    while len(ports) < 2:
        line = proc.stdout.readline()
        if not line:
            sys.exit("smsroute run did not start")
        found = re.match(r"(customer API|control port): https?://[^:]+:(\d+)", line)
        if found:
            ports[found.group(1)] = int(found.group(2))
    token = (tmp / "data" / "operator.token").read_text().strip()
    keys = []
    for n in range(args.accounts):
        acc = http_load._post(ports["control port"], token, "/v1/accounts", {"email": f"o{n}@example.com"})
        http_load._post(ports["control port"], token, f"/v1/accounts/{acc['id']}/senders",
                        {"sender": "ACME"})
        http_load._post(ports["control port"], token, f"/v1/accounts/{acc['id']}/deposits", {
            "usd": "1000000.00", "chain": "tron", "tx_hash": f"0xo{n}", "from_address": "TLOAD"})
        keys.append(acc["api_key"])
    return proc, ports["customer API"], keys


async def _connection(port: int, queue: asyncio.Queue, results: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            intended, request = await queue.get()
            if request is None:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            await reader.readexactly(length)
            results.append((int(head.split()[1]), time.monotonic() - intended))
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except (ConnectionError, asyncio.IncompleteReadError):
        results.append((0, time.monotonic() - intended))


async def _offer(port: int, keys: list[str], args: argparse.Namespace) -> tuple[list, float]:
    tos = http_load.DESTINATIONS
    requests = []
    for n in range(64):
        body = json.dumps({"to": tos[n % 3], "from": "ACME", "body": "Your code is 123456"}).encode()
        requests.append(
            (f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keys[n % len(keys)]}\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    results: list = []
    queue: asyncio.Queue = asyncio.Queue()
    workers = [asyncio.create_task(_connection(port, queue, results)) for _ in range(args.connections)]
    start = time.monotonic()
    total = int(args.rate * args.duration)
    for n in range(total):
        intended = start + n / args.rate
        delay = intended - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((intended, requests[n % len(requests)]))
    offered_s = time.monotonic() - start
    for _ in workers:
        queue.put_nowait((0.0, None))
    await asyncio.wait(workers, timeout=60)
    return results, total / offered_s


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else 0.0


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, keys = _start(Path(tmp), args)
        try:
            time.sleep(2)
            before, anon_before = _rss_kb(proc.pid), _rss_kb(proc.pid, "RssAnon")
            peak = [before, anon_before]

            async def main() -> tuple[list, float]:
                async def watch() -> None:
                    while True:
                        peak[0] = max(peak[0], _rss_kb(proc.pid))
                        peak[1] = max(peak[1], _rss_kb(proc.pid, "RssAnon"))
                        await asyncio.sleep(0.5)

                watcher = asyncio.create_task(watch())
                try:
                    return await _offer(port, keys, args)
                finally:
                    watcher.cancel()

            results, achieved = uvloop.run(main())
            time.sleep(args.settle)
            after, anon_after = _rss_kb(proc.pid), _rss_kb(proc.pid, "RssAnon")
        finally:
            proc.terminate()
            proc.wait(60)
    by_status: dict[int, list[float]] = {}
    for status, seconds in results:
        by_status.setdefault(status, []).append(seconds)
    return {
        "offered_per_s": args.rate, "achieved_per_s": round(achieved, 1), "duration_s": args.duration,
        "connections": args.connections, "door": args.door, "answers": len(results),
        "over_1s": sum(1 for _, s in results if s > 1.0),
        "by_status": {str(k): {"count": len(v), "p50_ms": _pct(v, 0.5), "p99_ms": _pct(v, 0.99),
                               "max_ms": _pct(v, 1.0)} for k, v in sorted(by_status.items())},
        "rss_kb": {"before": before, "peak": peak[0], "after": after},
        "rss_anon_kb": {"before": anon_before, "peak": peak[1], "after": anon_after},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2500)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=1000)
    http_load.add_accounts_argument(parser)
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--max-pending", type=int, default=64)
    parser.add_argument("--delay-ms", type=float, default=25)
    parser.add_argument("--no-door", dest="door", action="store_false")
    return http_load.resolve_accounts(parser.parse_args(argv))  # `smsroute run`: one process


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
