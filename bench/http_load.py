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
        table.update(
            {
                "throughput": throughput,
                "window": window,
                "latency": {"distribution": "fixed", "ms": 2},
                "receipt_delay": {"distribution": "fixed", "ms": 20},
            }
        )
    return {
        "http": {
            "customer_port": 0,
            "control_port": 0,
            "rate_limit_per_second": 1e6,
            "rate_limit_burst": 1_000_000,
        },
        "carriers": carriers,
    }


class StubEngine:
    """Just enough engine for the customer path, answering at once: the HTTP layer's own ceiling."""

    def __init__(self, data_dir: Path) -> None:
        from engine.config import load_settings

        self.data_dir = data_dir
        self.settings = load_settings(None, overrides(1, 1))
        self.keys: dict[str, str] = {}
        self._n = 0

    def create_account(self, email: str):
        from types import SimpleNamespace

        key = f"sk_live_stub{len(self.keys)}"
        self.keys[key] = f"acc_{len(self.keys)}"
        return SimpleNamespace(id=self.keys[key], api_key=key)

    def register_sender(self, *a) -> None: ...
    def deposit(self, *a) -> int:
        return 0

    def on_status(self, callback) -> None: ...
    def stats(self) -> dict:
        return {}

    def account_id_for_key(self, key: str) -> str:
        from engine.errors import AuthError

        if key not in self.keys:
            raise AuthError("unknown")
        return self.keys[key]

    async def submit_async(self, api_key, to, sender, body, **kw):
        from engine._engine import Accepted

        self._n += 1
        return Accepted(f"msg_{self._n:032x}", 1, 75000, "fra", "GSM-7")


def _start(args: argparse.Namespace, tmp: str):
    if args.stub_engine:
        from engine.http.server import HttpServers

        stub = StubEngine(Path(tmp) / "data")
        stub.data_dir.mkdir()
        stub.http = HttpServers(stub, stub.settings).start()
        stub.stop = lambda drain_seconds=0: stub.http.stop()
        return stub
    return Engine.start(
        Path(tmp) / "data",
        http=True,
        overrides=overrides(args.carrier_throughput, args.carrier_window),
    )


def run(args: argparse.Namespace) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk not found (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        engine = _start(args, tmp)
        try:
            keys = []
            for n in range(args.accounts):
                acc = engine.create_account(f"load{n}@example.com")
                engine.register_sender(acc.id, "ACME")
                engine.deposit(acc.id, "1000000.00", "tron", f"0xload{n}", "TLOAD")
                keys.append(acc.api_key)
            script = Path(tmp) / "post.lua"
            script.write_text(
                LUA
                % {
                    "keys": ",".join(f'"{k}"' for k in keys),
                    "tos": ",".join(f'"{t}"' for t in DESTINATIONS),
                }
            )
            url = f"http://127.0.0.1:{engine.http.customer_port}"
            cmd = [
                wrk,
                "-t",
                str(args.threads),
                "-c",
                str(args.connections),
                "-d",
                f"{args.duration}s",
                "--latency",
                "-s",
                str(script),
                url,
            ]
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
    result["engine"] = "stub (HTTP layer alone)" if args.stub_engine else "real"
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--carrier-throughput", type=int, default=100_000)
    parser.add_argument("--carrier-window", type=int, default=5000)
    parser.add_argument(
        "--stub-engine",
        action="store_true",
        help="answer submits at once: measures the HTTP layer alone",
    )
    print(json.dumps(run(parser.parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
