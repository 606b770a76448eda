"""What the POP shards hold, asked the same way whether they run here or on workers.

The embedding API and the HTTP ports answer questions about messages (``status``, an account's records
for export, analytics) and act on carriers and accounts (suspend, erase) - all of which live where the
POP shards run. :class:`LocalShards` answers from this process's stores and actors: reads use LMDB read
transactions (any thread); actions go to the owning actors as messages. The core of a cluster asks the
same questions of every worker (:class:`engine.cluster.cluster_shards.ClusterShards`), and each worker
answers with its :class:`LocalShards` behind a message (:class:`engine.cluster.shard_answers.QueryHandler`).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Iterator
from typing import Any

from engine import messages as m
from storage.records import MessageRecord

PAGE = 1000  # records per answer of a paged scan (~250 kB: under NATS's 1 MB message limit)


class LocalShards:
    """The POP shards of this process."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def close(self) -> None:
        """Nothing to stop: the stores and actors here stop with the runtime (``ClusterShards`` has
        query threads)."""

    def find_record(self, message_id: str, account_id: str | None = None) -> MessageRecord | None:
        """The message's record, or None. ``account_id`` (whose message it should be) only narrows
        which workers a cluster's core asks (``ClusterShards.find_record``); here every store is read."""
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

    def find_records(self, message_ids: list[str], account_id: str | None = None
                     ) -> list[MessageRecord | None]:
        """Many records at once, in the order asked (None where there is none): usage exports and
        reconciliation look up a chunk of messages per question. ``account_id``: as for
        :meth:`find_record`."""
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
                   request: list[bytes] | None = None, order_id: str = "",
                   subject: str = "") -> list[dict]:
        """Place a hold at the POP shards here: on the messages of ``message_ids`` they hold, or, for an
        account, at every one; returns the holds (``pop``: the shard's address; ``replayed``: placed
        before by the same ``request``, see ``storage.holds.Holds.place``). ``order_id``: the lawful
        order every hold placed belongs to (the same on every worker). A lawful order's hold keeps its
        holders: the accounts of the messages it holds here, read from their records (so each worker
        keeps those of the messages it holds, and has their data keys to seal them). ``subject``: the
        engine core's pseudonym of ``account_id``, kept with the hold so that a worker names the account
        as the core does (``engine.core_names``)."""
        from engine.core_names import hold_answer
        from storage.holds import HoldKind

        kind = HoldKind(kind)
        asked = (bytes(request[0]), bytes(request[1])) if request else None
        runtime, place = self.runtime, self.runtime.directory.placement
        if account_id is not None and kind != HoldKind.LEGAL_HOLD and not place.runs_core:
            # a worker seals the hold's account id under its own data key of the account, made here
            # if the account sent nothing through it yet (as a session makes it on the first message;
            # the core's erasure shreds it on every worker): sealed under none, a restarted worker
            # read the hold back without its account, so it kept none of its new bodies and neither
            # the customer's close nor an erasure found it
            runtime.account_keys.create(account_id)
        placed = []
        holders: dict[str, dict[str, int]] = {}  # a lawful order's, by POP: whose messages it holds
        if message_ids:
            by_pop: dict[str, list[str]] = {}
            for mid in message_ids:
                rec = self.find_record(mid)
                if rec is not None:
                    by_pop.setdefault(rec.pop, []).append(mid)
                    mine = holders.setdefault(rec.pop, {})
                    mine[rec.account_id] = mine.get(rec.account_id, 0) + 1
            targets = [(pop, ids) for pop, ids in by_pop.items()]
        else:
            targets = [(pop, []) for pop in runtime.holds]
        for pop, ids in targets:
            h, new = runtime.holds[pop].place(  # a legal hold covers messages, a window its account
                kind, actor=actor, reason=reason, reference=reference, until=until,
                message_ids=() if kind == HoldKind.DEBUG_WINDOW else ids,
                account_id=None if kind == HoldKind.LEGAL_HOLD else account_id, request=asked,
                order_id=order_id, holders=holders.get(pop), core_subject=subject)
            placed.append({**hold_answer(h, pop=place.pop_address(pop)), "replayed": not new})
        return placed

    def release_hold(self, hold_id: str, actor: str, reason: str) -> dict | None:
        from engine.core_names import hold_answer

        place = self.runtime.directory.placement
        for pop, holds in self.runtime.holds.items():
            if holds.get(hold_id) is not None:
                return hold_answer(holds.release(hold_id, actor=actor, reason=reason),
                                   pop=place.pop_address(pop))
        return None

    def close_debug_windows(self, account_id: str, actor: str, reason: str) -> dict[str, Any]:
        """``DELETE /v1/debug-window`` at the POP shards here: end the account's open debugging windows
        (their copies shredded, audit-logged); ``{"closed": how many}``. Safe to ask again: a window
        ended is no longer open. A worker answers this to the core's one bounded question
        (``ClusterShards.close_debug_windows``), so no other account's holds cross NATS for it."""
        from storage.holds import HoldKind

        closed = 0
        for holds in self.runtime.holds.values():
            for hold in holds.of_account(account_id):
                if hold.kind == HoldKind.DEBUG_WINDOW and hold.ended_at is None:
                    holds.release(hold.hold_id, actor=actor, reason=reason)
                    closed += 1
        return {"closed": closed}

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
        from engine.core_names import hold_answer

        place = self.runtime.directory.placement
        return [hold_answer(h, pop=place.pop_address(pop))
                for pop, holds in self.runtime.holds.items() for h in holds.active()]

    def holds_view(self) -> dict[str, Any]:
        """``GET /v1/holds``: the holds here (``ClusterShards.holds_view`` names missing workers)."""
        return {"holds": self.active_holds()}

    def hold_audit_page(self, since: float | None, until: float, limit: int,
                        about: list[str] | None = None) -> list[list]:
        """At most ``limit`` audit entries of the holds here: the first at or after ``since`` and
        before ``until`` (only those about one account with ``about``: ``[the core's pseudonym,
        account id or ""]``), merged by time from every POP shard's log, their sealed notes opened
        (``"shredded"`` after), each account named by the core's pseudonym (``engine.core_names``:
        a worker's own differs). A worker's part of one ``GET /v1/audit`` page
        (``engine.audit_pages``): the core asks each worker for the page's size, not for every entry
        since ``since``."""
        from engine.audit_pages import entries_before
        from engine.core_names import entry_named, hold_id_of, older_names

        wanted = (str(about[0]), str(about[1])) if about else None
        older = older_names(wanted, self._own_pseudonym)

        def opened(pop: str) -> Iterator[Any]:
            holds = self.runtime.holds[pop]

            def named(entries: Iterator[Any]) -> Iterator[Any]:
                for entry in entries:
                    hold = holds.get(hold_id_of(entry.target)) if entry.subject else None
                    core = getattr(hold, "core_subject", "") or older.get(entry.subject, "")
                    yield entry_named(entry, core)

            for entry in entries_before(named(self.runtime.audits[pop].iter_entries(since)), until,
                                        wanted):
                yield entry._replace(detail=holds.open_notes(entry.detail))

        merged = heapq.merge(*(opened(pop) for pop in self.runtime.audits), key=lambda e: e.ts)
        return [list(e) for e in itertools.islice(merged, max(0, int(limit)))]

    def _own_pseudonym(self, account_id: str) -> str:
        """This process's pseudonym of an account (a worker's is its own, not the core's)."""
        return self.runtime.pseudonyms.pseudonym(account_id)

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

