"""Load test of ``POST /v1/messages`` over loopback with ``wrk``: requests/s and p50/p99 latency.

What is measured: the customer API end to end — HTTP parse, auth, rate limiter, JSON validation, the
engine's submit (session actor, POP group commit with fsync) and the durable 202 — with ``wrk`` keeping
``--connections`` keep-alive connections busy for ``--duration`` seconds. Destinations rotate over the three
POPs' corridors (DE, SG, BR) and the API keys of ``--accounts`` accounts. Simulated carriers are made fast
and wide (``--carrier-throughput``) so the figure is the ingress path, not a carrier limit; the engine's
in-flight gate still applies (503s are counted and reported, never hidden).

Usage::

    .venv/bin/python -m bench.http_load --duration 15 --connections 64 --threads 2

Everything runs on this machine's cores: the engine process and wrk compete for them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from engine import Engine
from engine.config import default_document

DESTINATIONS = ("+4915112345678", "+6591234567", "+5511912345678")

LUA = """
local keys = {%(keys)s}
local tos = {%(tos)s}
local i = 0
request = function()
  i = i + 1
  local body = '{"to":"' .. tos[(i %% #tos) + 1] .. '","from":"ACME","body":"Your code is 123456"}'
  return wrk.format("POST", "/v1/messages", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. keys[(i %% #keys) + 1]}, body)
end
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %%d, "seconds": %%.3f, "non_2xx": %%d, ' ..
    '"socket_errors": %%d, "p50_ms": %%.3f, "p90_ms": %%.3f, "p99_ms": %%.3f, "max_ms": %%.3f}\\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def overrides(throughput: int, window: int) -> dict:
    carriers = default_document()["carriers"]
    for table in carriers.values():
        table.update({"throughput": throughput, "window": window,
                      "latency": {"distribution": "fixed", "ms": 2},
                      "receipt_delay": {"distribution": "fixed", "ms": 20}})
    return {"http": {"customer_port": 0, "control_port": 0, "rate_limit_per_second": 1e6,
                     "rate_limit_burst": 1_000_000},
            "carriers": carriers}


def run(args: argparse.Namespace) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk not found (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine.start(Path(tmp) / "data", http=True,
                              overrides=overrides(args.carrier_throughput, args.carrier_window))
        try:
            keys = []
            for n in range(args.accounts):
                acc = engine.create_account(f"load{n}@example.com")
                engine.register_sender(acc.id, "ACME")
                engine.deposit(acc.id, "1000000.00", "tron", f"0xload{n}", "TLOAD")
                keys.append(acc.api_key)
            script = Path(tmp) / "post.lua"
            script.write_text(LUA % {"keys": ",".join(f'"{k}"' for k in keys),
                                     "tos": ",".join(f'"{t}"' for t in DESTINATIONS)})
            url = f"http://127.0.0.1:{engine.http.customer_port}"
            cmd = [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d",
                   f"{args.duration}s", "--latency", "-s", str(script), url]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        finally:
            engine.stop(drain_seconds=5)
    match = re.search(r"RESULT (\{.*\})", out)
    if match is None:
        sys.exit(f"could not parse wrk output:\n{out}")
    result = json.loads(match.group(1))
    result["requests_per_s"] = round(result["requests"] / result["seconds"], 1)
    result["command"] = " ".join(cmd[:-3] + ["-s", "post.lua", "<customer url>"])
    result["accounts"] = args.accounts
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--carrier-throughput", type=int, default=100_000)
    parser.add_argument("--carrier-window", type=int, default=5000)
    print(json.dumps(run(parser.parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
