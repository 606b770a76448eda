"""Which routing table a process routes by: the config's, or the operator's last replacement, kept on disk
and - in a cluster - the same on the core and every worker.

Every process: a table replaced at run time (``PUT /v1/routing``, ``Engine.replace_routing``) is written to
``<data>/routing.json`` atomically (write, fsync, rename) before it is routed by, and is loaded again at
start if it still fits the configured POPs and carriers (else the config's table is used and the file is
ignored, logged).

The core pushes a replaced table to every worker (``ShardQuery`` ``use_routing``, which a worker takes with
:meth:`RoutingKeeper.take_pushed`). A push can miss a worker - down, restarting, or cut off from NATS - and
the core's own push is refused while its NATS link is down (requests are never buffered to be acted on
late: ``engine.cluster.transport``). So:

* a worker asks the core for its current table when it starts, before it takes any traffic, and again
  whenever its NATS link comes back (:meth:`RoutingKeeper.start_following`, :meth:`ask_again`); if the
  core does not answer it routes by its own saved table and keeps asking every ``RETRY_S``;
* the core pushes its current table again when its own link comes back (:meth:`push_current`).

A push that arrives while a worker's answer from the core is on its way wins (it is as new as the
answer), and one push of the core's table runs at a time, so an older table never overtakes a newer one.

Threads: any thread replaces or takes a table; a worker's thread ``routing-sync`` asks the core; the
core's push after a reconnect runs on a thread of its own (the transport's thread must not block).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import messages as m
from engine.cluster.placement import CORE
from engine.config import Settings
from engine.errors import ConfigError, SmsrouteError
from engine.routing import RoutingTable

log = logging.getLogger(__name__)

ROUTING_FILE = "routing.json"  # the operator's last replacement of the routing table
ASK_S = 5.0  # a worker waits this long for the core's routing table (at start, after a reconnect)
RETRY_S = 0.5  # and asks again this often until it has it


class RoutingKeeper:
    """The routing table of one process (``directory.routing``), its file and its cluster sync."""

    def __init__(self, data_dir: Path, settings: Settings, directory: Any) -> None:
        self.path = Path(data_dir) / ROUTING_FILE
        self.settings = settings
        self.directory = directory
        self.push: Callable[[dict], None] | None = None  # the core: hands a table to every worker
        self._lock = threading.Lock()  # a worker: a push against an answer from the core
        self._pushes = 0  # tables the core pushed here (take_pushed)
        self._push_lock = threading.Lock()  # the core: one push of its table at a time
        self._wanted = threading.Event()  # set: ask the core for its table (again)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- every process -----------------------------------------------------------------------------

    def parse(self, table: dict) -> RoutingTable:
        """The routing table ``table`` describes, validated against the configured POPs and carriers."""
        s = self.settings
        return RoutingTable.from_document(
            table, pops=set(s.pops), carriers={n: c.pop for n, c in s.carriers.items()})

    def load_saved(self) -> None:
        """Route by the table saved in ``routing.json``, if there is one and it fits this configuration."""
        if not self.path.exists():
            return
        try:
            self.directory.routing = self.parse(json.loads(self.path.read_text("utf-8")))
            log.info("routing: using the table saved in %s", self.path)
        except (ValueError, ConfigError) as exc:
            log.error("routing: ignoring %s, it does not fit this configuration: %s", self.path, exc)

    def persist(self, routing: RoutingTable) -> None:
        """Write ``routing`` atomically (write, fsync, rename) and route by it from now on."""
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(routing.to_document(), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self.directory.routing = routing

    # --- the core (or the one process) -------------------------------------------------------------

    def replace(self, table: dict) -> None:
        """Validate, persist and route by ``table``; in a cluster's core, hand it to every worker."""
        routing = self.parse(table)
        with self._push_lock:  # (a push after a reconnect cannot overtake this one with an older table)
            self.persist(routing)
            if self.push is not None:
                self.push(routing.to_document())  # every worker routes by it from now on

    def push_current(self) -> None:
        """The core's NATS link is back (called on the transport thread: must not block). A table
        replaced while it was down reached no worker, and the workers, whose links stayed up, do not
        ask again: push the current table to them."""
        threading.Thread(target=self._push_current, daemon=True, name="routing-push").start()

    def _push_current(self) -> None:
        with self._push_lock:
            try:
                if self.push is not None:
                    self.push(self.directory.routing.to_document())
            except (SmsrouteError, RuntimeError) as exc:  # (RuntimeError: stopping, the pool is shut)
                log.warning("routing: could not push the current table to the workers after the NATS "
                            "link came back (%s); a worker takes it when its own link comes back or "
                            "it restarts", exc)

    def answer(self) -> bytes:
        """The core's answer to a worker's ``ShardQuery("routing")``: the table it routes by."""
        return m.encode(m.ShardReply(True, self.directory.routing.to_document(), ""))

    # --- a worker ----------------------------------------------------------------------------------

    def take_pushed(self, table: dict) -> None:
        """The table the core replaced, pushed here (persisted too, for this worker's restarts)."""
        routing = self.parse(table)
        with self._lock:
            self._pushes += 1
            self.persist(routing)

    def start_following(self, transport: Any) -> None:
        """Ask the core for its current table now; if it does not answer, route by the table saved here
        and keep asking in the background (and again after every NATS reconnect: :meth:`ask_again`)."""
        self._transport = transport
        if not self._take_core_table(starting=True):
            self._wanted.set()
        self._thread = threading.Thread(target=self._follow, daemon=True, name="routing-sync")
        self._thread.start()

    def ask_again(self) -> None:
        """This worker's NATS link is back: ask the core for its table again (never blocks)."""
        self._wanted.set()

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._wanted.set()
            self._thread.join(ASK_S + 2)

    def _follow(self) -> None:
        while True:
            self._wanted.wait()
            if self._stopping.is_set():
                return
            self._wanted.clear()
            if not self._take_core_table(starting=False):
                self._wanted.set()
                if self._stopping.wait(RETRY_S):
                    return

    def _take_core_table(self, starting: bool) -> bool:
        """Ask the core for its table and route by it (persisted here for restarts); False if the core
        did not answer (asked again later)."""
        with self._lock:
            pushes = self._pushes
        try:
            raw = self._transport.request(CORE, m.encode(m.ShardQuery("routing", [])), ASK_S)
            reply = m.decode(raw)
            if not isinstance(reply, m.ShardReply):
                raise ValueError(f"the core answered {type(reply).__name__}")
            if not reply.ok:
                raise ValueError(f"{reply.error}: {reply.result}")
        except (SmsrouteError, ValueError) as exc:
            if starting:
                log.warning("routing: the core did not give its routing table (%s); routing by the "
                            "table saved here until it does", exc)
            return False
        try:
            routing = self.parse(reply.result)
        except (ValueError, ConfigError) as exc:  # the core validated it: this worker's config differs
            log.error("routing: the core's routing table does not fit this worker's configuration, "
                      "keeping the one saved here: %s", exc)
            return True
        with self._lock:
            if self._pushes != pushes:
                return True  # the core pushed a table meanwhile: that one is as new as this answer
            if routing.to_document() == self.directory.routing.to_document():
                log.info("routing: the core's routing table is the one this worker routes by")
                return True
            self.persist(routing)
        log.warning("routing: took the core's current routing table (this worker had another one)")
        return True
