"""Load test of ``POST /v1/messages`` over loopback with ``wrk``: requests/s and p50/p99 latency.

What is measured: the customer API end to end — HTTP parse, auth, rate limiter, JSON validation, the
engine's submit (session actor, POP group commit with fsync) and the durable 202 — with ``wrk`` keeping
``--connections`` keep-alive connections busy for ``--duration`` seconds, once. Destinations rotate over the
three POPs' corridors (DE, SG, BR) and the API keys of ``--accounts`` accounts (default: one per engine
process, as ``smsroute bench``: 1, or N with ``--workers N`` in ``--run-args``). Non-2xx answers (e.g. 503
when the in-flight gate is full) are counted and reported, never hidden.

Targets (``--target``):

* ``run`` (default): a separate ``smsroute run`` process on the embedded default config (simulated
  carriers), with only the per-key rate limit raised; accounts are provisioned through the control port
  with the first-start operator token.
* ``in-process``: ``Engine.start(http=True)`` in this process, carriers made fast and wide
  (``--carrier-throughput``), so the figure is the ingress path, not a carrier limit.
* ``stub``: the HTTP layer alone, in front of a stub engine that accepts at once.

CPU: ``engine_cpu_us_per_request`` is the engine's CPU (user + system) over the middle half of the run —
every process of ``smsroute run``'s tree (core, workers, edges, nats-server) for ``run``, this process
for the others (wrk is a child and not counted) — divided by the requests of that window at the run's
average rate: the cost of a request summed over the processes, comparable across topologies.

Usage::

    .venv/bin/python -m bench.http_load --duration 15 --connections 64 --threads 2

Everything runs on this machine's cores: the engine and wrk compete for them (and with anything else).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.cluster_cost import tree_cpu_seconds
from engine.cli import count_from
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

RUN_CONFIG = """[http]
customer_port = 0
control_port = 0
rate_limit_per_second = 1000000.0
rate_limit_burst = 1000000
"""

HTTP_FAST = {"customer_port": 0, "control_port": 0, "rate_limit_per_second": 1e6,
             "rate_limit_burst": 1_000_000}


def overrides(throughput: int, window: int) -> dict:
    carriers = default_document()["carriers"]
    for table in carriers.values():
        table.update({"throughput": throughput, "window": window,
                      "latency": {"distribution": "fixed", "ms": 2},
                      "receipt_delay": {"distribution": "fixed", "ms": 20}})
    return {"http": HTTP_FAST, "carriers": carriers}


# --- targets: each returns (customer port, api keys, stop function, CPU seconds function) --------------


def _in_process(args: argparse.Namespace, tmp: Path) -> tuple[int, list[str], Any]:
    from engine import Engine

    engine = Engine.start(tmp / "data", http=True,
                          overrides=overrides(args.carrier_throughput, args.carrier_window))
    keys = []
    for n in range(args.accounts):
        acc = engine.create_account(f"load{n}@example.com")
        engine.register_sender(acc.id, "ACME")
        engine.deposit(acc.id, "1000000.00", "tron", f"0xload{n}", "TLOAD")
        keys.append(acc.api_key)
    return engine.http.customer_port, keys, lambda: engine.stop(drain_seconds=5), time.process_time


class StubEngine:
    """Just enough engine for the customer path, accepting at once: the HTTP layer's own ceiling. It
    authenticates a key as the engine does - its SHA-256 looked up, when the middleware resolves the
    account and again for each submit (``Engine._session_for_key``) - so the hashing the request path
    causes is counted here too."""

    def __init__(self, data_dir: Path) -> None:
        from engine.config import load_settings

        self.data_dir = data_dir
        self.settings = load_settings(None, {"http": HTTP_FAST})
        self.keys = {}
        self._n = 0

    @property
    def keys(self) -> dict[str, str]:
        """API key -> account id (the bench's clients send these keys)."""
        return self._keys

    @keys.setter
    def keys(self, keys: dict[str, str]) -> None:
        from engine import apikeys

        self._keys = keys
        self._by_digest = {apikeys.digest(k): account for k, account in keys.items()}

    def on_status(self, callback: Any) -> None: ...

    def stats(self) -> dict:
        return {}

    def account_id_for_key(self, api_key: Any) -> str:
        from engine import apikeys
        from engine.errors import AuthError

        account = self._by_digest.get(apikeys.digest_of(api_key) or b"")
        if account is None:
            raise AuthError("unknown API key")
        return account

    async def submit_async(self, api_key: Any, to: str, sender: str, body: str, **kw: Any) -> Any:
        self.account_id_for_key(api_key)
        return self._accepted()

    def submit_future(self, api_key: Any, to: str, sender: str, body: str, **kw: Any) -> Any:
        return self.submit_many(api_key, [{"to": to, "sender": sender, "body": body, **kw}])[0]

    def submit_many(self, api_key: Any, submissions: list[dict]) -> list[Any]:
        from concurrent.futures import Future

        self.account_id_for_key(api_key)  # the engine authenticates once per hand-off
        futures = []
        for _ in submissions:
            fut: Future = Future()
            fut.set_result(self._accepted())
            futures.append(fut)
        return futures

    def _accepted(self) -> Any:
        self._n += 1
        return SimpleNamespace(message_id=f"msg_{self._n:032x}", status="accepted", segments=1,
                               price_micro_usd=75000, encoding="GSM-7", pop="fra", country="DE")


def _stub(args: argparse.Namespace, tmp: Path) -> tuple[int, list[str], Any, Any]:
    from engine.http.server import HttpServers

    stub = StubEngine(tmp / "data")
    stub.data_dir.mkdir()
    stub.keys = {f"sk_live_stub{n}": f"acc_{n}" for n in range(args.accounts)}
    servers = HttpServers(stub, stub.settings).start()
    return servers.customer_port, list(stub.keys), servers.stop, time.process_time


def _post(port: int, token: str, path: str, body: dict) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body),
                     headers={"Authorization": f"Bearer {token}",
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
    finally:
        conn.close()
    if resp.status >= 300:
        raise RuntimeError(f"POST {path}: {resp.status} {answer}")
    return answer


def start_run(args: argparse.Namespace, tmp: Path) -> tuple[subprocess.Popen, dict[str, int], str, list[str]]:
    """Start ``smsroute run`` (with ``args.run_args``) on the load config and provision ``args.accounts``
    accounts through its control port: (the process, its ports by name, the operator token, the accounts'
    API keys)."""
    config = tmp / "load.toml"
    config.write_text(RUN_CONFIG)
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "--data-dir",
                             str(tmp / "data"), "--config", str(config), *args.run_args.split()],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while len(ports) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = re.match(r"(customer API|control port): https?://[^:]+:(\d+)", line)
        if found:
            ports[found.group(1)] = int(found.group(2))
    if len(ports) < 2:
        proc.kill()
        sys.exit("smsroute run did not print its ports")
    token = (tmp / "data" / "operator.token").read_text().strip()
    control, keys = ports["control port"], []
    for n in range(args.accounts):
        acc = _post(control, token, "/v1/accounts", {"email": f"load{n}@example.com"})
        _post(control, token, f"/v1/accounts/{acc['id']}/senders", {"sender": "ACME"})
        _post(control, token, f"/v1/accounts/{acc['id']}/deposits", {
            "usd": "1000000.00", "chain": "tron", "tx_hash": f"0xload{n}",
            "from_address": "TLOAD"})
        keys.append(acc["api_key"])
    return proc, ports, token, keys


