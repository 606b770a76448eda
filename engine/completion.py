"""A ``concurrent.futures.Future`` that costs no lock or condition until somebody waits on it.

Why: every submit returns a future, and ``concurrent.futures.Future.__init__`` builds a
``threading.Condition`` (an ``RLock`` and a ``Condition`` object) that every method takes; profiled, that
was ~9 % of the engine's CPU at saturation. Most submit futures are never waited on with a timeout: a
callback is attached (the HTTP layer, the bench) and the future completes once. :class:`Completion` keeps
the ``Future`` interface (``result``, ``exception``, ``add_done_callback``, ``cancel``, ``done``...;
``asyncio.wrap_future`` and ``concurrent.futures.wait`` work with it) but guards its few state changes with
one module-wide lock held for a handful of bytecodes, and builds a ``Condition`` only for a caller that
really blocks in ``result``/``exception``.

Guarantees, as ``Future``'s: a completion is completed at most once (a second ``set_*`` raises
``InvalidStateError``); every callback runs exactly once, after completion, on the completing thread (or
at once on the adding thread if already done); a blocked ``result()`` wakes when it completes.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError, Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING
from typing import Any

_lock = threading.Lock()  # state changes of every Completion (held only for a few bytecodes)
_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


class Completion(Future):
    """See the module docstring. Construct with no arguments; complete with ``set_result`` or
    ``set_exception`` (typically from the engine's dispatcher thread)."""

    def __init__(self) -> None:  # deliberately not Future.__init__: no Condition yet
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._done_callbacks: list = []
        self._waiters: list = []
        self._cond: threading.Condition | None = None

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        """Created for the first caller that blocks (or for ``concurrent.futures.wait``)."""
        with _lock:
            if self._cond is None:
                self._cond = threading.Condition()
            return self._cond

    # --- completing ---------------------------------------------------------------------------------

    def set_result(self, result: Any) -> None:
        self._complete(FINISHED, result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._complete(FINISHED, None, exception)

    def cancel(self) -> bool:
        with _lock:
            if self._state in (RUNNING, FINISHED):
                return False
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
        try:
            self._complete(CANCELLED, None, None)
        except InvalidStateError:  # completed meanwhile
            return self.cancelled()
        return True

    def set_running_or_notify_cancel(self) -> bool:
        with _lock:
            if self._state == CANCELLED:
                self._state = CANCELLED_AND_NOTIFIED
                waiters = list(self._waiters)
            elif self._state == PENDING:
                self._state = RUNNING
                return True
            else:
                raise RuntimeError(f"Future in unexpected state {self._state}")
        for waiter in waiters:
            waiter.add_cancelled(self)
        return False

    def _complete(self, state: str, result: Any, exception: BaseException | None) -> None:
        with _lock:
            if self._state in _DONE:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result, self._exception, self._state = result, exception, state
            callbacks, self._done_callbacks = self._done_callbacks, []
            cond, waiters = self._cond, self._waiters
            if waiters:  # (a copy only when concurrent.futures.wait put any there: most have none)
                waiters = list(waiters)
        if cond is not None:
            with cond:
                cond.notify_all()
        for waiter in waiters:
            if state == CANCELLED:
                waiter.add_cancelled(self)
            elif exception is not None:
                waiter.add_exception(self)
            else:
                waiter.add_result(self)
        for fn in callbacks:
            self._call(fn)

    def _call(self, fn: Any) -> None:
        try:
            fn(self)
        except Exception:
            from concurrent.futures._base import LOGGER

            LOGGER.exception("exception calling callback for %r", self)

    # --- observing ----------------------------------------------------------------------------------

    def add_done_callback(self, fn: Any) -> None:
        with _lock:
            if self._state not in _DONE:
                self._done_callbacks.append(fn)
                return
        self._call(fn)

    def done(self) -> bool:
        return self._state in _DONE

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self) -> bool:
        return self._state == RUNNING

    def result(self, timeout: float | None = None) -> Any:
        self._wait(timeout)
        if self._state != FINISHED:
            raise CancelledError()
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        if self._state != FINISHED:
            raise CancelledError()
        return self._exception

    def _wait(self, timeout: float | None) -> None:
        if self._state in _DONE:
            return
        cond = self._condition
        deadline = None if timeout is None else time.monotonic() + timeout
        with cond:
            while self._state not in _DONE:  # re-checked under the condition: no lost wake-up
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise FutureTimeout()
                cond.wait(remaining)

    def __repr__(self) -> str:
        return f"<Completion state={self._state}>"
