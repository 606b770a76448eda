"""``LocalCluster`` waits for each worker's ready line only until its deadline."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from engine.cluster.local import LocalCluster
from engine.errors import ConfigError

# a worker that hangs silently while it starts (or says something else first and then hangs)
SILENT = "import time; time.sleep(120)"
CHATTY = "import sys, time; print('loading', flush=True); time.sleep(120)"


@pytest.mark.parametrize("script", [SILENT, CHATTY], ids=["silent", "chatty"])
def test_a_worker_that_hangs_while_starting_fails_the_start_at_the_deadline_and_is_killed(
        tmp_path, monkeypatch, script):
    """The wait blocked on ``readline()``: a worker that never printed its ready line (nor exited) kept
    ``smsroute run --workers N`` waiting for ever, the 60 s time-out never checked. It now fails at the
    deadline with an error naming the worker, and the stuck process is killed, not left behind."""
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
            cluster.start_workers(timeout=0.5)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            outcome.append(exc)

    began = time.monotonic()
    t = threading.Thread(target=start, daemon=True)
    t.start()
    try:
        t.join(10)
        assert not t.is_alive(), "start_workers still waits on a worker that never said ready"
        assert time.monotonic() - began < 5
        assert len(outcome) == 1 and isinstance(outcome[0], ConfigError), outcome
        assert "w0" in str(outcome[0]) and "0.5 s" in str(outcome[0])
        assert procs[0].wait(5) is not None  # killed, not left running
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
