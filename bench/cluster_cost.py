"""What a cluster run costs: CPU and memory of every process of it, read from ``/proc``.

With ``smsroute bench --workers N`` the engine is this process (the core and the bench's ingress) plus N
worker processes and a nats-server; the cost of a message is the CPU all of them spent, so that a run with
two workers is compared with a run with one on the same footing. :func:`tree_cpu_seconds` does the same
for a ``smsroute run`` started as a child (``bench.http_load``): the process and all its descendants.
"""

from __future__ import annotations

import os
import time
from typing import Any


class ClusterCost:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def _pids(self) -> list[int]:
        pids = [w["pid"] for w in self.cluster.status() if w["pid"]]
        server = self.cluster.nats_server
        if server is not None and server.proc is not None:
            pids.append(server.proc.pid)
        return pids

    def cpu_seconds(self) -> float:
        """User + system CPU of this process and of every worker and NATS server so far."""
        return time.process_time() + sum(_cpu_and_parent(pid)[0] for pid in self._pids())

    def peak_rss_mb(self) -> float:
        """The sum of every process's peak resident set (VmHWM), in MB."""
        total = _hwm_mb("self")
        for pid in self._pids():
            total += _hwm_mb(pid)
        return total


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU so far of process ``root`` and of every living descendant of it (a process that
    has ended is not counted: call it while the processes measured are running)."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            seconds, parent = _cpu_and_parent(int(entry))
            cpu[int(entry)] = seconds
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def _cpu_and_parent(pid: int) -> tuple[float, int]:
    """(user + system CPU seconds, parent pid) of ``pid``; (0.0, 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[1])
    except (OSError, IndexError, ValueError):
        return 0.0, 0  # a process that ended (or a worker being restarted)


def _hwm_mb(pid: int | str) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0
