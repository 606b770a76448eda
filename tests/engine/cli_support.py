"""Running the real ``smsroute`` entry point in a subprocess, as an operator would."""

from __future__ import annotations

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
    """A long-running ``smsroute`` sub-command; its output is collected by a reader thread."""

    def __init__(self, *args: str, cwd: Path | None = None, env: dict | None = None) -> None:
        self.proc = subprocess.Popen([SMSROUTE, *args], cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})})
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

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
