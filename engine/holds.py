"""Retention exceptions and retention status, engine-wide (policy 2.3 and section 6).

Each POP shard keeps its own bodies, so each has its own :class:`storage.holds.Holds`. A hold on messages
is placed at the shard that holds each message; a hold on an account (a debugging window, or a lawful order
naming an account) at every shard, one hold id per shard - in this process, or on every worker of a cluster
(through ``engine.cluster.shards`` and ``engine.cluster.cluster_shards``). Every placement, read, release and expiry is in the
audit log with who, why, reference and until (``storage.audit``).

Placing is idempotent by key (``idempotency_key``, the control port's ``Idempotency-Key``): each shard
keeps, with the hold it placed, keyed hashes of the key and of what was asked (``storage.pseudonyms.keyed_hash``,
as the customer API keeps its answers, so the key itself is never stored), and the same request again
answers that hold. It is kept by each shard, not by the HTTP port, because a cluster's placement can
reach only some workers: asked again, those that placed it answer their hold and the others place it.

A lawful order's holds share an ``order_id`` (``ord_…``, made here and given to every shard), by which
its notice finds all of them and no others (``OrderNoticeDesk.order_of``).

A lawful order whose placement reached only some workers of a cluster gets no notice (its notice is
given once, when the whole order stands): the 503 says so, names the order and what to do
(``lawful_notice.incomplete_help``: with its Idempotency-Key, place it again, which completes the
placement and gives the notice once); its holds read notice state ``placement_incomplete`` on
``GET /v1/holds`` and their disclosure is refused until then.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from typing import Any

import msgpack

from engine.credentials import require_active
from engine.errors import (
    ClusterUnavailable,
    HoldEnded,
    InputError,
    InvalidTransition,
    StorageError,
    UnknownAccount,
)
from engine.lawful_notice import check_order_fields, incomplete_help
from storage.holds import HoldKind, new_order_id
from storage.pseudonyms import keyed_hash

log = logging.getLogger(__name__)

TRAIL_PAGE = 1000  # hold audit entries per question when the embedding API reads a whole trail
SECRET = "hold_requests"  # the key ring's HMAC secret for placement keys (storage.pseudonyms.keyed_hash)


def _order_id(request: list[bytes] | None) -> str:
    """A new lawful order's id, given to each of its holds on every shard. Placed with an
    ``Idempotency-Key``, it is derived from the key's keyed hash, so a placement asked again (completing
    one that reached only some workers) gives the holds it places now the same order id as those placed
    the first time; without a key, a random one."""
    if request is None:
        return new_order_id()
    return "ord_" + hashlib.sha256(b"lawful-order:" + bytes(request[0])).hexdigest()[:16]


class OpenedTrail:
    """A POP's audit log as an auditor reads it: each entry's sealed hold notes (reason, reference)
    opened, or ``"shredded"`` once the hold's notes key is gone."""

    def __init__(self, log: Any, holds: Any) -> None:
        self._log = log
        self._holds = holds

    def iter_entries(self, since: float | None = None) -> Iterator[Any]:
        for entry in self._log.iter_entries(since):
            yield entry._replace(detail=self._holds.open_notes(entry.detail))


class _RemoteTrail:
    """The hold audit entries of every worker of a cluster, read through ``ShardQuery`` with the short
    stats deadline, a page at a time (each worker answers at most a page: ``engine.audit_pages``);
    ``missing`` names the workers whose entries the last read lacks (node -> why), so the answer can
    say it is partial (``GET /v1/audit``: ``workers_missing``). The workers name each account by the
    core's pseudonym; ``naming`` (``engine.core_names.CoreNaming``) adds the id of an account that
    exists, as one process shows it."""

    def __init__(self, shards: Any, naming: Any = None) -> None:
        self._shards = shards
        self._naming = naming
        self.missing: dict[str, str] = {}

    def page(self, since: float | None, until: float, limit: int,
             about: tuple[str, str] | None = None) -> list[Any]:
        """The first ``limit`` entries at or after ``since`` and before ``until`` (about one account
        with ``about``), in time order; ``missing`` says whose are not among them."""
        from storage.audit import AuditEntry

        rows, self.missing = self._shards.hold_audit_page(since, until, limit, about)
        entries = [AuditEntry(*row) for row in rows]
        return self._naming.entries(entries) if self._naming is not None else entries

    def iter_entries(self, since: float | None = None) -> Iterator[Any]:
        """Every entry at or after ``since`` (the embedding API's ``audit_trails()``), a page of
        ``TRAIL_PAGE`` per question; ``missing`` gathers every page's missing workers."""
        from engine.audit_pages import page_end

        missing: dict[str, str] = {}
        while True:
            rows = self.page(since, math.inf, TRAIL_PAGE + 1)
            missing.update(self.missing)
            self.missing = missing
            shown, since = page_end(rows, TRAIL_PAGE, lambda e: e.ts)
            yield from shown
            if since is None:
                return


