"""One thread that runs many pykka actors: the engine's actor runtime.

pykka's :class:`pykka.Actor` is abstract over how an actor runs (its inbox, its futures and its loop);
:class:`pykka.ThreadingActor` gives every actor a thread of its own. In CPython only one thread runs Python
at a time, so an engine of dozens of busy threads spends much of its time handing the interpreter lock from
thread to thread (measured: ~22 µs of ~97 µs per message). :class:`DispatchedActor` keeps everything pykka
promises — ``start``, ``ActorRef.tell``/``ask``/``stop``, proxies, ``ActorRegistry``, the ``on_start`` /
``on_receive`` / ``on_stop`` / ``on_failure`` hooks — but runs the actors of a :class:`Dispatcher` one after
the other on the dispatcher's one thread. A message from one actor to another is then an append to a deque,
and a batch moves through the whole pipeline without a thread switch.

Guarantees (as for ``ThreadingActor``):

* an actor handles one message at a time, in the order its inbox received them, and ``on_start`` runs
  (on the dispatcher thread) before its first message;
* an exception from a ``tell``-ed message stops that actor (``on_failure``), never the dispatcher or the
  other actors; an exception from an ``ask`` goes back to the asker;
* after ``stop`` the actor's ``on_stop`` runs, later ``ask``s fail with ``ActorDeadError`` and later
  ``tell``s are dropped.

Not guaranteed, and different from ``ThreadingActor``: handlers run on a thread shared with the other
actors of the dispatcher, so a handler that blocks (a synchronous ``ask(...).get()`` to an actor of the same
dispatcher, a long sleep) stalls them all. Waiting on a future of this dispatcher from its own thread would
never finish; it raises :class:`DispatcherDeadlock` instead. Actors of one dispatcher therefore talk by
``tell`` only (which they must anyway: the same messages cross processes). Fairness: an actor handles at
most ``turn`` messages before the next ready actor runs.

Profiling: with :meth:`Dispatcher.profile` on, the CPU time of every message is added up per (actor
``stage``, message tag), which ``smsroute bench --profile-stages`` turns into µs per message by stage.
Time spent in the cyclic garbage collector is not charged to the handler it interrupted but counted
apart (:func:`gc_seconds`), per thread and in total.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections import defaultdict, deque
from typing import Any, ClassVar

import pykka
from pykka import ActorDeadError, ActorRegistry
from pykka import messages as pykka_messages
from pykka._envelope import Envelope
from pykka._threading import ThreadingFuture

log = logging.getLogger(__name__)

DEFAULT_TURN = 512  # messages an actor may handle before the next ready actor runs


class DispatcherDeadlock(RuntimeError):
    """A handler waited on a future that only its own (blocked) dispatcher thread could complete."""


class Dispatcher:
    """A thread and a run queue of actors that have messages waiting.

    ``wake`` (any thread) puts an actor on the run queue once, however many messages arrive for it before
    it runs; the thread sleeps on a condition only when no actor is ready.
    """

    def __init__(self, name: str = "smsroute-actors", turn: int = DEFAULT_TURN) -> None:
        self.name = name
        self.turn = turn
        self._ready: deque[DispatchedActor] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._idle = False
        self._closed = False
        self._profile: dict[tuple[str, int], list[float]] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- the run queue ------------------------------------------------------------------------------

    def wake(self, actor: DispatchedActor) -> None:
        with self._cond:
            if actor._scheduled:
                return
            actor._scheduled = True
            self._ready.append(actor)
            if self._idle:
                self._cond.notify()

    def on_dispatcher_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread once every actor on it has stopped (or after ``timeout``)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if not self.on_dispatcher_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        _this_thread.dispatcher = self
        cond, ready = self._cond, self._ready
        while True:
            with cond:
                while not ready:
                    if self._closed:
                        return
                    self._idle = True
                    cond.wait()
                    self._idle = False
                actor = ready.popleft()
                actor._scheduled = False
            try:
                more = actor._run_turn(self.turn)
            except BaseException:  # a bug in the runtime itself: never lose the thread silently
                log.exception("dispatcher %s: actor %s failed outside a handler", self.name, actor)
                more = False
            if more:
                self.wake(actor)

    # --- profiling ----------------------------------------------------------------------------------

    def profile(self, on: bool = True) -> None:
        """Start (and reset) or stop adding up CPU time per (stage, message tag)."""
        self._profile = defaultdict(lambda: [0.0, 0]) if on else None
        count_gc_time(on)

    def profile_snapshot(self) -> dict[tuple[str, int], tuple[float, int]]:
        """CPU seconds and message count per (stage, tag) since ``profile(True)``."""
        prof = self._profile or {}
        return {key: (v[0], v[1]) for key, v in list(prof.items())}


class _Inbox:
    """A DispatchedActor's inbox: a deque, plus a wake-up of its dispatcher on every put."""

    __slots__ = ("_items", "_actor")

    def __init__(self) -> None:
        self._items: deque[Envelope[Any]] = deque()
        self._actor: DispatchedActor | None = None

    def put(self, envelope: Envelope[Any], /) -> None:
        self._items.append(envelope)
        actor = self._actor
        if actor is not None and not actor._scheduled:
            actor._dispatcher.wake(actor)

    def get(self) -> Envelope[Any]:
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items


