"""What the POP shards hold, asked the same way whether they run here or on workers.

The embedding API and the HTTP ports answer questions about messages (``status``, an account's records
for export, analytics) and act on carriers and accounts (suspend, erase) - all of which live where the
POP shards run. :class:`LocalShards` answers from this process's stores and actors;
:class:`ClusterShards` (the core of a cluster) asks every worker with a ``ShardQuery`` message over NATS
(request/reply, in parallel) and merges the answers; each worker answers with :class:`QueryHandler`,
which is :class:`LocalShards` behind the message. Reads use LMDB read transactions (any thread); actions
go to the owning actors as messages. An answer larger than ``PART_BYTES`` crosses in parts
(``ShardReplyParts``): NATS refuses a message over 1 MB, and a hold list, an audit trail or a webhook
backlog has no natural page.

An action asked of every worker (suspend a carrier, a routing table, erase, place or release a hold) can
reach only some of them: one worker's link is down or its answer is lost. Its error then names the
workers that did it, those that did not answer and those not asked (``ClusterShards._act_all``), so the
operator knows which part of the cluster holds it. A suspension, a table and an erasure are states: the
same action again is safe and converges. So is placing a hold with an ``Idempotency-Key``: a worker that
placed it answers that hold, the others place it (``storage.holds.Holds.place``). Without a key, placing
it again places a second hold where one was placed (the message says so).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from engine import messages as m
from engine.cluster.carrier_view import merge_carrier_rows
from engine.cluster.placement import Placement
from engine.cluster.transport import ACT_WITHIN
from engine.errors import ClusterUnavailable, SmsrouteError, error_from_code
from storage.records import MessageRecord

log = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 30.0
STATS_TIMEOUT_S = 2.0  # workers' numbers for /v1/stats and /metrics: one not answering by then is named missing
PAGE = 1000  # records per answer of a paged scan (~250 kB: under NATS's 1 MB message limit)
PART_BYTES = 512 * 1024  # a larger answer is fetched in parts of this size
KEPT_ANSWERS = 8  # large answers a worker keeps for their parts to be fetched (the oldest goes first)
KEPT_SECONDS = 60.0
RETRY_ADVICE = {  # what a partial action's error tells the operator about asking again
    "suspend_carrier": "the same suspension again is safe and brings every worker to it",
    "use_routing": "the workers that missed the table ask the core for it when their link is back",
    "forget_account": "the same erasure again is safe",
    "place_hold": "placing it again with the same Idempotency-Key is safe (a worker that placed it "
                  "answers its hold); without a key it places a second hold where one was placed "
                  "(GET /v1/holds shows them: release the extra one)",
    "release_hold": "releasing it again is safe (where it is released already: not open)",
}


class LocalShards:
    """The POP shards of this process."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def close(self) -> None:
        """Nothing to stop: the stores and actors here stop with the runtime (``ClusterShards`` has
        query threads)."""

    def find_record(self, message_id: str) -> MessageRecord | None:
        for store in self.runtime.pop_stores.values():
            rec = store.records.get(message_id)
            if rec is not None:
                return rec
        return None

    def records_for_account(self, account_id: str) -> list[MessageRecord]:
        return [r for s in self.runtime.pop_stores.values() for r in s.records.for_account(account_id)]

    def records_since(self, t: float) -> Iterator[MessageRecord]:
        for s in self.runtime.pop_stores.values():
            yield from s.records.since(t)

    def records_for_account_page(self, account_id: str, offset: int, limit: int
                                 ) -> list[MessageRecord]:
        """A page of :meth:`records_for_account` (answers across NATS stay under its 1 MB)."""
        return self.records_for_account(account_id)[offset:offset + limit]

    def account_pages(self, account_id: str, before: bytes | None, after: bytes, limit: int,
                      statuses: frozenset[str] | None, max_scan: int
                      ) -> list[tuple[list[MessageRecord], bytes | None]]:
        """Each POP shard's part of one page of the account's messages (``engine.listing``)."""
        from engine.listing import store_pages

        return store_pages(self.runtime.pop_stores.values(), account_id, before, after, limit,
                           frozenset(statuses) if statuses is not None else None, max_scan)

    def webhook_events(self) -> list[tuple[str, int, m.StatusItem, int, float]]:
        """Every event in the webhook outboxes of these POP shards: ``(shard address, seq, item, attempt,
        next_at)`` (its retry schedule, ``0, 0.0`` if none)."""
        place, out = self.runtime.directory.placement, []
        for name, store in self.runtime.pop_stores.items():
            retries = store.webhooks.retries()
            out.extend((place.pop_address(name), seq, item, *retries.get(seq, (0, 0.0)))
                       for seq, item in store.webhooks.pending())
        return out

    def find_records(self, message_ids: list[str]) -> list[MessageRecord | None]:
        """Many records at once, in the order asked (None where there is none): usage exports and
        reconciliation look up a chunk of messages per question."""
        return [self.find_record(mid) for mid in message_ids]

    def scan_records(self) -> Iterator[MessageRecord]:
        """Every record, read in chunks (reconciliation)."""
        for s in self.runtime.pop_stores.values():
            yield from s.records.scan()

    def records_page(self, cursor: list | None, limit: int = PAGE) -> list:
        """``[records, next cursor]`` of every POP shard here, a page at a time (``cursor``: None to
        start; the next one None at the end): a worker's records cross NATS in answers of bounded size
        (NATS refuses a message over 1 MB by default)."""
        names = sorted(self.runtime.pop_stores)
        index, start = cursor if cursor else (0, "")
        while index < len(names):
            records, following = self.runtime.pop_stores[names[index]].records.chunk_from(
                bytes.fromhex(start), limit)
            index, start = (index, following.hex()) if following is not None else (index + 1, "")
            if records:
                return [records, [index, start] if index < len(names) else None]
        return [[], None]

    def owed_to_ledger(self) -> list[list[str]]:
        """``[message ids whose debit is owed, message ids whose refund is owed]`` (reconciliation:
        what the POPs still send the ledger is pending, not missing)."""
        stores = self.runtime.pop_stores.values()
        return [[mid for s in stores for mids in s.debits.all().values() for mid in mids],
                [mid for s in stores for mid in s.refunds.all()]]

    def pop_stats(self) -> list[dict]:
        return self.runtime.local_pop_stats()

    def stats_view(self, with_carriers: bool = False) -> dict[str, Any]:
        """``pops`` (and ``carriers``) of this process, for ``/v1/stats`` and ``/metrics``, asked at
        once with one deadline (``Runtime.local_stats_view``)."""
        return self.runtime.local_stats_view(with_carriers)

    def carrier_stats(self) -> list[dict]:
        return self.runtime.local_carrier_stats()

    def carrier_view(self) -> dict[str, Any]:
        """``GET /v1/carriers``: this process's carrier rows."""
        return {"carriers": self.carrier_stats()}

    def retention_view(self) -> dict[str, Any]:
        """What ``GET /v1/retention`` shows of the POP shards: their active holds (the sweeper here is
        the engine's own)."""
        return {"holds": self.active_holds()}

    def suspend_carrier(self, name: str, suspended: bool) -> None:
        self.runtime.local_suspend_carrier(name, suspended)

    def use_routing(self, table: dict) -> None:
        self.runtime.local_use_routing(table)

    def forget_account(self, account_id: str) -> int:
        """Erasure here: the session stops, each POP ends the account's messages and deletes its
        records, holds forget it; on a worker, the account's data key here is shredded too."""
        return self.runtime.local_forget_account(account_id)

    # --- retention exceptions (policy 2.3): each POP shard keeps its own holds ------------------------

    def place_hold(self, kind: str, actor: str, reason: str, reference: str, until: float,
                   message_ids: list[str], account_id: str | None,
                   request: list[bytes] | None = None) -> list[dict]:
        """Place a hold at the POP shards here: on the messages of ``message_ids`` they hold, or, for an
        account, at every one; returns the holds (``pop``: the shard's address; ``replayed``: placed
        before by the same ``request``, see ``storage.holds.Holds.place``)."""
        from dataclasses import asdict

        from storage.holds import HoldKind

        kind = HoldKind(kind)
        asked = (bytes(request[0]), bytes(request[1])) if request else None
        runtime, place = self.runtime, self.runtime.directory.placement
        placed = []
        if message_ids:
            by_pop: dict[str, list[str]] = {}
            for mid in message_ids:
                rec = self.find_record(mid)
                if rec is not None:
                    by_pop.setdefault(rec.pop, []).append(mid)
            targets = [(pop, ids) for pop, ids in by_pop.items()]
        else:
            targets = [(pop, []) for pop in runtime.holds]
        for pop, ids in targets:
            h, new = runtime.holds[pop].place(  # a legal hold covers messages, a window its account
                kind, actor=actor, reason=reason, reference=reference, until=until,
                message_ids=() if kind == HoldKind.DEBUG_WINDOW else ids,
                account_id=None if kind == HoldKind.LEGAL_HOLD else account_id, request=asked)
            placed.append({"pop": place.pop_address(pop), **asdict(h), "replayed": not new})
        return placed

    def release_hold(self, hold_id: str, actor: str, reason: str) -> dict | None:
        from dataclasses import asdict

        place = self.runtime.directory.placement
        for pop, holds in self.runtime.holds.items():
            if holds.get(hold_id) is not None:
                return {"pop": place.pop_address(pop),
                        **asdict(holds.release(hold_id, actor=actor, reason=reason))}
        return None

    def read_held_body(self, hold_id: str, message_id: str, actor: str) -> str | None:
        for holds in self.runtime.holds.values():
            if holds.get(hold_id) is not None:
                return holds.read_held_body(hold_id, message_id, actor)
        return None

    def hold_ended(self, hold_id: str) -> bool:
        """Whether ``hold_id`` is a hold here that ended (released, expired): an action on it is
        409 ``hold_ended``, not 404 (its records are kept ``ENDED_RETENTION_SECONDS``)."""
        return any((h := holds.get(hold_id)) is not None and h.ended_at is not None
                   for holds in self.runtime.holds.values())

    def active_holds(self) -> list[dict]:
        from dataclasses import asdict

        place = self.runtime.directory.placement
        return [{"pop": place.pop_address(pop), **asdict(h)}
                for pop, holds in self.runtime.holds.items() for h in holds.active()]

    def holds_view(self) -> dict[str, Any]:
        """``GET /v1/holds``: the holds here (``ClusterShards.holds_view`` names missing workers)."""
        return {"holds": self.active_holds()}

    def hold_audit(self, since: float | None) -> list[list]:
        """The audit entries of the holds here, their sealed notes opened (``"shredded"`` after)."""
        out = []
        for pop, audit in self.runtime.audits.items():
            opener = self.runtime.holds[pop].open_notes
            out.extend(list(e._replace(detail=opener(e.detail))) for e in audit.iter_entries(since))
        return out

    def sweeper_stats(self) -> dict:
        return self.runtime.sweeper.proxy().stats().get(timeout=10)

    def transport_stats(self) -> dict | None:
        """This process's NATS link and its counters (``Transport.stats``); None without one."""
        transport = self.runtime.transport
        return transport.stats() if transport is not None else None

    def sweep_now(self) -> dict:
        return self.runtime.sweeper.proxy().sweep_now().get(timeout=60)

    def profile(self, on: bool) -> dict | None:
        """``smsroute bench --profile-stages`` on a worker: start adding up the CPU of every actor
        message (``actors.dispatch``), or stop and return it with the collector's and the process's."""
        import time

        from actors.dispatch import default_dispatcher, gc_seconds

        d = default_dispatcher()
        if on:
            d.profile(True)
            self._profile_from = (time.process_time(), gc_seconds())
            return None
        snapshot = d.profile_snapshot()
        d.profile(False)
        cpu0, gc0 = getattr(self, "_profile_from", (time.process_time(), gc_seconds()))
        return {"stages": [[stage, tag, cpu] for (stage, tag), (cpu, _n) in snapshot.items()],
                "gc": gc_seconds() - gc0, "cpu": time.process_time() - cpu0}


