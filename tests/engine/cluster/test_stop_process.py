"""``stop_process``, the tests' hung worker: when it returns, no thread of the process runs any more.

A bare ``os.kill(pid, SIGSTOP)`` returns once the signal is queued, and the process's other threads run
on until the one the kernel woke has stopped the group: on a loaded host a question sent right after
was answered by a "stopped" worker (``test_views_hung_worker_functional`` and
``test_holds_audit_hung_worker_functional`` failed about 1 run in 8-10 that way). A child shaped like a
worker (a busy thread, an event loop, idle threads) is stopped and continued repeatedly; after each
stop every thread must already be stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.engine.cluster.support import _thread_states, stop_process

CHILD = """
import asyncio, threading
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()  # always running
threading.Thread(target=asyncio.new_event_loop().run_forever, daemon=True).start()
for _ in range(3):
    threading.Thread(target=threading.Event().wait, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def test_every_thread_is_stopped_when_it_returns():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        for _ in range(20):
            stop_process(child.pid)
            states = _thread_states(child.pid)
            assert len(states) >= 6 and set(states) == {"T"}, states
            os.kill(child.pid, signal.SIGCONT)
    finally:
        child.kill()
        child.wait(5)