def stop_run(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def _smsroute_run(args: argparse.Namespace, tmp: Path) -> tuple[int, list[str], Any]:
    proc, ports, _, keys = start_run(args, tmp)
    return (ports["customer API"], keys, lambda: stop_run(proc),
            lambda: tree_cpu_seconds(proc.pid))


def wrk_command(port: int, keys: list[str], tmp: Path, duration: int, connections: int,
                threads: int) -> list[str]:
    """The ``wrk`` command line of the load (its Lua script written into ``tmp``)."""
    script = tmp / "post.lua"
    script.write_text(LUA % {"keys": ",".join(f'"{k}"' for k in keys),
                             "tos": ",".join(f'"{t}"' for t in DESTINATIONS)})
    return [shutil.which("wrk") or "wrk", "-t", str(threads), "-c", str(connections), "-d",
            f"{duration}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"]


def wrk_result(out: str) -> dict:
    """The figures of ``wrk``'s RESULT line (exits if there is none)."""
    match = re.search(r"RESULT (\{.*\})", out)
    if match is None:
        sys.exit(f"could not parse wrk output:\n{out}")
    return json.loads(match.group(1))


TARGETS = {"run": _smsroute_run, "in-process": _in_process, "stub": _stub}


def run(args: argparse.Namespace) -> dict:
    if shutil.which("wrk") is None:
        sys.exit("wrk not found (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        port, keys, stop, cpu_seconds = TARGETS[args.target](args, Path(tmp))
        try:
            cmd = wrk_command(port, keys, Path(tmp), args.duration, args.connections, args.threads)
            with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
                time.sleep(args.duration / 4)  # the middle half of the run: no start-up, no tail
                cpu0, t0 = cpu_seconds(), time.monotonic()
                time.sleep(args.duration / 2)
                cpu1, t1 = cpu_seconds(), time.monotonic()
                out = proc.communicate()[0]
            if proc.returncode:
                sys.exit(f"wrk failed ({proc.returncode})")
        finally:
            stop()
    result = wrk_result(out)
    result["requests_per_s"] = round(result["requests"] / result["seconds"], 1)
    if result["requests_per_s"] > 0:
        result["engine_cpu_us_per_request"] = round(
            (cpu1 - cpu0) / (t1 - t0) / result["requests_per_s"] * 1e6)
    result["command"] = " ".join(["wrk", *cmd[1:-3], "-s", "post.lua", "<customer url>"])
    result["target"] = args.target
    result["accounts"] = args.accounts
    return result


def add_accounts_argument(parser: argparse.ArgumentParser) -> None:
    """``--accounts K``, defaulting as ``smsroute bench``'s (:func:`resolve_accounts`)."""
    parser.add_argument("--accounts", type=count_from(1), metavar="K",
                        help="API keys of K accounts (default: one per engine process - 1, or N "
                             "with --workers N in --run-args - as `smsroute bench`)")


def resolve_accounts(args: argparse.Namespace, workers: int = 0) -> argparse.Namespace:
    """``args`` with ``accounts`` set by ``smsroute bench``'s rule (``bench.cli.accounts_of``: one
    account per engine process) for an engine of ``workers`` worker processes (0: one process).
    Before, these benches defaulted to 8 accounts, so their figures did not compare with
    ``smsroute bench``'s."""
    from bench.cli import accounts_of  # (not at the top: bench.cli is the whole bench's CLI)

    args.accounts = accounts_of(argparse.Namespace(accounts=args.accounts, workers=workers))
    return args


def run_workers(run_args: str) -> int:
    """The ``--workers N`` among ``smsroute run``'s extra arguments (0: none, one process)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workers", type=int, default=0)
    return parser.parse_known_args(run_args.split())[0].workers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=sorted(TARGETS), default="run")
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    add_accounts_argument(parser)
    parser.add_argument("--carrier-throughput", type=int, default=100_000)
    parser.add_argument("--carrier-window", type=int, default=5000)
    parser.add_argument("--run-args", default="", metavar="ARGS",
                        help="more arguments for `smsroute run` (--target run), e.g. "
                             "'--workers 2 --edges 2'")
    args = parser.parse_args(argv)
    return resolve_accounts(args, run_workers(args.run_args) if args.target == "run" else 0)


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