class QueryHandler:
    """A worker's answers to the core's ``ShardQuery`` messages."""

    KINDS = ("find_record", "records_for_account", "records_for_account_page", "records_since",
             "pop_stats", "carrier_stats", "suspend_carrier", "use_routing", "forget_account", "profile", "account_pages",
             "webhook_events", "find_records", "records_page", "owed_to_ledger",
             "place_hold", "release_hold", "read_held_body", "active_holds", "hold_audit", "hold_ended",
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


class ClusterShards:
    """The core's view: every worker asked, the answers merged."""

    def __init__(self, transport: Any, workers: tuple[str, ...]) -> None:
        self.transport = transport
        self.workers = workers
        self.placement = Placement(node="core", runs_pops=False, workers=workers)
        self._pool = ThreadPoolExecutor(max_workers=max(2, len(workers)),
                                        thread_name_prefix="shard-query")
        # the stats questions' own threads: never queued behind a 30 s query to a hung worker
        self._stats_pool = ThreadPoolExecutor(max_workers=max(4, 3 * len(workers)),
                                              thread_name_prefix="shard-query-stats")

    def close(self) -> None:
        """Stop the query threads (the engine's stop; a query still running finishes first)."""
        self._pool.shutdown(wait=True)
        self._stats_pool.shutdown(wait=True)

    def _ask(self, node: str, kind: str, *args: Any, act_by: float | None = None,
             timeout: float | None = None) -> Any:
        raw = self.transport.request(node, m.encode(m.ShardQuery(kind, list(args))),
                                     QUERY_TIMEOUT_S if timeout is None else timeout, act_by)
        reply = m.decode(raw)
        if isinstance(reply, m.ShardReplyParts):  # a large answer: fetched a part at a time
            raw = b"".join(self._ask(node, "answer_part", reply.token, i, timeout=timeout)
                           for i in range(reply.count))
            reply = m.decode(raw)
        if not isinstance(reply, m.ShardReply):
            raise error_from_code("internal_error", f"worker {node} answered {type(reply).__name__}")
        if not reply.ok:
            raise error_from_code(reply.error, f"worker {node}: {reply.result}")
        return reply.result

    def _ask_all(self, kind: str, *args: Any) -> list[Any]:
        """Every worker's answer; the first failure is raised, and a question not yet sent then never
        is (one deadline for all: a worker asked late would act after the caller was told 503)."""
        act_by = time.time() + QUERY_TIMEOUT_S * ACT_WITHIN
        futures = [self._pool.submit(self._ask, node, kind, *args, act_by=act_by)
                   for node in self.workers]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def _act_all(self, kind: str, *args: Any) -> list[Any]:
        """Every worker's answer to an action (a suspension, a routing table, an erasure, a hold placed
        or released). Unlike a read, a failure does not stop the wait for the workers already asked: the
        error then says where the action was done and where not (``ClusterUnavailable`` if any worker
        did not answer or was not asked, else the first worker's refusal), so the operator knows what
        holds - a state action (suspended or not, a table, an erasure) is converged by asking again."""
        act_by = time.time() + QUERY_TIMEOUT_S * ACT_WITHIN
        futures = {node: self._pool.submit(self._ask, node, kind, *args, act_by=act_by)
                   for node in self.workers}
        wait(futures.values(), return_when=FIRST_EXCEPTION)
        for f in futures.values():
            f.cancel()  # only one not yet started: never sent (one deadline for all, see _ask_all)
        wait(futures.values())  # those asked end by their time-out
        done, silent, not_asked, refused = [], [], [], []
        first: SmsrouteError | None = None
        for node, f in futures.items():
            if f.cancelled():
                not_asked.append(node)
                continue
            exc = f.exception()
            if exc is None:
                done.append(node)
            elif isinstance(exc, ClusterUnavailable):
                silent.append(node)
            elif isinstance(exc, SmsrouteError):
                refused.append(f"{node} ({exc.code})")
                first = first or exc
            else:
                raise exc
        if not (silent or not_asked or refused):
            return [futures[node].result() for node in self.workers]
        outcome = f"{kind} reached only part of the cluster: done at {', '.join(done) or 'no worker'}"
        for label, nodes in (("no answer from", silent), ("not asked", not_asked),
                             ("refused by", refused)):
            if nodes:
                outcome += f"; {label} {', '.join(nodes)}"
        outcome += "; " + RETRY_ADVICE.get(kind, "asking again is safe")
        log.warning("%s", outcome)  # (worker names and a query kind only: no account, no hold detail)
        if silent or not_asked:
            raise ClusterUnavailable(outcome)
        assert first is not None
        raise error_from_code(first.code, f"{first.message} ({outcome})")

    def find_record(self, message_id: str) -> MessageRecord | None:
        for found in self._ask_all("find_record", message_id):
            if found is not None:
                return _record(found)
        return None

    def records_for_account(self, account_id: str) -> list[MessageRecord]:
        """The account's records, from the one worker that holds them, a page per answer (a NATS
        message is at most 1 MB)."""
        node = self.placement.worker_of(account_id)
        out: list[MessageRecord] = []
        offset = 0
        while True:
            rows = self._ask(node, "records_for_account_page", account_id, offset, PAGE)
            out.extend(_record(r) for r in rows)
            if len(rows) < PAGE:
                return out
            offset += PAGE

    def records_since(self, t: float) -> Iterator[MessageRecord]:
        """Every worker's records submitted at or after ``t`` (analytics), read a page at a time."""
        return (r for r in self.scan_records() if r.submitted_at >= t)

    def account_pages(self, account_id: str, before: bytes | None, after: bytes, limit: int,
                      statuses: frozenset[str] | None, max_scan: int
                      ) -> list[tuple[list[MessageRecord], bytes | None]]:
        wanted = sorted(statuses) if statuses is not None else None
        return [([_record(r) for r in records], resume)
                for pages in self._ask_all("account_pages", account_id, before, after, limit, wanted,
                                           max_scan)
                for records, resume in pages]

    def webhook_events(self) -> list[tuple[str, int, m.StatusItem, int, float]]:
        return [(address, seq, m.StatusItem(*item), attempt, next_at)
                for events in self._ask_all("webhook_events")
                for address, seq, item, attempt, next_at in events]

    def find_records(self, message_ids: list[str]) -> list[MessageRecord | None]:
        found: list[MessageRecord | None] = [None] * len(message_ids)
        for rows in self._ask_all("find_records", list(message_ids)):
            for i, row in enumerate(rows):
                if row is not None:
                    found[i] = _record(row)
        return found

    def scan_records(self) -> Iterator[MessageRecord]:
        """Every worker's records, a page per question (one worker after the other)."""
        for node in self.workers:
            cursor = None
            while True:
                rows, cursor = self._ask(node, "records_page", cursor, PAGE)
                yield from (_record(r) for r in rows)
                if cursor is None:
                    break

    def owed_to_ledger(self) -> list[list[str]]:
        debits: list[str] = []
        refunds: list[str] = []
        for owed_debits, owed_refunds in self._ask_all("owed_to_ledger"):
            debits.extend(owed_debits)
            refunds.extend(owed_refunds)
        return [debits, refunds]

    def pop_stats(self) -> list[dict]:
        return [dict(s, worker=node) for node, stats in zip(self.workers, self._ask_all("pop_stats"),
                                                            strict=True) for s in stats]

    def carrier_stats(self) -> list[dict]:
        """One row per carrier, as one process answers, each worker's row in ``workers`` (``Engine.carriers``).
        Asked like :meth:`carrier_view`, within ``STATS_TIMEOUT_S``; a list cannot say it lacks a
        worker, so one that did not answer is ``ClusterUnavailable`` naming it (before: 30 s, then the
        same error without a name)."""
        rows, missing = self.ask_each(("carrier_stats",))["carrier_stats"]
        if missing:
            raise ClusterUnavailable("carrier rows missing: " + ", ".join(
                f"{node} ({why})" for node, why in sorted(missing.items()))
                + "; GET /v1/carriers shows the others' rows")
        return merge_carrier_rows([(node, rows[node]) for node in self.workers])

    def suspend_carrier(self, name: str, suspended: bool) -> None:
        self._act_all("suspend_carrier", name, suspended)

    def use_routing(self, table: dict) -> None:
        self._act_all("use_routing", table)

    def forget_account(self, account_id: str) -> int:
        return sum(self._act_all("forget_account", account_id))

    def place_hold(self, kind: str, actor: str, reason: str, reference: str, until: float,
                   message_ids: list[str], account_id: str | None,
                   request: list[bytes] | None = None) -> list[dict]:
        return [h for placed in self._act_all("place_hold", kind, actor, reason, reference, until,
                                              list(message_ids), account_id, request)
                for h in placed]

    def release_hold(self, hold_id: str, actor: str, reason: str) -> dict | None:
        return next((r for r in self._act_all("release_hold", hold_id, actor, reason) if r), None)

    def read_held_body(self, hold_id: str, message_id: str, actor: str) -> str | None:
        return next((b for b in self._ask_all("read_held_body", hold_id, message_id, actor)
                     if b is not None), None)

    def hold_ended(self, hold_id: str) -> bool:
        return any(self._ask_all("hold_ended", hold_id))

    def active_holds(self) -> list[dict]:
        """Every worker's active holds, or an error: for an action that must see all of them (a hold
        found or not, a lawful order's other holds); ``GET /v1/holds`` reads :meth:`holds_view`."""
        return [h for holds in self._ask_all("active_holds") for h in holds]

    def holds_view(self) -> dict[str, Any]:
        """``GET /v1/holds``: every worker asked at once with ``STATS_TIMEOUT_S`` (see :meth:`ask_each`);
        the holds of those that answered, the others named in ``holds_missing`` (node -> why)."""
        holds, missing = self.ask_each(("active_holds",))["active_holds"]
        return {"holds": [h for node in self.workers if node in holds for h in holds[node]],
                "holds_missing": missing}

    def hold_audit_view(self, since: float | None) -> tuple[list[list], dict[str, str]]:
        """``(audit entries of the holds, the workers whose entries are missing: node -> why)``: asked
        at once with ``STATS_TIMEOUT_S`` (a view: a hung worker neither holds the auditor's answer 30 s
        nor fails it; the answer names it, so a trail lacking its entries is never taken as whole)."""
        entries, missing = self.ask_each(("hold_audit",), args=(since,))["hold_audit"]
        return [e for node in self.workers if node in entries for e in entries[node]], missing

    def sweep_now(self) -> dict:
        return dict(zip(self.workers, self._ask_all("sweep_now"), strict=True))

    def ask_each(self, kinds: tuple[str, ...], timeout: float = STATS_TIMEOUT_S, args: tuple = ()
                 ) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
        """``{kind: (answers by node, why each other node is missing)}``: every worker asked each of
        ``kinds`` (reads, each with ``args``: the views of ``/v1/stats``, ``/metrics``, holds, audit)
        at once, with one deadline for all. A worker that is down, cut off or hung but connected
        (SIGSTOP, busy actors) delays the call by at most ``timeout`` and is named missing; the
        others' answers are kept."""
        act_by = time.time() + timeout * ACT_WITHIN
        futures = {(kind, node): self._stats_pool.submit(self._ask, node, kind, *args, act_by=act_by,
                                                         timeout=timeout)
                   for kind in kinds for node in self.workers}
        wait(futures.values(), timeout + 2)
        out: dict[str, tuple[dict[str, Any], dict[str, str]]] = {kind: ({}, {}) for kind in kinds}
        for (kind, node), f in futures.items():
            answers, missing = out[kind]
            if f.done() and not f.cancelled() and f.exception() is None:
                answers[node] = f.result()
            elif f.cancel() or not f.done():  # (not yet started: never sent)
                missing[node] = "no answer in time"
            else:
                exc = f.exception()
                missing[node] = getattr(exc, "code", "") or type(exc).__name__
        return out

    def stats_view(self, with_carriers: bool = False) -> dict[str, Any]:
        """What ``/v1/stats`` (and, ``with_carriers``, ``/metrics``) shows of the workers, asked at once
        (see :meth:`ask_each`): ``pops`` (each row with its ``worker``) and ``carriers`` (merged) of the
        workers that answered, ``pops_missing`` / ``carriers_missing`` naming those that did not (node ->
        why), and ``worker_transport`` (each worker's NATS link; ``answered: false`` if missing); with
        carriers (``/metrics``) also ``worker_sweepers`` (each worker's retention sweeper totals, by node)
        and ``sweepers_missing``."""
        kinds = ("pop_stats", "transport_stats",
                 *(("carrier_stats", "sweeper_stats") if with_carriers else ()))
        views = self.ask_each(kinds)
        rows, pops_missing = views["pop_stats"]
        view: dict[str, Any] = {
            "pops": [dict(s, worker=node) for node in self.workers if node in rows for s in rows[node]],
            "pops_missing": pops_missing,
            "worker_transport": _transport_view(self.workers, *views["transport_stats"])}
        if with_carriers:
            rows, view["carriers_missing"] = views["carrier_stats"]
            view["carriers"] = merge_carrier_rows([(node, rows[node]) for node in self.workers
                                                   if node in rows])
            sweepers, view["sweepers_missing"] = views["sweeper_stats"]
            view["worker_sweepers"] = {node: {**sweepers[node]["totals"],
                                              "removed_by_store": sweepers[node]["removed_by_store"]}
                                       for node in self.workers if node in sweepers}
        return view

    def carrier_view(self) -> dict[str, Any]:
        """``GET /v1/carriers``: every worker asked at once with ``STATS_TIMEOUT_S`` (see
        :meth:`ask_each`); the rows of those that answered merged, the others named in
        ``carriers_missing`` (node -> why) - a view answers at once, a hung worker does not hold it."""
        rows, missing = self.ask_each(("carrier_stats",))["carrier_stats"]
        return {"carriers": merge_carrier_rows([(node, rows[node]) for node in self.workers
                                                if node in rows]),
                "carriers_missing": missing}

    def retention_view(self) -> dict[str, Any]:
        """What ``GET /v1/retention`` shows of the workers, asked at once with ``STATS_TIMEOUT_S``: each
        one's sweeper (``workers``, by node) and the active holds of those that answered (``holds``);
        ``workers_missing`` / ``holds_missing`` name the others (node -> why)."""
        views = self.ask_each(("sweeper_stats", "active_holds"))
        sweepers, sweepers_missing = views["sweeper_stats"]
        holds, holds_missing = views["active_holds"]
        return {"workers": {node: sweepers[node] for node in self.workers if node in sweepers},
                "workers_missing": sweepers_missing,
                "holds": [h for node in self.workers if node in holds for h in holds[node]],
                "holds_missing": holds_missing}

    def worker_transports(self, timeout: float = STATS_TIMEOUT_S) -> dict[str, dict[str, Any]]:
        """Each worker's NATS link and counters (``late_queries`` and the rest), which otherwise only
        its own log shows, by node; a worker that does not answer within ``timeout`` is shown as
        ``{"answered": False, "error": ...}`` - never left out."""
        return _transport_view(self.workers, *self.ask_each(("transport_stats",), timeout)[
            "transport_stats"])

    def profile(self, on: bool) -> dict[str, Any]:
        """Each worker's stage profile (see ``LocalShards.profile``), by node."""
        return dict(zip(self.workers, self._ask_all("profile", on), strict=True))


def _transport_view(nodes: tuple[str, ...], answers: dict[str, Any], missing: dict[str, str]
                    ) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for node in nodes:
        answer = answers.get(node)
        out[node] = ({"answered": True, **answer} if isinstance(answer, dict) else
                     {"answered": False, "error": missing.get(node, "no transport")})
    return out


def _record(fields: Any) -> MessageRecord:
    values = list(fields)
    values[18] = tuple(values[18])  # carrier_ids: msgpack sends lists
    return MessageRecord(*values)


def _plain(value: Any) -> Any:
    """Records (and other named tuples) as field lists (msgpack has no named tuples); everything else as
    it is."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class EdgeQueries:
    """The core's answers to its HTTP edge processes: which account an API key belongs to, and blocks
    of the customer API's rate limit (one count per key, however many edges serve it)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

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
                result = list(http.lease(str(key), int(n))) if http is not None else [int(n), 0.0]
            else:
                raise ValueError(f"unknown edge query {q.kind!r}")
            return m.encode(m.ShardReply(True, result, ""))
        except SmsrouteError as exc:
            return m.encode(m.ShardReply(False, exc.message, exc.code))
        except Exception as exc:
            log.exception("edge query failed")
            return m.encode(m.ShardReply(False, type(exc).__name__, "internal_error"))
