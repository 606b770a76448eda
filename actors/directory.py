"""Where actors find each other: refs by role and name, plus the current routing table.

Messages carry names (a POP name, an account id), never refs, so the same bytes cross a process boundary;
the directory turns a name into the ref to ``tell`` - a local pykka ref, or, in a cluster
(``engine.cluster.placement``), a ``RemoteRef`` that sends the same frame over NATS to the process that
runs the actor. Lookups are plain dict reads (safe from any thread under the GIL); registration happens at
start-up and when a session is created.
"""

from __future__ import annotations

from typing import Any

from engine.cluster.placement import Placement
from engine.routing import RoutingTable
from storage.full import FullStores


class Directory:
    def __init__(self, routing: RoutingTable, placement: Placement | None = None) -> None:
        self.routing = routing  # replaced whole (atomically) by the control port
        self.placement = placement or Placement()
        self.transport: Any = None  # engine.cluster.transport.Transport, in a cluster
        self.pops: dict[str, Any] = {}  # this process's POP shards by POP name
        self.carriers: dict[str, Any] = {}
        self.sessions: dict[str, Any] = {}  # the sessions running in this process
        self.ledger: Any = None
        self.bridge: Any = None
        self.full_stores = FullStores()  # stores of this process refusing new data (/readyz)
        self._remote_sessions: dict[str, Any] = {}

    def reply_ref(self, reply_to: str) -> Any:
        """Where the answer to a submit goes: this process's bridge (the core's, from a worker), or the
        bridge of the HTTP edge process that sent it."""
        if not reply_to or self.transport is None:
            return self.bridge
        return self.transport.ref(reply_to, "bridge")

    def pop_ref(self, address: str) -> Any:
        """A POP shard by the address it signs its messages with (``<node>/<pop>`` in a cluster)."""
        node, _, name = address.rpartition("/")
        if not node or node == self.placement.node:
            return self.pops.get(name)
        return self.transport.ref(node, f"pop/{name}") if self.transport is not None else None

    def session_ref(self, account_id: str) -> Any:
        """The account's session: here if it runs here (None if it does not), or on its worker."""
        local = self.sessions.get(account_id)
        if local is not None or self.placement.runs_pops or self.transport is None:
            return local
        ref = self._remote_sessions.get(account_id)
        if ref is None:
            node = self.placement.worker_of(account_id)
            ref = self._remote_sessions[account_id] = self.transport.ref(node, f"session/{account_id}")
        return ref

    def knows_session(self, account_id: str) -> bool:
        """A session of the account runs here, or was addressed on its worker before."""
        return account_id in self.sessions or account_id in self._remote_sessions

    def forget_session(self, account_id: str) -> None:
        """The account is gone (erased): its session is not addressed again."""
        self.sessions.pop(account_id, None)
        self._remote_sessions.pop(account_id, None)

    def session_or_bridge(self, account_id: str) -> Any:
        """Status events go to the account's session if it runs, else straight to the bridge."""
        return self.sessions.get(account_id) or self.bridge


class Forward:
    """A stand-in ref that resolves its target on every ``tell`` (for actors started before their peer)."""

    def __init__(self, resolve) -> None:
        self._resolve = resolve

    def tell(self, message: Any) -> None:
        target = self._resolve()
        if target is not None:
            target.tell(message)