class DispatchedFuture(ThreadingFuture):
    """A pykka future that refuses to block a dispatcher thread (which may be the one to complete it)."""

    def get(self, *, timeout: float | None = None) -> Any:
        if self._result is None and getattr(_this_thread, "dispatcher", None) is not None:
            raise DispatcherDeadlock(
                "an actor waited on a reply on a dispatcher thread; use tell, not ask().get()")
        return super().get(timeout=timeout)


class DispatchedActor(pykka.Actor):
    """A pykka actor run by a :class:`Dispatcher` (see the module docstring).

    Actors run on the class attribute ``dispatcher`` if a subclass sets one, else on the process-wide
    :func:`default_dispatcher`; ``stage`` names the actor's work in stage profiles.
    """

    dispatcher: ClassVar[Dispatcher | None] = None
    stage: ClassVar[str] = "actor"

    @staticmethod
    def _create_actor_inbox() -> _Inbox:
        return _Inbox()

    @staticmethod
    def _create_future() -> DispatchedFuture:
        return DispatchedFuture()

    def _start_actor_loop(self) -> None:
        d = type(self).dispatcher or default_dispatcher()
        self._dispatcher = d
        self._scheduled = False
        self._started = False
        inbox: _Inbox = self.actor_inbox  # type: ignore[assignment]
        inbox._actor = self
        d.wake(self)

    # --- run by the dispatcher thread ---------------------------------------------------------------

    def _run_turn(self, limit: int) -> bool:
        """Handle up to ``limit`` messages; True if more are waiting."""
        if not self._started:
            self._started = True
            self._actor_loop_setup()  # on_start; a failure stops the actor (pykka semantics)
        items: deque[Envelope[Any]] = self.actor_inbox._items  # type: ignore[attr-defined]
        prof = self._dispatcher._profile
        for _ in range(limit):
            if not items:
                return False
            envelope = items.popleft()
            if self.actor_stopped.is_set():
                _refuse(self, envelope)
                continue
            if prof is None:
                self._handle_envelope(envelope)
            else:
                g0 = _gc_time.thread
                t0 = time.thread_time()
                self._handle_envelope(envelope)
                entry = prof[(self.stage, _tag_of(envelope.message))]
                entry[0] += time.thread_time() - t0 - (_gc_time.thread - g0)
                entry[1] += 1
        return bool(items)

    def _handle_envelope(self, envelope: Envelope[Any]) -> None:
        reply_to, message = envelope.reply_to, envelope.message
        try:
            # the engine's own messages (msgpack bytes) straight to on_receive; pykka's stop and proxy
            # messages (never bytes) through pykka's _handle_receive, whose four isinstance checks
            # every message paid for
            if type(message) is bytes:
                response = self.on_receive(message)
            else:
                response = self._handle_receive(message)
            if reply_to is not None:
                reply_to.set(response)
        except Exception:
            if reply_to is not None:
                log.info("Exception returned from %s to caller:", self, exc_info=sys.exc_info())
                reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:
                    self._handle_failure(*sys.exc_info())
        except BaseException:
            log.debug("%r in %s. Stopping all actors.", sys.exc_info()[1], self)
            self._stop()
            ActorRegistry.stop_all()


def _refuse(actor: pykka.Actor, envelope: Envelope[Any]) -> None:
    """A message for an actor that has stopped: answer an ask as pykka does, drop a tell."""
    if envelope.reply_to is None:
        return
    if isinstance(envelope.message, pykka_messages._ActorStop):
        envelope.reply_to.set(None)
    else:
        err = ActorDeadError(f"{actor.actor_ref} stopped before handling the message")
        envelope.reply_to.set_exception(exc_info=(ActorDeadError, err, None))


def _tag_of(message: Any) -> int:
    """The msgpack wire tag of an actor message (bytes), or -1 for pykka's own messages."""
    if type(message) is bytes and len(message) >= 2 and 0x92 <= message[0] <= 0x9F \
            and message[1] < 0x80:
        return message[1]
    return -1


class _GcTime(threading.local):
    thread = 0.0  # CPU seconds this thread spent in collections
    started = 0.0


_gc_time = _GcTime()
_gc_total = [0.0]  # all threads


def _on_gc(phase: str, _info: dict) -> None:
    if phase == "start":
        _gc_time.started = time.thread_time()
    else:
        spent = time.thread_time() - _gc_time.started
        _gc_time.thread += spent
        _gc_total[0] += spent


def count_gc_time(on: bool) -> None:
    """Start or stop counting the CPU time of garbage collections (see :func:`gc_seconds`)."""
    if on and _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)
    elif not on and _on_gc in gc.callbacks:
        gc.callbacks.remove(_on_gc)


def gc_seconds() -> float:
    """CPU seconds spent in garbage collections, all threads, since counting started."""
    return _gc_total[0]


def gc_seconds_this_thread() -> float:
    """CPU seconds the calling thread spent in garbage collections since counting started."""
    return _gc_time.thread


_this_thread = threading.local()  # .dispatcher: the Dispatcher this thread runs, if any
_default: Dispatcher | None = None
_default_lock = threading.Lock()


def default_dispatcher() -> Dispatcher:
    """The process-wide dispatcher used by actors whose class names none."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Dispatcher()
        return _default
