"""``bench.http_threads``: a thread's CPU per message, named from a py-spy dump."""

from __future__ import annotations

import os
import threading
import time

from bench.http_threads import parse_dump, per_message, thread_cpu

DUMP = """Process 4242: python -m engine.cli run --workers 1
Python v3.11.7 (/usr/bin/python3.11)

Thread 4242 (idle): "MainThread"
    wait (threading.py:320)
Thread 0x10A8 (active+gil): "smsroute-http"
    _run_once (asyncio/base_events.py:1898)
"""


def test_a_dump_names_threads_by_decimal_or_hex_id():
    assert parse_dump(DUMP) == {4242: "MainThread", 0x10A8: "smsroute-http"}


def test_cpu_per_message_is_each_threads_cpu_of_the_window_by_role_and_name():
    before = {1: {10: 1.0, 11: 5.0}, 2: {20: 0.5, 21: 0.5}}
    after = {1: {10: 1.5, 11: 5.0, 12: 0.1}, 2: {20: 0.6, 21: 0.7}}
    roles, names = {1: "core", 2: "nats-server"}, {1: {10: "smsroute-http"}}
    got = per_message(before, after, roles, names, messages=1000)
    # µs per message: 0.5 s / 1000, a thread born in the window counted whole, nats-server's threads added
    assert got == {"core:smsroute-http": 500.0, "nats-server:threads": 300.0, "core:12": 100.0}


def test_a_busy_thread_of_this_process_is_read_from_proc():
    done = threading.Event()
    tid: list[int] = []

    def burn() -> None:
        tid.append(threading.get_native_id())
        start = time.thread_time()
        while time.thread_time() - start < 0.2:
            pass
        done.wait(10)

    worker = threading.Thread(target=burn)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and thread_cpu(os.getpid()).get(tid[0] if tid else -1, 0) < 0.19:
            time.sleep(0.02)
        assert thread_cpu(os.getpid())[tid[0]] >= 0.19  # (counted in clock ticks)
    finally:
        done.set()
        worker.join()
