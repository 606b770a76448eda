"""Where actor messages meet host threads and asyncio: replies, status callbacks and the in-flight gate.

Actors answer the host by sending msgpack messages to the :class:`Bridge` exactly as they would to another
actor (``bridge.tell(raw)``). The bridge resolves the ``concurrent.futures.Future`` the host is waiting on, or
(through ``asyncio.wrap_future``) an asyncio future via ``loop.call_soon_threadsafe`` — an event loop never
blocks on a pykka future.

The :class:`InFlightGate` is the one shared bound on work in the engine: every submit takes a slot before it
enters the actors, and the slot is given back when the message is rejected or reaches a final status. When the
gate is full, ``submit`` fails fast with ``OverloadedError`` instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from engine import messages as m
from engine.completion import Completion
from engine.errors import MalformedMessage, error_from_code
from engine.status import FINAL

log = logging.getLogger(__name__)


class InFlightGate:
    """A counting bound on messages accepted but not yet final (thread-safe, non-blocking)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    def try_acquire(self, n: int = 1) -> bool:
        with self._lock:
            if self._used + n > self.limit:
                return False
            self._used += n
            return True

    def force_acquire(self, n: int) -> None:
        """Take slots regardless of the limit (messages resumed after a restart are already accepted)."""
        with self._lock:
            self._used += n

    def release(self, n: int = 1) -> None:
        with self._lock:
            self._used = max(0, self._used - n)

    @property
    def in_flight(self) -> int:
        return self._used


