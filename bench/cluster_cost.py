"""What a cluster run costs: CPU and memory of every process of it, read from ``/proc``.

With ``smsroute bench --workers N`` the engine is this process (the core and the bench's ingress) plus N
worker processes and a nats-server; the cost of a message is the CPU all of them spent, so that a run with
two workers is compared with a run with one on the same footing.
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
        total = time.process_time()
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self._pids():
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                pass  # a worker that is being restarted
        return total

    def peak_rss_mb(self) -> float:
        """The sum of every process's peak resident set (VmHWM), in MB."""
        total = _hwm_mb("self")
        for pid in self._pids():
            total += _hwm_mb(pid)
        return total


def _hwm_mb(pid: int | str) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0
