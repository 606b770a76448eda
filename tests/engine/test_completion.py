"""engine.completion.Completion behaves as a concurrent.futures.Future wherever the engine hands one out."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import CancelledError, InvalidStateError, wait
from concurrent.futures import TimeoutError as FutureTimeout

import pytest

from engine.completion import Completion


def test_a_result_set_on_another_thread_wakes_a_blocked_caller():
    c = Completion()
    started = threading.Event()

    def complete():
        started.wait(5)
        c.set_result(42)

    threading.Thread(target=complete).start()
    started.set()
    assert c.result(timeout=5) == 42
    assert c.done() and not c.cancelled()


def test_result_with_a_timeout_raises_timeout_when_nothing_completes_it():
    with pytest.raises(FutureTimeout):
        Completion().result(timeout=0.01)


def test_an_exception_is_raised_by_result_and_returned_by_exception():
    c = Completion()
    c.set_exception(ValueError("no"))
    assert isinstance(c.exception(), ValueError)
    with pytest.raises(ValueError, match="no"):
        c.result()


def test_every_callback_runs_exactly_once_whether_added_before_or_after_completion():
    c = Completion()
    calls: list[str] = []
    c.add_done_callback(lambda f: calls.append(f"before:{f.result()}"))
    c.set_result("x")
    c.add_done_callback(lambda f: calls.append(f"after:{f.result()}"))
    assert calls == ["before:x", "after:x"]


def test_callbacks_added_while_another_thread_completes_each_run_once():
    for _ in range(200):
        c = Completion()
        calls = []
        t = threading.Thread(target=c.set_result, args=(1,))
        t.start()
        for _ in range(5):
            c.add_done_callback(lambda f, calls=calls: calls.append(1))
        t.join()
        assert len(calls) == 5


def test_a_completion_is_completed_at_most_once():
    c = Completion()
    c.set_result(1)
    with pytest.raises(InvalidStateError):
        c.set_result(2)
    with pytest.raises(InvalidStateError):
        c.set_exception(ValueError())
    assert c.result() == 1


def test_a_cancelled_completion_refuses_a_result_and_raises_cancelled():
    c = Completion()
    assert c.cancel()
    with pytest.raises(InvalidStateError):
        c.set_result(1)
    with pytest.raises(CancelledError):
        c.result()
    done = Completion()
    done.set_result(1)
    assert not done.cancel()


def test_concurrent_futures_wait_sees_completions_finish():
    a, b = Completion(), Completion()
    threading.Timer(0.01, a.set_result, args=(1,)).start()
    done, not_done = wait([a, b], timeout=5, return_when="FIRST_COMPLETED")
    assert done == {a} and not_done == {b}


def test_asyncio_wrap_future_awaits_a_completion_set_from_another_thread():
    async def main():
        c = Completion()
        threading.Timer(0.01, c.set_result, args=("ok",)).start()
        return await asyncio.wrap_future(c)

    assert asyncio.run(main()) == "ok"
