"""A worker started again takes no frame before the core heard it start (``--role core``).

A core whose workers run on other hosts knows them only by their announcements. A worker killed and
started again by its host's supervisor used to subscribe to its frames as its actors started and ask
(``starting``) only after its ready line: in between the core, still holding the killed process ready,
could hand it a submit that the new process accepted - and then, hearing the ask, fail it as "outcome
unknown" (the client told it may not have been sent, its Idempotency-Key pending). Now the worker asks
first and takes frames only once the core answered: every probe of its subject sent before the core
heard the ask finds nobody subscribed.

Real nats-server, core and worker process; the probes are NATS requests to the worker's subject from
the core's own connection (a subject nobody subscribes to answers "no responders" at once).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import nats.errors
import pytest

from engine import Engine
from engine.cluster.local import LocalCluster
from engine.cluster.presence import STARTING
from engine.config import load_settings
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

NOBODY, TAKEN = "nobody", "taken"


def test_a_restarted_worker_subscribes_only_after_the_core_heard_it_ask(tmp_path):
    overrides = {"engine": {"child_hung_after_seconds": 60.0, "child_kill_after_seconds": 120.0}}
    workers = LocalCluster(tmp_path / "cluster", 1, overrides=overrides)  # "another host's" supervisor
    engine = None
    try:
        engine = Engine.start(data_dir=tmp_path / "core", settings=load_settings(None, overrides),
                              placement=workers.core_placement())
        workers.start_workers()
        presence, transport = engine.runtime.presence, engine.runtime.transport
        wait_for(lambda: presence.refusal("w0") is None, "the core hearing w0 ready", 10)
        asked = threading.Event()  # set on the core's transport thread, as it hears w0's ask
        heard = presence.heard

        def spy(node: str, state: str, *args: object, **kwargs: object) -> bool:
            if node == "w0" and state == STARTING:
                asked.set()
            return heard(node, state, *args, **kwargs)

        presence.heard = spy
        subject = transport.subject("w0")

        async def probe() -> tuple[bool, str]:
            # read on the transport thread just before the request is queued behind whatever the
            # core announced so far (its "here" to w0's ask comes after it heard the ask)
            was_asked = asked.is_set()
            try:
                await transport._nc.request(subject, b"\x90", timeout=0.05)  # (an empty envelope)
            except nats.errors.NoRespondersError:
                return was_asked, NOBODY
            except nats.errors.TimeoutError:
                return was_asked, TAKEN
            return was_asked, TAKEN

        def probe_now() -> tuple[bool, str]:
            return asyncio.run_coroutine_threadsafe(probe(), transport.loop).result(5)

        assert probe_now() == (False, TAKEN)  # (w0 runs and is subscribed; the request path warm)
        os.kill(workers.workers[0].proc.pid, signal.SIGKILL)  # its supervisor starts it in 0.5 s
        probes: list[tuple[bool, str]] = []
        deadline = time.monotonic() + 20
        while not (asked.is_set() and presence.refusal("w0") is None):
            assert time.monotonic() < deadline, "w0 was not started again and heard ready"
            probes.append(probe_now())
        gone = next((i for i, p in enumerate(probes) if p[1] == NOBODY), None)
        assert gone is not None, probes  # the server dropped the killed process's subscription
        early = [p for p in probes[gone:] if p == (False, TAKEN)]
        assert not early, f"{len(early)} probes taken by w0 before the core heard it ask"
        assert (True, TAKEN) in probes[gone:] or probe_now() == (True, TAKEN)  # (it does subscribe)
    finally:
        if engine is not None:
            engine.stop(drain_seconds=0)
        workers.stop()
