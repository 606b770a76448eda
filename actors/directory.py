"""Where actors find each other: refs by role and name, plus the current routing table.

Messages carry names (a POP name, an account id), never refs, so the same bytes could cross a process
boundary; the directory turns a name into the ref to ``tell``. Lookups are plain dict reads (safe from any
thread under the GIL); registration happens at start-up and when a session is created.
"""

from __future__ import annotations

from typing import Any

from engine.routing import RoutingTable


class Directory:
    def __init__(self, routing: RoutingTable) -> None:
        self.routing = routing  # replaced whole (atomically) by the control port
        self.pops: dict[str, Any] = {}
        self.carriers: dict[str, Any] = {}
        self.sessions: dict[str, Any] = {}
        self.ledger: Any = None
        self.bridge: Any = None

    def session_ref(self, account_id: str) -> Any:
        """The account's session if it runs (None if not)."""
        return self.sessions.get(account_id)

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
