"""Where the CPU of ``smsroute run``'s customer HTTP path goes: by process and by thread, per message.

``bench.http_load --target run`` gives one figure, the CPU of every process of the tree per request. To
find what to cut in a cluster (``--run-args '--workers 1'``: a core serving HTTP, a worker, a nats-server)
that figure has to be split: this runs the same load (``wrk``, the same Lua script and accounts) and reads
the CPU (user + system) of every thread of every process of the tree from ``/proc/<pid>/task/*/stat`` at
both ends of the run's middle half, and the engine's counters (``GET /v1/stats``: NATS messages and frames
each way, POP commit rounds) at the same two moments. Each figure is divided by the requests of that window
(the run's average rate), so µs per message and counts per 1,000 messages.

Python threads have no OS names here, so a thread is its process's role and its id; with ``--py-spy PATH``
each process is dumped once before the load and its threads are named (``core:smsroute-http``,
``worker:nats-w0``, ...). Usage::

    .venv/bin/python -m bench.http_threads --run-args '--workers 1' --duration 10 --connections 32 \\
        --py-spy /path/to/py-spy

Measured with it: ``bench/RESULTS.md``, session 12.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from bench import http_load
from bench.http_load import start_run, stop_run, wrk_command, wrk_result

COUNTERS = ("batches_", "frames_", "commits")  # the stats counted per 1,000 messages


def descendants(root: int) -> list[int]:
    """``root`` and every living process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def thread_cpu(pid: int) -> dict[int, float]:
    """User + system CPU seconds so far of each living thread of ``pid`` (empty once it is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return out


def role(pid: int) -> str:
    """What a process of the tree is: ``core``, ``worker``, ``edge``, ``nats-server`` (else its pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return str(pid)
    if argv and argv[0].endswith("nats-server"):
        return "nats-server"
    if "engine.cluster.worker" in argv:
        return "worker"
    if "engine.cluster.edge" in argv:
        return "edge"
    return "core" if "run" in argv else str(pid)


def thread_names(py_spy: str, pid: int) -> dict[int, str]:
    """Thread id -> Python thread name, from one ``py-spy dump`` of ``pid`` (empty if it fails)."""
    try:
        out = subprocess.run([py_spy, "dump", "--nonblocking", "-p", str(pid)], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_dump(out)


def parse_dump(text: str) -> dict[int, str]:
    """The ``Thread <id> (<state>): "<name>"`` lines of a ``py-spy dump`` (ids decimal or hex)."""
    names = {}
    for found in re.finditer(r'Thread (0x[0-9A-Fa-f]+|\d+) \([^)]*\): "([^"]*)"', text):
        tid = found.group(1)
        names[int(tid, 16) if tid.startswith("0x") else int(tid)] = found.group(2)
    return names


def per_message(before: dict[int, dict[int, float]], after: dict[int, dict[int, float]],
                roles: dict[int, str], names: dict[int, dict[int, str]],
                messages: float) -> dict[str, float]:
    """µs of CPU per message of each thread between two readings, by ``role:name`` (threads of one name
    in one role added up, e.g. nats-server's), largest first; threads that spent nothing left out."""
    out: dict[str, float] = {}
    for pid, threads in after.items():
        for tid, seconds in threads.items():
            spent = seconds - before.get(pid, {}).get(tid, 0.0)
            if spent > 0:
                key = f"{roles[pid]}:{names.get(pid, {}).get(tid, 'threads' if roles[pid] == 'nats-server' else tid)}"
                out[key] = out.get(key, 0.0) + spent / messages * 1e6
    return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def counters(port: int, token: str) -> dict[str, float]:
    """The numeric stats whose path names one of ``COUNTERS``, flattened (``transport.frames_in``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/v1/stats", headers={"Authorization": f"Bearer {token}"})
        stats = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    out: dict[str, float] = {}

    def walk(value: object, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}.{i}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and \
                any(c in path.rsplit(".", 1)[-1] for c in COUNTERS):
            out[path] = value

    walk(stats, "")
    return out


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc, ports, token, keys = start_run(args, Path(tmp))
        try:
            pids = descendants(proc.pid)
            roles = {pid: role(pid) for pid in pids}
            names = {pid: thread_names(args.py_spy, pid) for pid in pids
                     if args.py_spy and roles[pid] != "nats-server"}
            cmd = wrk_command(ports["customer API"], keys, Path(tmp), args.duration, args.connections,
                              args.threads)
            with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as wrk:
                time.sleep(args.duration / 4)  # the middle half of the run: no start-up, no tail
                stats0 = counters(ports["control port"], token)
                cpu0, t0 = {pid: thread_cpu(pid) for pid in pids}, time.monotonic()
                time.sleep(args.duration / 2)
                cpu1, t1 = {pid: thread_cpu(pid) for pid in pids}, time.monotonic()
                stats1 = counters(ports["control port"], token)
                out = wrk.communicate()[0]
        finally:
            stop_run(proc)
    result = wrk_result(out)
    rate = result["requests"] / result["seconds"]
    messages = rate * (t1 - t0)
    threads = per_message(cpu0, cpu1, roles, names, messages)
    return {"requests_per_s": round(rate), "non_2xx": result["non_2xx"], "p50_ms": result["p50_ms"],
            "cpu_s_per_1000": round(sum(threads.values()) / 1000, 4),
            "threads_us_per_message": threads,
            "per_1000_messages": {k: round((v - stats0.get(k, 0)) / messages * 1000, 1)
                                  for k, v in stats1.items() if v != stats0.get(k, 0)}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    http_load.add_accounts_argument(parser)
    parser.add_argument("--run-args", default="--workers 1", metavar="ARGS",
                        help="arguments for `smsroute run`, e.g. '--workers 1' (the default)")
    parser.add_argument("--py-spy", default="", metavar="PATH",
                        help="a py-spy binary: name the threads from one dump of each process")
    args = parser.parse_args(argv)
    args = http_load.resolve_accounts(args, http_load.run_workers(args.run_args))
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
