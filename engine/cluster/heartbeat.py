"""A worker or HTTP edge proves to the ``smsroute run`` that started it that it still works.

Supervision used to notice only a child that exited. One that was stopped (SIGSTOP) or deadlocked still
counted as alive: ``/readyz`` stayed 200, nothing restarted it, a hung edge kept its share of the customer
port's connections (``SO_REUSEPORT``) and a hung worker's messages stalled. So a child started with
``--beat-every S`` runs a :class:`Heartbeat`: every ``S`` seconds it asks the parts that do the work -
a worker's actor dispatcher (each POP actor answers a question in its turn) and its NATS loop, an edge's
HTTP loop and its NATS loop - and only when every one of them answered writes one line,
``smsroute beat <node>``, to its stdout, the pipe the supervisor already reads (``engine.cluster.local``).
A stopped process writes nothing, and a process whose loop or actor thread is stuck stops writing even
though its heartbeat thread still runs. The supervisor judges the silence (``engine.cluster.liveness``).

A worker's beat also waits for the parts on threads of their own that do work nobody asks them for: the
retention sweeper (bodies erased within 24 hours) and each SMPP carrier's event loop (``parts_probe``:
they stamp their progress, ``actors.sweep_watch`` and ``engine.loop_pulse``), and for every long-lived
part to be running (``Runtime.dead_parts``: the clock, the sweeper, the committer, each POP and carrier;
an actor that raised out of a handler, a thread that raised, has ended). One of them hung or dead stops
the beat, so the worker is reported hung and then killed and restarted, rather than named on the beat line
like a full store: a restart is what recovers a stuck thread (the sweep resumes, every batch it committed
stays; the binds are made again and what the SMSC had not acknowledged is sent again), whereas a full
store needs space, which a restart does not make. Named on the line, it would only make the core's
``/readyz`` 503 - taking every worker out of the load balancer for one worker's background thread - and
stay hung.

A worker's beat also names the stores that refuse new messages for lack of space right now
(``smsroute beat w0 full=message:fra``; ``storage.space_watch``), so the core's ``/readyz`` says
``store_full`` for them: the line goes every second anyway, so this costs nothing more than a few bytes
(before, only the worker's own metric and log knew, and the core kept answering 200).

The pipe, not NATS: a NATS outage must not look like every child hanging at once (and restart them all),
and the pipe is there anyway. Beats stop, and the thread ends, when the pipe is gone (the parent died:
``engine.cluster.lifeline`` stops the process then).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pykka
from pykka.messages import ProxyGetAttr

log = logging.getLogger(__name__)

BEAT = "smsroute beat"  # a beat line: f"{BEAT} {node}\n" (engine.cluster.local reads it)
FULL = "full="  # then, if any, f" {FULL}{','.join(full store names)}" (no space or comma in a name)

_URN = ProxyGetAttr(attr_path=("actor_urn",))  # a question any pykka actor answers in its turn
#: A probe: given a deadline (``time.monotonic()``), True once the part it asks answered by then.
Probe = Callable[[float], bool]


def loop_probe(loop_of: Callable[[], asyncio.AbstractEventLoop | None]) -> Probe:
    """A probe of an asyncio loop: a callback scheduled on it must run. ``loop_of`` gives the loop (None:
    not running yet or any more, which is not a hang: the process is starting or stopping)."""

    def probe(deadline: float) -> bool:
        loop = loop_of()
        if loop is None or loop.is_closed():
            return True
        ran = threading.Event()
        try:
            loop.call_soon_threadsafe(ran.set)
        except RuntimeError:  # closed meanwhile: stopping
            return True
        return ran.wait(max(0.0, deadline - time.monotonic()))

    return probe


def actors_probe(refs_of: Callable[[], Iterable[Any]]) -> Probe:
    """A probe of pykka actors: each must answer a question (read its ``actor_urn``) in its turn. An
    actor that stopped is not a hang (a restart of the process is not what it needs); one that has not
    answered the previous round's question yet is asked nothing new, so a stuck actor's inbox does not
    grow."""
    pending: dict[str, Any] = {}  # actor urn -> the future of the question not yet answered

    def probe(deadline: float) -> bool:
        answered = True
        for ref in list(refs_of()):
            future = pending.get(ref.actor_urn)
            if future is None:
                future = pending[ref.actor_urn] = ref.ask(_URN, block=False)
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                answered = False
                continue
            except pykka.ActorDeadError:
                pass
            del pending[ref.actor_urn]
        return answered

    return probe


def parts_probe(node: str, hung_parts: Callable[[], Mapping[str, str]],
                dead_parts: Callable[[], Iterable[str]] = tuple) -> Probe:
    """A probe of the parts that run on threads of their own and stamp their progress, read without
    asking them (``Runtime.hung_parts``: the retention sweeper, each SMPP carrier's event loop), and of
    the long-lived parts that stopped running (``Runtime.dead_parts``: the sweeper, the clock, a POP...
    whose thread raised and ended): it answers at once, False while one of them is hung or dead. Each
    part that becomes hung or dead is logged once with why, and again once it works (the beat stops: the
    supervisor only sees a silent worker). A dead part is not restarted in place: the process's restart
    starts every part again through the one start path, with every store it sweeps or serves."""
    logged: set[str] = set()

    def probe(deadline: float) -> bool:
        down = {name: ("hung", why) for name, why in hung_parts().items()}
        down.update((name, ("dead", "not running (its thread ended)")) for name in dead_parts())
        for name in sorted(down.keys() - logged):
            state, why = down[name]
            log.error("%s: %s is %s: %s; no heartbeat while it is", node, name, state, why,
                      extra={"node": node, "part": name, "state": state})
        for name in sorted(logged - down.keys()):
            log.warning("%s: %s works again", node, name, extra={"node": node, "part": name,
                                                                   "state": "alive"})
        logged.clear()
        logged.update(down)
        return not down

    return probe


def beat_line(node: str, full_stores: Iterable[str] = ()) -> bytes:
    """The beat line of ``node``, naming the stores that are full right now (none: just the beat)."""
    full = ",".join(full_stores)
    return f"{BEAT} {node}{f' {FULL}{full}' if full else ''}\n".encode("ascii", "replace")


def full_stores_of(line: str) -> tuple[str, ...]:
    """The full stores a beat line names (:func:`beat_line`)."""
    for word in line.split()[3:]:
        if word.startswith(FULL):
            return tuple(name for name in word[len(FULL):].split(",") if name)
    return ()


class Heartbeat:
    """Every ``every`` seconds: run every probe (each may take until ``every`` + ``patience`` from the
    round's start) and, if all answered, write a beat line to ``fd`` (None: no line - no supervisor
    reads it) naming what ``full_stores`` gives (the process's stores that refuse new data for lack of
    space), and call ``on_beat`` (a worker announces itself ready: ``engine.cluster.presence``)."""

    def __init__(self, node: str, every: float, probes: list[Probe], *, fd: int | None = 1,
                 patience: float = 30.0, full_stores: Callable[[], Iterable[str]] = tuple,
                 on_beat: Callable[[], None] | None = None) -> None:
        self.node, self.every, self.probes, self.fd = node, every, probes, fd
        self.full_stores = full_stores
        self.on_beat = on_beat
        self.patience = patience  # how long a round waits for a slow part (it beats once it answers)
        self.beats = 0
        self.rounds = 0  # rounds finished, beating or not
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"smsroute-{node}-beat")

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        next_round = time.monotonic()
        while not self._stop.is_set():
            deadline = next_round + self.every + self.patience
            if all(probe(deadline) for probe in self.probes):
                if self.fd is not None:
                    try:
                        os.write(self.fd, beat_line(self.node, self.full_stores()))
                    except OSError:  # the pipe is gone: the parent died (the lifeline stops us)
                        return
                self.beats += 1
                if self.on_beat is not None:
                    try:
                        self.on_beat()
                    except Exception:  # (an announcement that failed must not end the beats)
                        log.exception("%s: on_beat failed", self.node)
            self.rounds += 1
            next_round = max(next_round + self.every, time.monotonic())
            self._stop.wait(max(0.0, next_round - time.monotonic()))
