"""``smsroute run --workers 1 --edges 1`` killed with SIGKILL (a crash, the OOM killer): its worker and
edge stop by themselves (``engine.cluster.lifeline``), so the operator's next ``smsroute run`` on the same
data directory starts. Before, they ran on orphaned: the worker held its data directory's lock, so the
restart failed (``data_dir_in_use`` for the worker), and the edge kept answering on the customer port.

Its nats-server is stopped by that next start (``engine.cluster.nats_leftover``); before, it ran on,
unused, holding its port, and the README told the operator to end it by hand. A second ``smsroute run``
on a data directory whose cluster still runs is refused before it touches that cluster's server or token
(before, it started a server of its own and rewrote the token file the running cluster's restarted
workers and edges read).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.door import lag_never_sheds_config
from tests.engine.cli_support import Running, smsroute
from tests.engine.cluster.test_run_workers_functional import _alive, _children, _kill_left
from tests.engine.test_cli_startup_functional import assert_one_line_failure
from tests.waiting import wait_for

pytestmark = pytest.mark.functional


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _run(data: Path) -> Running:
    return Running("run", "--workers", "1", "--edges", "1", "--data-dir", str(data),
                   "--customer-port", "0", "--control-port", "0",
                   "--config", lag_never_sheds_config(data.parent))


def test_a_killed_cores_worker_and_edge_stop_and_the_restart_succeeds(tmp_path):
    data = tmp_path / "data"
    left: set[int] = set()
    try:
        with _run(data) as first:
            first.wait_for_line("smsroute running:", 90)
            left |= _children(first.proc.pid)
            ours = {p for p in left if "engine.cluster." in _cmdline(p)}
            assert len(ours) == 2, [_cmdline(p) for p in left]  # the worker and the edge
            (nats,) = [p for p in left if "nats-server" in _cmdline(p)]
            os.kill(first.proc.pid, signal.SIGKILL)
            first.proc.wait(10)
            wait_for(lambda: not any(_alive(p) for p in ours),
                     "the killed core's worker and edge gone", 20)
            assert _alive(nats)  # left running by the killed core
            # (the restart runs inside the first run's block: leaving it kills what is left of the
            # first run's process group, the leftover server included, which the restart must find)
            with _run(data) as second:
                second.wait_for_line("smsroute running:", 90)  # their locks were released
                left |= _children(second.proc.pid)
                assert not _alive(nats)  # the leftover server was stopped before the new one started
                (new,) = [p for p in _children(second.proc.pid) if "nats-server" in _cmdline(p)]
                assert new != nats and _alive(new)
                assert "stopping the NATS server an earlier smsroute run on this data directory " \
                       f"left running pid={nats}" in second.output
                assert second.stop() == 0
        assert not _alive(new) and not (data / "nats" / "nats-server.pid").exists()
    finally:
        _kill_left(left)  # the first run's nats-server (not watched), or whatever a failure left


def test_a_second_run_on_a_running_clusters_data_directory_leaves_its_nats_server_alone(tmp_path):
    data = tmp_path / "data"
    left: set[int] = set()
    try:
        with _run(data) as first:
            first.wait_for_line("smsroute running:", 90)
            left |= _children(first.proc.pid)
            (nats,) = [p for p in left if "nats-server" in _cmdline(p)]
            token = (data / "nats" / "client.token").read_bytes()
            second = smsroute("run", "--workers", "1", "--data-dir", str(data), "--customer-port", "0",
                              "--control-port", "0")
            line = assert_one_line_failure(second, "data_dir_in_use")
            assert str(data) in line and f"pid {first.proc.pid}" in line
            assert _alive(nats) and (data / "nats" / "client.token").read_bytes() == token
            assert first.stop() == 0
    finally:
        _kill_left(left)