class HoldManager:
    """Mixed into :class:`engine.Engine`; needs ``self.runtime``. The holds live with the POP shards that
    keep the bodies - in this process, or on the workers of a cluster (``runtime.shards``)."""

    def place_hold(self, kind: str, *, actor: str, reason: str, reference: str, until: float,
                   message_ids: list[str] | None = None, account_id: str | None = None,
                   idempotency_key: str | None = None, authority: str | None = None,
                   notice_not_permitted: dict | None = None) -> dict:
        """Place a legal hold, a debugging window or a lawful order: ``{"holds": [...], "replayed":
        bool}``. With ``idempotency_key``, the same request again answers the holds it placed
        (``replayed`` when no shard placed one now) and places it only where it was not placed yet;
        the key with another kind, reason, reference, until, messages, account, authority or waiver
        is ``HoldConflict``. A lawful order states its ``authority`` (``engine.lawful_notice``) and
        mails its account holders a notice, unless ``notice_not_permitted`` (``{reason, reference}``)
        records why it may not; ``notice`` in the answer says which (asked again: the notice given
        the first time, never a second one)."""
        try:
            kind = HoldKind(kind)
        except ValueError:
            raise InputError(f"hold kind is one of {', '.join(k.value for k in HoldKind)}") from None
        if kind == HoldKind.LAWFUL_ORDER:
            check_order_fields(authority, notice_not_permitted, reference)
        elif authority is not None or notice_not_permitted is not None:
            raise InputError("authority and notice_not_permitted belong to a lawful order")
        message_ids = list(message_ids or [])
        request = None
        if idempotency_key is not None:
            secret = self.runtime.local_secret(SECRET)
            asked = msgpack.packb([kind.value, reason, reference, until, message_ids, account_id,
                                   authority, notice_not_permitted])
            request = [keyed_hash(idempotency_key.encode(), secret), keyed_hash(asked, secret)]
        if account_id is not None:
            record = self.runtime.accounts.get(account_id)  # UnknownAccount if there is none
            if kind == HoldKind.DEBUG_WINDOW:
                require_active(record)  # the customer's own opt-in: a change of settings
        covered = {account_id: 0} if account_id is not None else {}
        order_id = _order_id(request) if kind == HoldKind.LAWFUL_ORDER else ""
        # the account as the core names it, kept with each hold: a worker's own pseudonym differs
        subject = self.runtime.pseudonyms.pseudonym(account_id) if account_id is not None else ""
        try:
            placed = self._place(kind, actor, reason, reference, until, message_ids, account_id,
                                 request, order_id, subject, covered)
        except ClusterUnavailable as exc:
            if kind != HoldKind.LAWFUL_ORDER:
                raise
            raise ClusterUnavailable(f"{exc.message}; {incomplete_help(order_id, request is not None)}"
                                     ) from exc
        replayed = [hold.pop("replayed") for hold in placed]
        answer = {"holds": placed, "replayed": bool(replayed) and all(replayed)}
        if kind == HoldKind.LAWFUL_ORDER:
            answer["notice"] = self._give_notice(
                placed, covered, account_id, actor=actor, authority=authority, reference=reference,
                until=until, not_permitted=notice_not_permitted)
        return answer

    def _place(self, kind: HoldKind, actor: str, reason: str, reference: str, until: float,
               message_ids: list[str], account_id: str | None, request: list[bytes] | None,
               order_id: str, subject: str, covered: dict[str, int]) -> list[dict]:
        """Every shard concerned places the hold (``covered`` gains the accounts of the messages)."""
        shards = self.runtime.shards
        if message_ids:
            for mid, rec in zip(message_ids, shards.find_records(message_ids), strict=True):
                if rec is None:
                    raise UnknownAccount(f"no message {mid}")
                covered[rec.account_id] = covered.get(rec.account_id, 0) + 1
            target = account_id if kind != HoldKind.LEGAL_HOLD else None
            placed = shards.place_hold(kind.value, actor, reason, reference, until, message_ids,
                                       target, request, order_id, subject if target else "")
        elif account_id is not None and kind != HoldKind.LEGAL_HOLD:
            placed = shards.place_hold(kind.value, actor, reason, reference, until, [], account_id,
                                       request, order_id, subject)
        else:
            raise InputError("a legal hold names message_ids; a debug window or order an account")
        return placed

    def _give_notice(self, placed: list[dict], covered: dict[str, int], account_id: str | None,
                     **order: Any) -> dict:
        """The order's notice (``engine.lawful_notice``); if it cannot be queued (a full outbox, an
        account erased meanwhile) the order is released again and the error raised: an order stands
        only with its notice given or waived. Asked again with its Idempotency-Key, holds that have
        their notice already are not noticed twice: only those placed without one (a retry after a
        partial placement) are, and a replay answers the notice the first request gave (a released
        hold, e.g. one whose notice could not be queued, is never noticed)."""
        desk = self._order_notices()
        hold_ids = [h["hold_id"] for h in placed
                    if h["ended_at"] is None and desk.store.get(h["hold_id"]) is None]
        if not hold_ids:  # a replay: the answer the first request got
            first = desk.store.get(placed[0]["hold_id"]) if placed else None
            return None if first is None else {"state": first.public()["state"],
                                               "mails": len(first.mail_ids)}
        try:
            return desk.give(hold_ids, covered, whole_account=account_id, **order)
        except Exception:
            for hold_id in hold_ids:
                self.runtime.shards.release_hold(hold_id, order["actor"],
                                                 "the holder's notice could not be queued")
            raise

    def give_notice_again(self, hold_id: str, *, actor: str, authority: str | None,
                          notice_not_permitted: dict | None = None) -> dict:
        """Give the notice of lawful order ``hold_id`` again, or record that it is not permitted, when
        it is stuck: never given (placed before notices existed) or left the outbox unsent (refused,
        expired) or was only logged (no mail server: ``not_delivered``; given again once one is
        configured, else ``MailNotConfigured``). For every hold of the order (its other POP shards);
        audited. ``{"hold_ids", "notice"}``; ``UnknownAccount`` for an unknown hold, ``HoldEnded`` for one released or expired
        (as a disclosure: the id is right, asking again cannot help), ``InvalidTransition`` for a hold
        that is not a lawful order or a notice that is not stuck (``engine.lawful_notice``)."""
        active = self.runtime.shards.active_holds()
        hold = next((h for h in active if h["hold_id"] == hold_id), None)
        if hold is None:
            if self.runtime.shards.hold_ended(hold_id):
                raise HoldEnded(f"{hold_id} ended (released or expired): no notice is given for it")
            raise UnknownAccount(f"no hold {hold_id}")
        if hold["kind"] != HoldKind.LAWFUL_ORDER:
            raise InvalidTransition(f"{hold_id} is a {hold['kind']}: only a lawful order has a notice")
        check_order_fields(authority, notice_not_permitted, hold["reference"])
        desk = self._order_notices()
        with desk.lock:
            desk.require_stuck(hold_id)
            if notice_not_permitted is None:
                desk.require_mail_server()
            order = desk.order_of(hold, [h for h in active if h["kind"] == HoldKind.LAWFUL_ORDER])
            covered = self._holders_of(order)
            hold_ids = [h["hold_id"] for h in order]
            notice = desk.give(hold_ids, covered, whole_account=hold["account_id"], actor=actor,
                               authority=authority, reference=hold["reference"],
                               until=hold["until"], not_permitted=notice_not_permitted, again=True)
        return {"hold_ids": hold_ids, "notice": notice}

    def _holders_of(self, order: list[dict]) -> dict[str, int]:
        """Who a lawful order's notice goes to again (account -> how many of its messages the order
        names): the account it names and the holders each hold kept when it was placed, so the
        messages' records need not be there any more (swept after 90 days, the order lasts up to a
        year). A hold of an older version, without holders, asks the records as before. Accounts that
        no longer exist (erased, or closed and swept) have no holder left to tell and are left out."""
        covered = {h["account_id"]: 0 for h in order if h["account_id"]}
        for h in order:
            for account, count in h.get("holders") or ():
                covered[account] = covered.get(account, 0) + count
        older = [m for h in order if not h.get("holders") for m in h["message_ids"]]
        for rec in self.runtime.shards.find_records(older) if older else []:
            if rec is not None:
                covered[rec.account_id] = covered.get(rec.account_id, 0) + 1
        return {account: count for account, count in covered.items() if self._exists(account)}

    def _exists(self, account_id: str) -> bool:
        try:
            self.runtime.accounts.get(account_id)
        except UnknownAccount:
            return False
        return True

    def _order_notices(self) -> Any:
        privacy = getattr(self, "privacy", None)
        if privacy is None:
            raise StorageError("no mail service to notify the account holder of a lawful order")
        return privacy.order_notices

    def release_hold(self, hold_id: str, *, actor: str, reason: str) -> dict:
        """End a hold now. A lawful order whose notice is still queued: once its last active hold is
        released its notice is withdrawn (``OrderNoticeDesk.withdraw``); the order's holds are listed
        before the release, so a cluster that cannot list them refuses before anything is done."""
        desk = getattr(getattr(self, "privacy", None), "order_notices", None)
        pending = desk is not None and (desk.state(hold_id) or {}).get("state") == "queued"
        orders = ([h for h in self.runtime.shards.active_holds()
                   if h["kind"] == HoldKind.LAWFUL_ORDER and h["hold_id"] != hold_id]
                  if pending else [])
        released = self.runtime.shards.release_hold(hold_id, actor, reason)
        if released is None:
            raise UnknownAccount(f"no hold {hold_id}")
        if pending and released["kind"] == HoldKind.LAWFUL_ORDER:
            try:
                desk.withdraw(released, orders, actor)
            except Exception:  # the hold is released all the same: say so, and that the mail may go
                log.exception("a released lawful order's queued notice could not be withdrawn",
                              extra={"hold": hold_id})
        return released

    def close_debug_windows(self, account_id: str, *, actor: str,
                            reason: str = "customer closed the window") -> dict[str, Any]:
        """End the account's debugging windows now (``DELETE /v1/debug-window``): ``{"closed": how
        many ended}``, in a cluster also ``workers_missing`` (node -> why): the workers that did not
        answer within the short stats deadline, whose windows may still be open - asking again is
        safe and ends them (``ClusterShards.close_debug_windows``)."""
        return self.runtime.shards.close_debug_windows(account_id, actor, reason)

    def read_held_body(self, hold_id: str, message_id: str, *, actor: str) -> str:
        """The exception's own path to a held body (audit-logged). Under a lawful order only once its
        account holders' notice was sent or recorded as not permitted (``engine.lawful_notice``)."""
        hold = next((h for h in self.runtime.shards.active_holds() if h["hold_id"] == hold_id), None)
        if hold is not None and hold["kind"] == HoldKind.LAWFUL_ORDER:
            self._order_notices().require_notice(hold_id, hold.get("order_id") or "")
        body = self.runtime.shards.read_held_body(hold_id, message_id, actor)
        if body is None:
            raise UnknownAccount(f"no hold {hold_id}")
        return body

    def active_holds(self) -> list[dict]:
        """Every active hold; a lawful order's with its ``notice`` (``OrderNoticeDesk.state``)."""
        return self._with_notices(self.runtime.shards.active_holds())

    def holds_view(self) -> dict[str, Any]:
        """``GET /v1/holds``: :meth:`active_holds` as a view - in a cluster the workers are asked with
        the short stats deadline and those that did not answer are named in ``holds_missing`` (before:
        one hung worker held the answer 30 s and failed it)."""
        view = self.runtime.shards.holds_view()
        return {**view, "holds": self._with_notices(view["holds"])}

    def _with_notices(self, holds: list[dict]) -> list[dict]:
        if any(h["kind"] == HoldKind.LAWFUL_ORDER for h in holds):
            desk = self._order_notices()
            holds = [{**h, "notice": desk.state(h["hold_id"], h.get("order_id") or "")}
                     if h["kind"] == HoldKind.LAWFUL_ORDER else h for h in holds]
        return holds

    def audit_trails(self) -> dict[str, list[Any]]:
        """The engine's audit logs by kind: data-subject and account actions (``data_subject``, the core
        log) and retention exceptions (``retention_exception``, one log per POP shard)."""
        runtime = self.runtime
        if runtime.placement.runs_pops:
            trails = [OpenedTrail(runtime.audits[pop], holds) for pop, holds in runtime.holds.items()]
        else:
            from engine.core_names import CoreNaming

            trails = [_RemoteTrail(runtime.shards, CoreNaming(runtime.pseudonyms.pseudonym,
                                                              runtime.accounts.id_by_token))]
        return {"data_subject": [runtime.core_audit], "retention_exception": trails}

    def retention_status(self) -> dict[str, Any]:
        """The retention table, what each sweep removed, alarms, and the active exceptions (in a
        cluster, each worker's sweeper too, under ``workers``). A view: in a cluster the workers are
        asked with the short stats deadline, and those that do not answer are named
        (``workers_missing``, ``holds_missing``) instead of holding the answer 30 s and failing it
        (``ClusterShards.retention_view``)."""
        stats = self.runtime.sweeper.proxy().stats().get(timeout=10)
        shards = self.runtime.shards.retention_view()
        return {**stats, **shards, "holds": self._with_notices(shards["holds"])}

    def sweep_now(self) -> dict[str, Any]:
        """Run every retention sweep now (operators and tests), on every worker too."""
        done = self.runtime.sweeper.proxy().sweep_now().get(timeout=60)
        if not self.runtime.placement.runs_pops:
            done = {**done, "workers": self.runtime.shards.sweep_now()}
        return done
