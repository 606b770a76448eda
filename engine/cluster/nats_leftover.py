"""The nats-server a killed ``smsroute run --workers N`` left running is stopped by the next start.

The core starts its own loopback nats-server and stops it on SIGTERM. Killed with SIGKILL (or by the OOM
killer) it cannot: its workers and edges stop by themselves (``engine.cluster.lifeline``), but the server
ran on, unused, holding its port and the token of a run that was gone, and the README told the operator
to find and end it by hand.

So the core records the server it started in ``<data>/nats/nats-server.pid``: its pid, the process's
start time (clock ticks after boot, field 22 of ``/proc/<pid>/stat``) and the boot's id
(``/proc/sys/kernel/random/boot_id``). The next start on the data directory, once it holds the NATS
directory's lock (``storage.datadir.NatsDirLock``: no other ``smsroute run`` uses that server), stops the
process the file names - SIGTERM, then SIGKILL after 5 s - but only if it is still that very process:
the same pid with the same start time in the same boot. A pid the kernel has given to another process
since (another start time), a file from before a reboot, a process that is gone or a file that does not
parse is left alone (the file is then removed). Without ``/proc`` (not Linux) nothing is stopped.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

PID_FILE = "nats-server.pid"
STOP_WAIT_S = 5.0


def process_identity(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks after boot, boot id) of a running process; None if it is gone, a
    zombie, or there is no ``/proc`` to ask."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # the name, in (), may hold spaces
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19]), boot  # field 22 of stat; fields[0] is field 3


def record(path: Path, pid: int) -> None:
    """Write the pid file of the server just started (``pid``: our child, so not yet recycled)."""
    identity = process_identity(pid)
    if identity is None:
        return  # nothing that could identify it later: better no file than one naming a stranger
    text = json.dumps({"pid": pid, "start_ticks": identity[0], "boot_id": identity[1]})
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)


def forget(path: Path) -> None:
    """The server was stopped: no pid file left to act on."""
    path.unlink(missing_ok=True)


def stop_leftover(path: Path) -> int | None:
    """Stop the server ``path`` names if that process still runs (see the module docstring); remove the
    file. Returns the pid stopped, or None. Call only while holding the NATS directory's lock."""
    try:
        doc = json.loads(path.read_text(encoding="ascii"))
        pid, identity = int(doc["pid"]), (int(doc["start_ticks"]), str(doc["boot_id"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("ignored an unreadable NATS server pid file", extra={"path": str(path)})
        forget(path)
        return None
    if pid <= 1 or process_identity(pid) != identity:
        forget(path)  # gone, or its pid is another process's now
        return None
    log.warning("stopping the NATS server an earlier smsroute run on this data directory left running",
                extra={"pid": pid})
    _stop(pid, identity)
    forget(path)
    return pid


def _stop(pid: int, identity: tuple[int, str]) -> None:
    """SIGTERM, SIGKILL after ``STOP_WAIT_S``; every signal only after checking it is still the same
    process (it is not our child: its pid is freed as soon as init reaps it)."""
    for sig, wait in ((signal.SIGTERM, STOP_WAIT_S), (signal.SIGKILL, STOP_WAIT_S)):
        if process_identity(pid) != identity:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:  # another user's process: not ours to stop
            log.error("cannot stop the leftover NATS server: not permitted", extra={"pid": pid})
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if process_identity(pid) != identity:
                return
            time.sleep(0.02)
    log.error("the leftover NATS server did not stop", extra={"pid": pid})
