"""``smsroute run --workers 1 --edges 1`` killed with SIGKILL (a crash, the OOM killer): its worker and
edge stop by themselves (``engine.cluster.lifeline``), so the operator's next ``smsroute run`` on the same
data directory starts. Before, they ran on orphaned: the worker held its data directory's lock, so the
restart failed (``data_dir_in_use`` for the worker), and the edge kept answering on the customer port.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.engine.cli_support import Running
from tests.engine.cluster.test_run_workers_functional import _alive, _children, _kill_left
from tests.waiting import wait_for

pytestmark = pytest.mark.functional


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _run(data: Path) -> Running:
    return Running("run", "--workers", "1", "--edges", "1", "--data-dir", str(data),
                   "--customer-port", "0", "--control-port", "0")


def test_a_killed_cores_worker_and_edge_stop_and_the_restart_succeeds(tmp_path):
    data = tmp_path / "data"
    left: set[int] = set()
    try:
        with _run(data) as first:
            first.wait_for_line("smsroute running:", 90)
            left |= _children(first.proc.pid)
            ours = {p for p in left if "engine.cluster." in _cmdline(p)}
            assert len(ours) == 2, [_cmdline(p) for p in left]  # the worker and the edge
            os.kill(first.proc.pid, signal.SIGKILL)
            first.proc.wait(10)
            wait_for(lambda: not any(_alive(p) for p in ours),
                     "the killed core's worker and edge gone", 20)
        with _run(data) as second:
            second.wait_for_line("smsroute running:", 90)  # their locks were released
            left |= _children(second.proc.pid)
            assert second.stop() == 0
    finally:
        _kill_left(left)  # the first run's nats-server (not watched), or whatever a failure left