class Bridge:
    """The host's mailbox: resolves pending requests and fans status changes out to callbacks."""

    def __init__(self, gate: InFlightGate) -> None:
        self.gate = gate
        # request id -> (future, convert, holds_slot). Plain dict operations, each atomic in CPython
        # (set, pop): a request is resolved by whoever pops it first, exactly once, without a lock.
        self._pending: dict[int, tuple[Future, Callable[[Any], Any], bool]] = {}
        self._ids = itertools.count(1)
        # request id -> the worker its submit was sent to (a cluster's remote hand-off): when that worker
        # is known gone, its requests fail at once (fail_sent_to) instead of after their time-out
        self._sent_to: dict[int, str] = {}
        self._status_callbacks: list[Callable[[m.StatusItem], None]] = []
        self._ack_callbacks: list[Callable[[str, float], None]] = []
        self._webhook_sinks: list[Callable[[str, list[int], list[m.StatusItem]], None]] = []
        self._low_balance_callbacks: list[Callable[[m.BalanceLow], None]] = []

    # --- requests ------------------------------------------------------------------------------------

    def new_request(self, convert: Callable[[Any], Any] = lambda reply: reply, *,
                    holds_slot: bool = False) -> tuple[int, Future]:
        """Register a pending request; ``convert`` turns the success reply into the future's result.

        ``holds_slot``: the request took an in-flight slot, given back if the request is rejected.
        """
        fut = Completion()
        request_id = next(self._ids)
        self._pending[request_id] = (fut, convert, holds_slot)
        return request_id, fut

    def expire(self, request_ids: list[int], exc: BaseException) -> int:
        """Fail the requests still pending among ``request_ids`` with ``exc`` (and give their slots
        back); returns how many. For a cluster, where a worker may die with a submit unanswered."""
        n = 0
        for rid in request_ids:
            if rid in self._pending:
                self.fail(rid, exc)
                n += 1
        return n

    def pending_ids(self) -> list[int]:
        return list(self._pending)

    def sent_to(self, request_ids: list[int], node: str) -> None:
        """Note that ``request_ids`` are being sent to worker ``node`` (before they are: an answer that
        comes at once must find the note, which it removes)."""
        for rid in request_ids:
            self._sent_to[rid] = node

    def fail_sent_to(self, node: str, exc: BaseException) -> int:
        """Fail every pending request sent to worker ``node`` with ``exc`` (its slot given back);
        returns how many. A scan of the requests sent to any worker: called when one is judged gone, not
        per message."""
        return self.expire([rid for rid, to in self._sent_to.copy().items() if to == node], exc)

    def fail(self, request_id: int, exc: BaseException) -> None:
        self._sent_to.pop(request_id, None)
        entry = self._pending.pop(request_id, None)
        if entry:
            if entry[2]:
                self.gate.release()
            _settle(entry[0], None, exc)

    def pending_requests(self) -> int:
        return len(self._pending)

    # --- subscriptions -------------------------------------------------------------------------------

    def on_status(self, callback: Callable[[m.StatusItem], None]) -> None:
        self._status_callbacks.append(callback)

    def on_carrier_ack(self, callback: Callable[[str, float], None]) -> None:
        self._ack_callbacks.append(callback)

    def on_webhook_events(self, sink: Callable[[str, list[int], list[m.StatusItem]], None]) -> None:
        """``sink(pop, seqs, items)`` for every batch of events a POP stored in its webhook outbox."""
        self._webhook_sinks.append(sink)

    def on_low_balance(self, callback: Callable[[m.BalanceLow], None]) -> None:
        self._low_balance_callbacks.append(callback)

    def carrier_acked(self, message_id: str, at: float) -> None:
        for cb in self._ack_callbacks:
            _safely(cb, message_id, at)

    # --- the actor-facing side ----------------------------------------------------------------------

    def tell(self, raw: bytes) -> None:
        """Receive a message from an actor (any thread)."""
        try:
            msg = m.decode(raw)
        except MalformedMessage:
            log.error("bridge: dropped a malformed reply")
            return
        self.receive(msg)

    def receive(self, msg: m.Message) -> None:
        """A message already decoded (and so validated): from :meth:`tell`, or from the cluster transport,
        which decodes every frame on entry and need not have it decoded twice."""
        match msg:
            case m.SubmitsAccepted(items=items):
                for item in items:
                    self._resolve(item.request_id, item, None)
            case m.CreditApplied():
                self._resolve(msg.request_id, msg, None)
            case m.SubmitRejected(request_id=rid, code=code, reason=reason):
                self._resolve(rid, None, error_from_code(code, reason))
            case m.StatusesChanged(items=items):
                self.statuses_changed(items)
            case m.CarriersAcked(items=items):
                for item in items:
                    self.carrier_acked(item.message_id, item.at)
            case m.MessagesResumed(count=count):
                self.gate.force_acquire(count)
            case m.WebhookEventsStored(pop=pop, seqs=seqs, items=items):
                for sink in self._webhook_sinks:
                    _safely(sink, pop, seqs, items)
            case m.BalanceLow():
                for cb in self._low_balance_callbacks:
                    _safely(cb, msg)
            case _:
                log.error("bridge: unexpected %s", type(msg).__name__)

    def statuses_changed(self, items: list[m.StatusItem]) -> None:
        finals = sum(1 for i in items if i.status in FINAL)
        if finals:
            self.gate.release(finals)
        for cb in self._status_callbacks:
            for item in items:
                _safely(cb, item)

    def _resolve(self, request_id: int, reply: Any, exc: BaseException | None) -> None:
        self._sent_to.pop(request_id, None)
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return  # the caller gave up (timeout); nothing to do
        fut, convert, holds_slot = entry
        if exc is not None:
            if holds_slot:
                self.gate.release()
            _settle(fut, None, exc)
            return
        try:
            result = convert(reply)
        except Exception as err:  # a conversion bug must reach the caller, not vanish
            _settle(fut, None, err)
            return
        _settle(fut, result, None)


def _settle(fut: Future, result: Any, exc: BaseException | None) -> None:
    """Complete a host's future; one the host already cancelled is left alone (never raise into the
    actor thread that is answering: an exception there would stop the actor)."""
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    except InvalidStateError:
        pass


def _safely(cb: Callable[..., Any], *args: Any) -> None:
    try:
        cb(*args)
    except Exception:
        log.exception("a host callback raised; continuing")


async def wait_all(futures: list[Future]) -> list[Future]:
    """Wait on the running event loop until every future is done, and return them.

    One thread-safe wake-up of the loop for the whole list (``asyncio.wrap_future`` costs one per
    future, plus two chained futures each): the last future to finish, on whatever engine thread
    resolves it, schedules the wake-up. The loop never blocks.
    """
    pending = [f for f in futures if not f.done()]
    if not pending:
        return futures
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    remaining = [len(pending)]
    lock = threading.Lock()

    def one_done(_: Future) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # the loop is closed (shutdown): nobody waits any more
                pass

    for fut in pending:
        fut.add_done_callback(one_done)
    await waiter
    return futures


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():  # the waiting request may have been cancelled (client gone)
        waiter.set_result(None)
