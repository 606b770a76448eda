"""A worker or HTTP edge that ``smsroute run`` started stops by itself once that process is gone.

The core supervises its workers and edges and stops them on SIGTERM; but a core that is killed (``kill -9``,
the OOM killer, a crash) cannot. Its children used to run on, orphaned: each still held the lock of its
data directory, so the operator's restart was refused (``data_dir_in_use`` naming a worker's pid, under a
misleading ``invalid_config: worker w0 exited with 2``), the orphaned workers kept their SMPP binds, and an
orphaned edge kept a share of the customer port's connections (``SO_REUSEPORT``), answering each 503 for a
core that no longer existed.

``smsroute run`` passes its pid (``--parent-pid``); :func:`stop_when_parent_exits` polls the process's
parent and, once it is another (the child was re-parented: its starter died), sends the process its own
SIGTERM - the same graceful stop as the core's (its ``sigwait`` takes it): the last group commits are
written and the lock released, so the next ``smsroute run`` starts at once. A worker started by hand
(``smsroute run --role worker``) has no ``--parent-pid`` and is not watched.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


def stop_when_parent_exits(parent_pid: int, node: str, poll_seconds: float = POLL_SECONDS
                           ) -> threading.Thread:
    """Watch, on a daemon thread, that this process's parent is still ``parent_pid``; once it is not,
    log it and SIGTERM this process (once). Returns the thread."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        log.warning("%s: the smsroute process that started it (pid %d) is gone; stopping", node,
                    parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, daemon=True, name=f"smsroute-{node}-lifeline")
    thread.start()
    return thread
