"""The core's answers to its HTTP edge processes: which account an API key belongs to, and blocks of
the customer API's rate limit (one count per key, however many edges serve it), with the unspent tokens
of earlier blocks given back.

A question the core's HTTP loop does not answer in time (a lease waits for the loop that owns the count;
under load it may not get it within its 2 s) is answered ``overloaded`` (the edge asks again later; a
key's lookup is a 503 the client retries) and counted (``smsroute_edge_query_timeouts_total{query}``),
and the log has one line when it starts, a summary a minute while it lasts and one when it stops
(``engine.retry_log``): before, each timeout logged ``edge query failed`` with a full traceback, as
many as the edges asked.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from engine import messages as m
from engine.errors import SmsrouteError
from engine.retry_log import RetryLog

log = logging.getLogger(__name__)


class EdgeQueries:
    """The core's answers to its HTTP edge processes: which account an API key belongs to, and blocks
    of the customer API's rate limit (one count per key, however many edges serve it) with the key's
    count after each (for the edge's ``RateLimit-*`` headers)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.timeouts: dict[str, int] = {}  # per query kind: not answered in time by the HTTP loop
        self._late = RetryLog(log, "edge queries: the core's HTTP loop did not answer in time",
                              "edge queries: the core's HTTP loop answers in time again")
        self._lock = threading.Lock()  # (the transport answers on several threads)

    def answer(self, raw: bytes) -> bytes:
        try:
            q = m.decode(raw)
            if not isinstance(q, m.ShardQuery):
                raise ValueError("not a query")
            if q.kind == "account_for_key":
                [digest] = q.args
                # (an edge caches a refusal 2 s: a revoked key's use counts once per 2 s per edge)
                result: Any = self.engine.account_for_digest(bytes(digest))
            elif q.kind == "lease":
                key, n = q.args
                http = self.engine.http
                # [granted, retry_after_s, reset_s] (``engine.http.ratelimit.Lease``); no HTTP ports, no
                # limit: all of it, and a key that is never counted
                result = list(http.lease(str(key), int(n))) if http is not None else [int(n), 0.0, 0.0]
            elif q.kind == "lease_block":
                # an edge of this version: [key, n, edges, tokens it holds, [[tokens, end, shift],
                # ...] given back]; answers [granted, retry_after_s, reset_s, end, shift]
                # (``ratelimit.Grant``). ("lease" above stays, for an edge of the previous version.)
                key, n, split, held, give_back = q.args
                http = self.engine.http
                give_back = [(int(t), float(e), float(s)) for t, e, s in give_back]
                result = (list(http.lease_block(str(key), int(n), give_back, int(split), int(held)))
                          if http is not None else [int(n), 0.0, 0.0, 0.0, 0.0])
            else:
                raise ValueError(f"unknown edge query {q.kind!r}")
            if self._late.failing:
                with self._lock:
                    self._late.succeeded()
            return m.encode(m.ShardReply(True, result, ""))
        except TimeoutError:
            kind = str(q.kind)
            with self._lock:
                self.timeouts[kind] = self.timeouts.get(kind, 0) + 1
                self._late.failed(kind)
            return m.encode(m.ShardReply(False, "the core did not answer in time", "overloaded"))
        except SmsrouteError as exc:
            return m.encode(m.ShardReply(False, exc.message, exc.code))
        except Exception as exc:
            log.exception("edge query failed")
            return m.encode(m.ShardReply(False, type(exc).__name__, "internal_error"))
