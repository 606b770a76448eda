"""The core's view of a cluster's POP shards: every worker asked, the answers merged.

:class:`ClusterShards` has the interface of :class:`engine.cluster.shards.LocalShards`: it asks every
worker with a ``ShardQuery`` message over NATS (request/reply, in parallel) and merges the answers. A
read of one account's messages (its listing, export, usage, a status read for it) asks only the workers
that may hold them (:meth:`ClusterShards.holders`: its worker under each worker count the cluster ran
with, ``engine.cluster.topology``), so a hung worker fails only the accounts it may hold. An
answer too large for one NATS message arrives in parts (``ShardReplyParts``, see
:mod:`engine.cluster.shard_answers`). Operator views (``/v1/stats``, ``/metrics``, carriers, retention,
holds, audit) ask with a short deadline (``STATS_TIMEOUT_S``, :meth:`ClusterShards.ask_each`): a hung
worker is named missing instead of holding the answer.

An action asked of every worker (suspend a carrier, a routing table, erase, place or release a hold) can
reach only some of them: one worker's link is down or its answer is lost. Its error then names the
workers that did it, those that did not answer and those not asked (``ClusterShards._act_all``), so the
operator knows which part of the cluster holds it. A suspension, a table and an erasure are states: the
same action again is safe and converges. So is placing a hold with an ``Idempotency-Key``: a worker that
placed it answers that hold, the others place it (``storage.holds.Holds.place``). Without a key, placing
it again places a second hold where one was placed (the message says so).

A worker the core's supervisor knows will not answer - hung (its heartbeat over
``child_hung_after_seconds`` late), down or restarting (:attr:`ClusterShards.not_answering`, set from
``engine.cluster.local.LocalCluster.not_answering``) - is not asked at all: a view names it missing at
once, a question that needs its answer is refused at once (``ClusterUnavailable``: 503 with
``Retry-After``) and an action lists it as not asked. Before, each question to it held a query thread
for its whole time-out (2 s for a view, 30 s otherwise) until the worker was killed, and a few such
requests exhausted the threads every other request waits for.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from engine import messages as m
from engine.cluster.carrier_view import merge_carrier_rows
from engine.cluster.placement import Placement
from engine.cluster.shards import PAGE
from engine.cluster.topology import TopologyHistory
from engine.cluster.transport import ACT_WITHIN
from engine.errors import ClusterUnavailable, SmsrouteError, error_from_code
from storage.records import MessageRecord

log = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 30.0
STATS_TIMEOUT_S = 2.0  # workers' numbers for /v1/stats and /metrics: one not answering by then is named missing
QUERY_THREADS_PER_WORKER = 4  # each worker's own: questions to one never wait behind another's
# questions that change nothing where they are answered: given up on when their worker is judged hung
# (``Transport.give_up_on(reads_only=True)``), as nothing happens if it wakes and answers them late
READS = frozenset({
    "find_record", "find_records", "records_for_account_page", "records_page", "account_pages",
    "webhook_events", "owed_to_ledger", "pop_stats", "carrier_stats", "sweeper_stats",
    "transport_stats", "active_holds", "hold_audit_page", "hold_ended", "answer_part"})
# what a customer is told of an action that reached only part of the cluster (the operator's message
# names the workers, and says per kind whether asking again is safe: RETRY_ADVICE)
PARTIAL_ACTION = ("part of the cluster is unavailable: this was done there only in part or not at all; "
                  "retry after the Retry-After seconds")
DONE_IN_PART = "it took effect on part of the cluster only"
RETRY_ADVICE = {  # what a partial action's error tells the operator about asking again
    "suspend_carrier": "the same suspension again is safe and brings every worker to it",
    "use_routing": "the workers that missed the table ask the core for it when their link is back",
    "forget_account": "the same erasure again is safe",
    "place_hold": "placing it again with the same Idempotency-Key is safe (a worker that placed it "
                  "answers its hold); without a key it places a second hold where one was placed "
                  "(GET /v1/holds shows them: release the extra one)",
    "release_hold": "releasing it again is safe (where it is released already: not open)",
}


class ClusterShards:
    """The core's view: every worker asked, the answers merged."""

    def __init__(self, transport: Any, workers: tuple[str, ...],
                 topology: TopologyHistory | None = None) -> None:
        self.transport = transport
        self.workers = workers
        # the worker counts the cluster ran with: which workers may hold an account's messages
        # (without one, any worker may: all are asked)
        self.topology = topology or TopologyHistory()
        self.placement = Placement(node="core", runs_pops=False, workers=workers)
        # each worker's own query threads: a question to one never waits for a thread held by a
        # question to another that does not answer (before: one pool of max(2, workers) threads, and
        # two questions to a silent worker held every question to the others for 30 s)
        self._pools = {node: ThreadPoolExecutor(QUERY_THREADS_PER_WORKER,
                                                thread_name_prefix=f"shard-query-{node}")
                       for node in workers}
        # the views' own threads: never queued behind a 30 s query to a hung worker
        self._stats_pools = {node: ThreadPoolExecutor(QUERY_THREADS_PER_WORKER,
                                                      thread_name_prefix=f"shard-query-stats-{node}")
                             for node in workers}
        # why a worker will not answer now ("hung", "down", "starting", "protocol 3, core 4"), or None:
        # ask it. The core that supervises its workers sets it (``Engine.cluster``); workers started
        # elsewhere (``--role``) are asked unless they announced another cluster protocol
        # (``PresenceBoard.mismatched``, set by ``actors.cluster_link``)
        self.not_answering: Callable[[str], str | None] = _always_asked

    def close(self) -> None:
        """Stop the query threads (the engine's stop; a query still running finishes first)."""
        for pool in [*self._pools.values(), *self._stats_pools.values()]:
            pool.shutdown(wait=True)

    def _not_asked(self) -> dict[str, str]:
        """The workers known not to answer now (:attr:`not_answering`), each with why: not asked."""
        return {node: why for node in self.workers if (why := self.not_answering(node))}

    def _ask(self, node: str, kind: str, *args: Any, act_by: float | None = None,
             timeout: float | None = None) -> Any:
        why = self.not_answering(node)
        if why:  # (also judged between a caller's check and this question)
            raise _refused(kind, {node: why})
        raw = self.transport.request(node, m.encode(m.ShardQuery(kind, list(args))),
                                     QUERY_TIMEOUT_S if timeout is None else timeout, act_by,
                                     read=kind in READS)
        reply = m.decode(raw)
        if isinstance(reply, m.ShardReplyParts):  # a large answer: fetched a part at a time
            raw = b"".join(self._ask(node, "answer_part", reply.token, i, timeout=timeout)
                           for i in range(reply.count))
            reply = m.decode(raw)
        if not isinstance(reply, m.ShardReply):
            raise error_from_code("internal_error", f"worker {node} answered {type(reply).__name__}")
        if not reply.ok:
            raise _worker_error(node, reply.error, str(reply.result))
        return reply.result

    def _ask_all(self, kind: str, *args: Any) -> list[Any]:
        """Every worker's answer; the first failure is raised, and a question not yet sent then never
        is (one deadline for all: a worker asked late would act after the caller was told 503). A
        worker known not to answer (:attr:`not_answering`) fails it at once, before any is asked."""
        skipped = self._not_asked()
        if skipped:
            raise _refused(kind, skipped)
        return self._ask_these(self.workers, kind, *args)

    def holders(self, account_id: str) -> tuple[str, ...]:
        """The workers that may hold ``account_id``'s messages: its worker now and under every earlier
        worker count (``engine.cluster.topology``); one worker while the count never changed."""
        return self.topology.holders(account_id, self.workers)

    def _answering_holders(self, account_id: str, kind: str) -> tuple[str, ...]:
        """The account's :meth:`holders`, or ``ClusterUnavailable`` at once if one of them is known
        not to answer (it may hold what is asked). A worker that holds none of the account's messages
        is never asked, so a hung one fails no other worker's accounts."""
        nodes = self.holders(account_id)
        skipped = {node: why for node in nodes if (why := self.not_answering(node))}
        if skipped:
            raise _refused(kind, skipped)
        return nodes

    def _ask_holders(self, account_id: str, kind: str, *args: Any) -> list[Any]:
        """:meth:`_ask_all` of the account's :meth:`holders` only."""
        return self._ask_these(self._answering_holders(account_id, kind), kind, *args)

    def _ask_these(self, nodes: tuple[str, ...], kind: str, *args: Any) -> list[Any]:
        """:meth:`_ask_all` of ``nodes``: their answers in order, or the first failure."""
        act_by = time.time() + QUERY_TIMEOUT_S * ACT_WITHIN
        futures = [self._pools[node].submit(self._ask, node, kind, *args, act_by=act_by)
                   for node in nodes]
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
        skipped = self._not_asked()  # known not to answer: not asked (named in the outcome)
        act_by = time.time() + QUERY_TIMEOUT_S * ACT_WITHIN
        futures = {node: self._pools[node].submit(self._ask, node, kind, *args, act_by=act_by)
                   for node in self.workers if node not in skipped}
        wait(futures.values(), return_when=FIRST_EXCEPTION)
        for f in futures.values():
            f.cancel()  # only one not yet started: never sent (one deadline for all, see _ask_all)
        # those asked end by their time-out (not the cancelled: one is "done" only once a thread of
        # its worker's pool has taken it off the queue, which a silent worker's may not for 30 s)
        wait([f for f in futures.values() if not f.cancelled()])
        done, silent, refused = [], [], []
        not_asked = [f"{node} ({why})" for node, why in skipped.items()]
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
            raise ClusterUnavailable(outcome, public=PARTIAL_ACTION)
        assert first is not None
        public = first.public_message + (f" ({DONE_IN_PART})" if done else "")
        raise error_from_code(first.code, f"{first.message} ({outcome})", public=public)

    def find_record(self, message_id: str, account_id: str | None = None) -> MessageRecord | None:
        """The message's record from the worker that holds it (with ``account_id``: asked only of the
        account's :meth:`holders`; a message of another account may then be missed, as its owner's
        reads want). A worker known not to answer is not asked: found at another, the record is the
        answer (a message lives on one worker); else the silent one may hold it, and the question is
        refused at once (``ClusterUnavailable``)."""
        nodes = self.workers if account_id is None else self.holders(account_id)
        skipped = {node: why for node in nodes if (why := self.not_answering(node))}
        for found in self._ask_these(tuple(n for n in nodes if n not in skipped),
                                     "find_record", message_id):
            if found is not None:
                return _record(found)
        if skipped:
            raise _refused("find_record", skipped)
        return None

    def records_for_account(self, account_id: str) -> list[MessageRecord]:
        """The account's records, from every worker that may hold them (:meth:`holders`: before, only
        the one it belongs to now, so an export after the worker count changed left out what was sent
        before), a page per answer (a NATS message is at most 1 MB)."""
        out: list[MessageRecord] = []
        for node in self._answering_holders(account_id, "records_for_account_page"):
            offset = 0
            while True:
                rows = self._ask(node, "records_for_account_page", account_id, offset, PAGE)
                out.extend(_record(r) for r in rows)
                if len(rows) < PAGE:
                    break
                offset += PAGE
        return out

    def records_since(self, t: float) -> Iterator[MessageRecord]:
        """Every worker's records submitted at or after ``t`` (analytics), read a page at a time."""
        return (r for r in self.scan_records() if r.submitted_at >= t)

    def account_pages(self, account_id: str, before: bytes | None, after: bytes, limit: int,
                      statuses: frozenset[str] | None, max_scan: int
                      ) -> list[tuple[list[MessageRecord], bytes | None]]:
        wanted = sorted(statuses) if statuses is not None else None
        return [([_record(r) for r in records], resume)
                for pages in self._ask_holders(account_id, "account_pages", account_id, before, after,
                                               limit, wanted, max_scan)
                for records, resume in pages]

    def webhook_events(self) -> list[tuple[str, int, m.StatusItem, int, float]]:
        return [(address, seq, m.StatusItem(*item), attempt, next_at)
                for events in self._ask_all("webhook_events")
                for address, seq, item, attempt, next_at in events]

    def find_records(self, message_ids: list[str], account_id: str | None = None
                     ) -> list[MessageRecord | None]:
        """The records of ``message_ids`` (None where none): every worker asked, or with
        ``account_id`` (whose messages they are: a usage export's) only its :meth:`holders`."""
        found: list[MessageRecord | None] = [None] * len(message_ids)
        answers = (self._ask_all("find_records", list(message_ids)) if account_id is None else
                   self._ask_holders(account_id, "find_records", list(message_ids)))
        for rows in answers:
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
                   request: list[bytes] | None = None, order_id: str = "",
                   subject: str = "") -> list[dict]:
        """Every worker places it (``LocalShards.place_hold``); ``subject``, the core's pseudonym of
        ``account_id``, is how the workers name the account in what they answer (``engine.core_names``)."""
        return [h for placed in self._act_all("place_hold", kind, actor, reason, reference, until,
                                              list(message_ids), account_id, request, order_id,
                                              subject)
                for h in placed]

    def release_hold(self, hold_id: str, actor: str, reason: str) -> dict | None:
        return next((r for r in self._act_all("release_hold", hold_id, actor, reason) if r), None)

    def close_debug_windows(self, account_id: str, actor: str, reason: str) -> dict[str, Any]:
        """``DELETE /v1/debug-window``: every worker asked at once to end the account's windows, with
        ``STATS_TIMEOUT_S`` (see :meth:`ask_each`): ``{"closed": how many ended, "workers_missing": the
        workers that did not answer (node -> why)}``. Before, the core listed every worker's holds and
        released each window by asking every worker, with the 30 s timeout: one hung worker made the
        customer wait 30 s for a 503. Ending a window again is safe (an ended one is not open), so the
        customer asks again for the part that did not answer; a worker that gets the question after
        its deadline drops it (``transport.ACT_WITHIN``)."""
        answers, missing = self.ask_each(("close_debug_windows",), args=(account_id, actor, reason))[
            "close_debug_windows"]
        return {"closed": sum(int(answers[node]["closed"]) for node in self.workers if node in answers),
                "workers_missing": missing}

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

    def hold_audit_page(self, since: float | None, until: float, limit: int,
                        about: tuple[str, str] | None = None) -> tuple[list[list], dict[str, str]]:
        """``(the first `limit` audit entries of the holds at or after `since`, merged by time; the
        workers whose entries are missing: node -> why)``: each worker answers at most ``limit``
        entries (``LocalShards.hold_audit_page``: a page, not its whole trail since ``since``), all
        asked at once with ``STATS_TIMEOUT_S`` (a view: a hung worker neither holds the auditor's
        answer 30 s nor fails it; the answer names it, so a trail lacking its entries is never taken
        as whole)."""
        entries, missing = self.ask_each(
            ("hold_audit_page",), args=(since, until, limit, list(about) if about else None))[
            "hold_audit_page"]
        merged = heapq.merge(*(entries[node] for node in self.workers if node in entries),
                             key=lambda row: row[1])  # (row: an AuditEntry's fields; [1] its ts)
        return list(itertools.islice(merged, limit)), missing

    def sweep_now(self) -> dict:
        return dict(zip(self.workers, self._ask_all("sweep_now"), strict=True))

    def ask_each(self, kinds: tuple[str, ...], timeout: float = STATS_TIMEOUT_S, args: tuple = ()
                 ) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
        """``{kind: (answers by node, why each other node is missing)}``: every worker asked each of
        ``kinds`` (reads, each with ``args``: the views of ``/v1/stats``, ``/metrics``, holds, audit;
        and the customer's closing of a debugging window, an action safe to repeat) at once, with one
        deadline for all. A worker that is down, cut off or hung but connected
        (SIGSTOP, busy actors) delays the call by at most ``timeout`` and is named missing; the
        others' answers are kept. One the supervisor knows will not answer (:attr:`not_answering`)
        is not asked: named missing at once (``"hung: not asked"``)."""
        skipped = self._not_asked()  # known not to answer: named at once, holding no thread
        act_by = time.time() + timeout * ACT_WITHIN
        futures = {(kind, node): self._stats_pools[node].submit(self._ask, node, kind, *args,
                                                                act_by=act_by, timeout=timeout)
                   for kind in kinds for node in self.workers if node not in skipped}
        wait(futures.values(), timeout + 2)
        out: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
            kind: ({}, {node: f"{why}: not asked" for node, why in skipped.items()}) for kind in kinds}
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


def _worker_error(node: str, code: str, text: str) -> SmsrouteError:
    """A worker's refusal as the core raises it: the operator's message names the worker; a customer
    is shown the worker's own words (never its name), or, for a ``ClusterUnavailable`` (whose words
    may name other processes), that part of the cluster is unavailable."""
    error = error_from_code(code, f"worker {node}: {text}")
    return error_from_code(code, error.message, public=text) if error.message_is_public else error


def _always_asked(node: str) -> str | None:
    return None


def _refused(kind: str, skipped: dict[str, str]) -> ClusterUnavailable:
    """The error of a question not asked because ``skipped`` (node -> why) will not answer now."""
    return ClusterUnavailable(
        f"{kind} not asked: worker {', '.join(f'{node} is {why}' for node, why in skipped.items())}; "
        "a hung worker is restarted if it stays silent (GET /readyz shows when it is back), then ask "
        "again")


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


