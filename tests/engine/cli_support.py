"""Running the real ``smsroute`` entry point in a subprocess, as an operator would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.waiting import wait_for

SMSROUTE = str(Path(sys.executable).with_name("smsroute"))  # the console script of this environment


def smsroute(*args: str, cwd: Path | None = None, timeout: float = 60.0,
             prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``smsroute ARGS`` to completion (``prefix``: a command that wraps it, e.g. setpriv)."""
    return subprocess.run([*prefix, SMSROUTE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


class Running:
    """A long-running ``smsroute`` sub-command; its output is collected by a reader thread.

    It runs in a process group of its own with everything it starts (workers, edges, nats-server,
    restarted ones included), so leaving the ``with`` block kills whatever of that group is left - also
    a process the supervisor restarted, which a list of children taken at start-up misses."""

    def __init__(self, *args: str, cwd: Path | None = None, env: dict | None = None) -> None:
        self.proc = subprocess.Popen([SMSROUTE, *args], cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, starts_with: str, timeout: float = 30.0) -> str:
        def found() -> str | None:
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"smsroute exited ({self.proc.returncode}):\n{self.output}")
            return next((x for x in self.lines if x.startswith(starts_with)), None)

        return wait_for(found, f"a line starting {starts_with!r}", timeout)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, as an operator's service manager would, and wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._reader.join(5)
        return code

    def __enter__(self) -> Running:
        return self

    def leftovers(self) -> set[int]:
        """The processes of this run's group still alive (zombies not counted): after a stop, none."""
        return group_members(self.proc.pid)

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.leftovers():  # what the supervisor could not stop: not left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def group_members(session: int) -> set[int]:
    """Live processes of the session (and process group) ``session`` leads or led, from ``/proc``: the
    leader's exit does not end its group, whose members keep its id until they end."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp, sid = fields[0], int(fields[2]), int(fields[3])
        if sid == session and pgrp == session and state != "Z":
            out.add(int(entry))
    return out
