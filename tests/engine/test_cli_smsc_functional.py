"""``smsroute run --smsc HOST:PORT`` as a real process against the simulated SMSC on loopback.

The command must bind every configured carrier to that SMSC (credentials from the flags or their
defaults), say where its data lives, and on SIGTERM unbind gracefully and exit 0, even when the
signal comes right after it says it is running. Waits poll with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.smsc import SmscConfig, SmscThread
from engine.config import load_settings

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 30.0  # an upper bound for a condition to become true, not an expected duration
CARRIERS = len(load_settings().carriers)


class Lines:
    """Reads a pipe on its own thread so the test can wait for a line with a deadline."""

    def __init__(self, pipe) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for line in pipe:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, prefix: str, timeout: float = DEADLINE) -> str:
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(line.startswith(prefix) for line in self.lines), timeout)
            assert found, f"no line starting {prefix!r} in {self.lines!r}"
            return next(line for line in self.lines if line.startswith(prefix))

    def text(self) -> str:
        self._thread.join(DEADLINE)
        return "".join(self.lines)


def wait_until(predicate: Callable[[], bool], what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + DEADLINE
    pause = threading.Event()
    while not predicate():
        assert proc.poll() is None, f"smsroute exited early with {proc.returncode}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.02)


def run_smsroute(data_dir: Path, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", "--no-http", "--data-dir", str(data_dir),
         "--smsc", f"127.0.0.1:{port}", *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(DEADLINE)


def test_run_with_smsc_binds_every_carrier_there_and_exits_0_on_sigterm(tmp_path):
    data_dir = tmp_path / "data"
    with SmscThread(SmscConfig(seed=5)) as smsc:
        proc = run_smsroute(data_dir, smsc.port)
        try:
            out, err = Lines(proc.stdout), Lines(proc.stderr)
            running = out.wait_for("smsroute running:")
            wait_until(lambda: smsc.smsc.counters["bind_transceiver"] >= CARRIERS
                       and smsc.smsc.bound_sessions >= CARRIERS, "a bind from every carrier", proc)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(DEADLINE) == 0, err.text()
        finally:
            stop(proc)
        stdout = out.text()
        assert f"data in {data_dir.resolve()}" in running
        assert f"carriers {CARRIERS}" in running
        assert "customer API" not in stdout  # --no-http: no HTTP servers
        assert stdout.rstrip().endswith("smsroute stopped")
        assert smsc.smsc.counters["bind_transceiver"] == CARRIERS  # bound once, never refused
        assert smsc.smsc.counters["unbind"] == CARRIERS  # SIGTERM unbinds gracefully
        assert smsc.smsc.parts == []  # nothing was sent: no messages were submitted
    assert (data_dir / "keys").is_dir() and (data_dir / "pops").is_dir()


def test_run_with_smsc_binds_with_the_system_id_and_password_given_by_the_flags(tmp_path):
    with SmscThread(SmscConfig(seed=5, system_id="acme-esme", password="s3cr3t")) as smsc:
        proc = run_smsroute(tmp_path / "data", smsc.port, "--smsc-system-id", "acme-esme",
                            "--smsc-password", "s3cr3t")
        try:
            out = Lines(proc.stdout)
            out.wait_for("smsroute running:")
            wait_until(lambda: smsc.smsc.bound_sessions >= CARRIERS, "every carrier bound", proc)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(DEADLINE) == 0
        finally:
            stop(proc)
        assert "s3cr3t" not in out.text()  # the password is never printed
        assert smsc.smsc.counters["unbind"] == CARRIERS


def test_run_keeps_running_when_the_smsc_refuses_its_binds_and_still_exits_0(tmp_path):
    with SmscThread(SmscConfig(seed=5, system_id="someone-else")) as smsc:
        proc = run_smsroute(tmp_path / "data", smsc.port)
        try:
            Lines(proc.stdout).wait_for("smsroute running:")
            wait_until(lambda: smsc.smsc.counters["bind_transceiver"] >= 2 * CARRIERS,
                       "every carrier to try binding again after a refusal", proc)
            assert smsc.smsc.bound_sessions == 0
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(DEADLINE) == 0
        finally:
            stop(proc)


def test_a_sigterm_right_after_the_running_line_still_stops_cleanly_with_exit_0(tmp_path):
    """Regression: the handlers used to be installed after that line, so SIGTERM could kill it."""
    with SmscThread(SmscConfig(seed=5)) as smsc:
        for attempt in range(3):
            proc = run_smsroute(tmp_path / f"data{attempt}", smsc.port)
            try:
                out = Lines(proc.stdout)
                out.wait_for("smsroute running:")
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(DEADLINE) == 0
            finally:
                stop(proc)
            assert out.text().rstrip().endswith("smsroute stopped")
