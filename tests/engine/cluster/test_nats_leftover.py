"""The NATS server a killed ``smsroute run`` left behind is stopped by the next start - but only that very
process: a pid the kernel gave to another process since, a file from another boot, or a file that does
not parse is left alone."""

from __future__ import annotations

import json
import subprocess
import sys

from engine.cluster import nats_leftover
from engine.cluster.nats_server import NatsServer


def _running(proc: subprocess.Popen) -> bool:
    return nats_leftover.process_identity(proc.pid) is not None


def test_the_server_a_pid_file_names_is_stopped_and_the_file_removed(tmp_path):
    server = NatsServer(log_dir=tmp_path).start()
    try:
        assert server.proc is not None
        pid_file = tmp_path / nats_leftover.PID_FILE
        nats_leftover.record(pid_file, server.proc.pid)
        assert pid_file.stat().st_mode & 0o777 == 0o600
        assert nats_leftover.stop_leftover(pid_file) == server.proc.pid
        assert server.proc.wait(5) is not None  # it exited (SIGTERM: its own graceful stop)
        assert not pid_file.exists()
        assert nats_leftover.stop_leftover(pid_file) is None  # nothing left to do
    finally:
        server.stop()


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_pid_now_used_by_another_process_or_from_another_boot_is_left_alone(tmp_path):
    other = _sleeper()  # holds the pid the file names, as a recycled pid would
    try:
        pid_file = tmp_path / nats_leftover.PID_FILE
        ticks, boot = nats_leftover.process_identity(other.pid)
        for doc in ({"pid": other.pid, "start_ticks": ticks - 1, "boot_id": boot},  # started later
                    {"pid": other.pid, "start_ticks": ticks, "boot_id": "another-boot"}):
            pid_file.write_text(json.dumps(doc))
            assert nats_leftover.stop_leftover(pid_file) is None
            assert _running(other)
            assert not pid_file.exists()
        nats_leftover.record(pid_file, other.pid)  # the very process: stopped (the control case)
        assert nats_leftover.stop_leftover(pid_file) == other.pid
        assert other.wait(5) is not None
    finally:
        other.kill()
        other.wait()


def test_an_unreadable_pid_file_is_ignored_and_removed(tmp_path):
    pid_file = tmp_path / nats_leftover.PID_FILE
    for text in ("not json", json.dumps({"pid": "x"}), json.dumps([1])):
        pid_file.write_text(text)
        assert nats_leftover.stop_leftover(pid_file) is None
        assert not pid_file.exists()
    pid_file.write_text(json.dumps({"pid": 1, "start_ticks": 0, "boot_id": ""}))  # never init
    assert nats_leftover.stop_leftover(pid_file) is None
