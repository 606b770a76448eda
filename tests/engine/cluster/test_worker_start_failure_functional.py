"""``smsroute run --workers N`` names a worker's own start-up failure, not just its exit status.

Before, every failure read ``smsroute: invalid_config: worker w0 exited with 2 before it was ready``,
whatever the worker's own line (lost among the cluster's output) said: an operator whose worker data
directory was in use was sent to look for a config error.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from engine.cluster.local import LocalCluster
from engine.cluster.start_failure import failure_line
from engine.errors import DataDirInUse, StartupError
from tests.engine.cli_support import smsroute

pytestmark = pytest.mark.functional

HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
time.sleep(120)
"""


def test_a_worker_whose_data_directory_is_in_use_is_reported_as_that(tmp_path):
    own = tmp_path / "data" / "workers" / "w0"
    own.mkdir(parents=True, mode=0o700)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(own / "smsroute.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = smsroute("run", "--workers", "1", "--no-http", "--data-dir", str(tmp_path / "data"),
                          timeout=90)
    finally:
        holder.kill()
        holder.wait(5)
    assert result.returncode == 2, result
    ours = [line for line in result.stderr.splitlines() if line.startswith("smsroute: ")]
    assert len(ours) == 1 and ours[0].startswith("smsroute: data_dir_in_use: worker w0: data directory "), \
        result.stderr
    assert str(own) in ours[0] and "exited with" not in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def _start_with(tmp_path, monkeypatch, script: str) -> BaseException:
    """``start_workers`` against a stand-in worker running ``script``: the error it raised."""
    cluster = LocalCluster(tmp_path, 1)
    procs: list[subprocess.Popen] = []

    def spawn(w):
        w.proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, text=True)
        w.started_at = time.monotonic()
        procs.append(w.proc)

    monkeypatch.setattr(cluster, "_spawn", spawn)
    outcome: list[BaseException] = []

    def start() -> None:
        try:
            cluster.start_workers(timeout=20)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            outcome.append(exc)

    t = threading.Thread(target=start, daemon=True)
    t.start()
    t.join(30)
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert len(outcome) == 1, outcome
    return outcome[0]


@pytest.mark.parametrize(("code", "kind"), [("data_dir_in_use", DataDirInUse), ("os_error", None),
                                            ("store_full", None)])
def test_the_supervisor_raises_the_error_the_worker_said_with_its_code(tmp_path, monkeypatch, code, kind):
    line = failure_line("worker", "w0", code, "what the worker said")
    error = _start_with(tmp_path, monkeypatch, f"import sys; print({line!r}); sys.exit(2)")
    assert (error.code, error.message) == (code, "worker w0: what the worker said")
    assert kind is None or isinstance(error, kind)


def test_a_worker_that_exits_without_saying_why_is_not_called_a_config_error(tmp_path, monkeypatch):
    error = _start_with(tmp_path, monkeypatch, "import sys; print('loading'); sys.exit(1)")
    assert isinstance(error, StartupError) and error.code == "cannot_start"
    assert "worker w0 exited with 1 before it was ready" in error.message
