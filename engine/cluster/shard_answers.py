"""A worker's answers to the core's questions about its POP shards (``ShardQuery`` over NATS).

:class:`QueryHandler` is :class:`engine.cluster.shards.LocalShards` behind a message. An answer larger
than ``PART_BYTES`` crosses in parts (``ShardReplyParts``): NATS refuses a message over 1 MB, and a hold
list, an audit trail or a webhook backlog has no natural page. The worker keeps such an answer a short
while (``KEPT_SECONDS``, at most ``KEPT_ANSWERS``) for the core to fetch its parts.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

from engine import messages as m
from engine.cluster.shards import LocalShards
from engine.errors import SmsrouteError

log = logging.getLogger(__name__)

PART_BYTES = 512 * 1024  # a larger answer is fetched in parts of this size
KEPT_ANSWERS = 8  # large answers a worker keeps for their parts to be fetched (the oldest goes first)
KEPT_SECONDS = 60.0


class QueryHandler:
    """A worker's answers to the core's ``ShardQuery`` messages."""

    KINDS = ("find_record", "records_for_account", "records_for_account_page", "records_since",
             "pop_stats", "carrier_stats", "suspend_carrier", "use_routing", "forget_account", "profile", "account_pages",
             "webhook_events", "find_records", "records_page", "owed_to_ledger",
             "place_hold", "release_hold", "close_debug_windows", "read_held_body", "active_holds", "hold_audit_page", "hold_ended",
             "sweeper_stats", "sweep_now", "transport_stats")

    def __init__(self, shards: LocalShards) -> None:
        self.shards = shards
        self._kept: dict[str, tuple[float, bytes]] = {}  # token -> (until, encoded ShardReply)
        self._lock = threading.Lock()  # queries are answered on a thread pool

    def answer(self, raw: bytes) -> bytes:
        try:
            q = m.decode(raw)
            if isinstance(q, m.ShardQuery) and q.kind == "answer_part":
                return self._part(*q.args)
            if not isinstance(q, m.ShardQuery) or q.kind not in self.KINDS:
                raise ValueError("not a shard query")
            result = getattr(self.shards, q.kind)(*q.args)
            if q.kind == "records_since":
                result = list(result)
            return self._in_parts_if_large(m.encode(m.ShardReply(True, _plain(result), "")))
        except SmsrouteError as exc:
            return m.encode(m.ShardReply(False, exc.message, exc.code))
        except Exception as exc:  # a bad query or a bug: the asker gets an error, the worker lives
            log.exception("shard query failed")
            return m.encode(m.ShardReply(False, type(exc).__name__, "internal_error"))

    def _in_parts_if_large(self, reply: bytes) -> bytes:
        if len(reply) <= PART_BYTES:
            return reply
        token, now = secrets.token_hex(8), time.monotonic()
        with self._lock:
            self._kept = {t: kept for t, kept in self._kept.items() if kept[0] > now}
            while len(self._kept) >= KEPT_ANSWERS:
                del self._kept[next(iter(self._kept))]
            self._kept[token] = (now + KEPT_SECONDS, reply)
        return m.encode(m.ShardReplyParts(token, -(-len(reply) // PART_BYTES)))

    def _part(self, token: str, index: int) -> bytes:
        with self._lock:
            kept = self._kept.get(token)
            if kept is not None and (index + 1) * PART_BYTES >= len(kept[1]):
                del self._kept[token]  # the last part: nothing more to fetch
        if kept is None:
            return m.encode(m.ShardReply(False, "that answer is no longer kept; ask again",
                                         "cluster_unavailable"))
        return m.encode(m.ShardReply(True, kept[1][index * PART_BYTES:(index + 1) * PART_BYTES], ""))


def _plain(value: Any) -> Any:
    """Records (and other named tuples) as field lists (msgpack has no named tuples); everything else as
    it is."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value

