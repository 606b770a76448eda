"""The embedded Engine end to end: thousands of messages through three POPs and failing carriers, typed
submit errors, deposits, and a restart with messages still open.

Carriers are the simulated ones with small latencies but every kind of failure, so retries, failovers,
response timeouts and expiries all happen. Tests wait on events with a deadline; nothing sleeps.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import wait

import pytest

from engine import Engine
from engine import messages as m
from engine.bridge import Bridge, InFlightGate
from engine.config import deep_merge, default_document
from engine.errors import (
    AccountRestricted,
    AuthError,
    BodyTooLarge,
    InputError,
    InsufficientBalance,
    InvalidBody,
    InvalidNumber,
    NoRoute,
    OverloadedError,
    StoreFull,
    UnknownSender,
)
from engine.status import FINAL
from storage.ledger import DEBIT, REFUND

DEADLINE = 60.0  # seconds: an upper bound for conditions to become true, not an expected duration
DESTINATIONS = ["+4915112345678", "+6591234567", "+5511987654321", "+447400123456", "+12025550123"]
FAILING_MIX = {"delivered": 0.78, "undeliverable": 0.05, "rejected": 0.04, "expired": 0.03,
               "throttled": 0.05, "no_answer": 0.05}


def overrides(carrier: dict, engine: dict | None = None) -> dict:
    """Every default carrier with the keys of ``carrier`` replacing its own (a distribution or an
    outcome mix replaces the default one whole), plus ``[engine]`` settings."""
    carriers = {name: {**table, **carrier} for name, table in default_document()["carriers"].items()}
    return {"carriers": carriers, "engine": {"tick_ms": 50, **(engine or {})}}


FAST_FAILING = overrides(
    {"latency": {"distribution": "uniform", "min_ms": 0, "max_ms": 3},
     "receipt_delay": {"distribution": "uniform", "min_ms": 1, "max_ms": 30},
     "late_receipt_rate": 0.0, "duplicate_receipt_rate": 0.05, "window": 200, "throughput": 0,
     "outcomes": FAILING_MIX},
    {"resp_timeout_seconds": 0.5, "default_validity_seconds": 5, "expiry_grace_seconds": 0.5,
     "retry_window_seconds": 3, "retry_base_ms": 5, "retry_cap_ms": 50})
FAST_DELIVERING = overrides({"latency": {"distribution": "fixed", "ms": 0},
                             "receipt_delay": {"distribution": "fixed", "ms": 1},
                             "late_receipt_rate": 0.0, "duplicate_receipt_rate": 0.0,
                             "throughput": 0, "outcomes": {"delivered": 1.0}})
SILENT = overrides({"outcomes": {"no_answer": 1.0}}, {"resp_timeout_seconds": 600})


class Finals:
    """Counts status events per message and lets a test wait until a set of messages is final."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.final: dict[str, list[str]] = {}
        self.accepted: Counter[str] = Counter()
        self.lagging: list[str] = []  # final events whose status was not yet readable from the store
        self.want: set[str] = set()
        self.done = threading.Event()

    def __call__(self, item: m.StatusItem) -> None:
        if item.status not in FINAL:
            with self.lock:
                self.accepted[item.message_id] += 1
            return
        if self.engine is not None:
            rec = self.engine.status(item.message_id)
            if rec is None or rec.status != item.status:
                self.lagging.append(item.message_id)
        with self.lock:
            self.final.setdefault(item.message_id, []).append(item.status)
            if self.want and self.want <= self.final.keys():
                self.done.set()

    def expect(self, message_ids) -> None:
        with self.lock:
            self.want = set(message_ids)
            if self.want <= self.final.keys():
                self.done.set()


@pytest.fixture
def start_engine(tmp_path):
    engines: list[Engine] = []

    def start(config: dict, data_dir=None) -> Engine:
        engine = Engine.start(data_dir or tmp_path / "data", overrides=config)
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        engine.stop(drain_seconds=0)


def customer(engine: Engine, usd: str = "1000", senders=("ACME",)):
    acct = engine.create_account(email="dev@example.com")
    for sender in senders:
        engine.register_sender(acct.id, sender)
    if usd:
        engine.deposit(acct.id, usd=usd, chain="tron", tx_hash=f"0x{acct.id}", from_address="TAddr")
    return acct


def synced_balance(engine: Engine, account_id: str) -> int:
    """The balance once every debit the ledger has received is written (a deposit writes them first),
    not counting the 1 USD deposit used to get there (which stays on the account)."""
    after = engine.deposit(account_id, usd="1", chain="sync", tx_hash=f"sync-{time.monotonic_ns()}",
                           from_address="TSync")
    assert engine.balance(account_id) == after
    return after - 1_000_000


def test_thousands_of_messages_each_reach_exactly_one_final_status_and_are_billed_once(start_engine):
    engine = start_engine(FAST_FAILING)
    acct = customer(engine)
    finals = Finals(engine)
    engine.on_status(finals)
    futures = [engine.submit_future(acct.api_key, to=DESTINATIONS[i % len(DESTINATIONS)],
                                    sender="ACME", body=f"Your code is {i:06d}" + "!" * (i % 200))
               for i in range(3000)]
    done, not_done = wait(futures, timeout=DEADLINE)
    assert not not_done
    accepted = [f.result() for f in futures]
    ids = [a.message_id for a in accepted]
    assert len(set(ids)) == 3000
    assert {a.pop for a in accepted} == {"fra", "sin", "gru"}
    finals.expect(ids)
    assert finals.done.wait(DEADLINE), f"{len(set(ids) - finals.final.keys())} messages never final"

    assert all(len(finals.final[i]) == 1 for i in ids), "a message reached two final statuses"
    assert all(finals.accepted[i] == 1 for i in ids)
    outcomes = Counter(s for i in ids for s in finals.final[i])
    assert set(outcomes) == {"delivered", "rejected", "failed", "expired"}
    assert finals.lagging == [], "status events were emitted before the status was durable"
    assert all(engine.status(i).status == finals.final[i][0] for i in ids)

    # billed once each; refunded once each exactly when no carrier ever acknowledged any part
    records = {i: engine.status(i) for i in ids}
    never_acked = {i for i, r in records.items() if r.refunded_micro_usd}
    assert never_acked and never_acked < set(ids)
    assert all(records[i].status in ("failed", "rejected") for i in never_acked)
    assert all(not records[i].carrier_acked_at and not any(records[i].carrier_ids)
               for i in never_acked)
    assert all(records[i].status not in ("delivered", "expired") for i in never_acked)
    total = sum(a.price_micro_usd for a in accepted)
    refunded = sum(records[i].price_micro_usd for i in never_acked)
    assert synced_balance(engine, acct.id) == 1_000_000_000 - total + refunded
    entries = list(engine.runtime.ledger_store.entries(acct.id))
    debits = [e for e in entries if e.kind == DEBIT]
    assert sorted(e.reference for e in debits) == sorted(ids)
    assert all(e.amount_micro_usd == -a.price_micro_usd
               for e, a in zip(sorted(debits, key=lambda e: e.reference),
                               sorted(accepted, key=lambda a: a.message_id), strict=True))
    refunds = [e for e in entries if e.kind == REFUND]
    assert sorted(e.reference for e in refunds) == sorted(never_acked)
    assert all(e.amount_micro_usd == records[e.reference].price_micro_usd for e in refunds)

    stats = engine.stats()
    assert stats["in_flight"] == 0
    pops = {p["pop"]: p for p in stats["pops"]}
    assert all(pops[p]["accepted"] > 0 for p in ("fra", "sin", "gru"))
    assert sum(p["retries"] for p in pops.values()) > 0
    assert sum(p["failovers"] for p in pops.values()) > 0
    assert sum(p["resp_timeouts"] for p in pops.values()) > 0


@pytest.fixture
def engine(start_engine):
    return start_engine(FAST_DELIVERING)


def submit_error(engine: Engine, api_key: str, to: str = "+4915112345678", sender: str = "ACME",
                 body: str = "Hi"):
    with pytest.raises(Exception) as info:
        engine.submit(api_key, to=to, sender=sender, body=body, timeout=DEADLINE)
    return info.value


def test_an_unknown_api_key_is_refused_with_auth_error(engine):
    customer(engine)
    assert type(submit_error(engine, "sk_live_" + "x" * 43)) is AuthError


def test_an_unregistered_sender_is_refused_with_unknown_sender(engine):
    acct = customer(engine)
    assert type(submit_error(engine, acct.api_key, sender="OTHER")) is UnknownSender


def test_a_sender_id_or_an_email_address_with_a_trailing_newline_is_refused(engine):
    """Python's ``$`` also matches before a final newline: the checks take the whole string, so an
    SMPP source address or a mail header never carries one."""
    with pytest.raises(InputError):
        engine.create_account(email="dev@example.com\n")
    acct = customer(engine, usd="")
    for sender in ("ACME\n", "12345\n"):
        with pytest.raises(InputError):
            engine.register_sender(acct.id, sender)
    with pytest.raises(InputError):
        engine.rectify_account(acct.id, email="ops@example.com\n", actor="test")


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"limit": 10**6}, {"limit": "5"}, {"cursor": "zzz"},
                                    {"statuses": ["bogus"]}, {"statuses": "delivered"},
                                    {"since": "yesterday"}, {"until": -1}])
def test_a_listing_outside_the_documented_bounds_is_a_typed_error(engine, kwargs):
    """The customer API checks these before it asks; an embedding host gets the same rules as an
    InputError (before: a ValueError from deep inside, or a silently empty page)."""
    acct = customer(engine)
    with pytest.raises(InputError):
        engine.messages(acct.id, **kwargs)


def test_restricting_takes_a_bool_and_a_batch_entry_must_be_a_submission(engine):
    acct = customer(engine)
    with pytest.raises(InputError):
        engine.restrict_account(acct.id, "no")  # (a truthy string would restrict)
    [refused, accepted] = engine.submit_many(acct.api_key, ["not a submission", {
        "to": "+4915112345678", "sender": "ACME", "body": "hi"}])
    assert isinstance(refused.exception(timeout=10), InputError)
    assert accepted.result(timeout=30).message_id


def test_the_embedding_api_refuses_what_the_http_api_refuses(engine):
    """An embedding host gets the same rules as an HTTP client: no control characters in client_ref,
    amounts in the plain decimal form and below a billion USD (a typed error, not an OverflowError)."""
    acct = customer(engine)
    for ref in ("a\nb", "a\x7fb", "a\x85b", "a\x9bb"):  # C0, DEL, C1 (NEL; CSI starts terminal escapes)
        with pytest.raises(InputError):
            engine.submit(acct.api_key, "+4915112345678", "ACME", "hi", client_ref=ref)
    assert engine.submit(acct.api_key, "+4915112345678", "ACME", "hi", client_ref="Zoë-№1").message_id
    for usd in ("1e3", "100000000000000000000"):
        with pytest.raises(InputError):
            engine.deposit(acct.id, usd=usd, chain="tron", tx_hash=f"0x{usd}", from_address="TAddr")


@pytest.mark.parametrize("to", ["4915112345678", "+49 151 12345678", "+4915112345678999", "+499"])
def test_an_invalid_destination_is_refused_with_invalid_number(engine, to):
    acct = customer(engine)
    assert type(submit_error(engine, acct.api_key, to=to)) is InvalidNumber


def test_an_empty_body_is_refused_with_invalid_body(engine):
    acct = customer(engine)
    assert type(submit_error(engine, acct.api_key, body="")) is InvalidBody


@pytest.mark.parametrize("length", [1531, 100_000])  # 11 segments; and far beyond any limit
def test_a_body_over_the_segment_limit_is_refused_with_body_too_large(engine, length):
    acct = customer(engine)
    assert type(submit_error(engine, acct.api_key, body="a" * length)) is BodyTooLarge


def test_a_balance_below_the_price_is_refused_with_insufficient_balance(engine):
    acct = customer(engine, usd="0.1")  # 100,000 micro-USD: one DE segment (75,000) but not two
    engine.submit(acct.api_key, to="+4915112345678", sender="ACME", body="Hi")
    assert type(submit_error(engine, acct.api_key)) is InsufficientBalance
    assert synced_balance(engine, acct.id) == 25_000


def test_a_destination_no_route_serves_is_refused_with_no_route(engine):
    acct = customer(engine)
    assert type(submit_error(engine, acct.api_key, to="+27821234567")) is NoRoute


def test_a_restricted_account_is_refused_until_the_restriction_is_lifted(engine):
    acct = customer(engine)
    engine.submit(acct.api_key, to="+4915112345678", sender="ACME", body="Hi")  # session running
    engine.restrict_account(acct.id)
    assert type(submit_error(engine, acct.api_key)) is AccountRestricted
    engine.restrict_account(acct.id, restricted=False)
    assert engine.submit(acct.api_key, to="+4915112345678", sender="ACME", body="Hi").pop == "fra"


def test_a_full_in_flight_gate_refuses_with_overloaded_error(start_engine):
    engine = start_engine(deep_merge(SILENT, {"engine": {"max_in_flight": 1}}))
    acct = customer(engine)
    engine.submit(acct.api_key, to="+4915112345678", sender="ACME", body="Hi")
    with pytest.raises(OverloadedError):
        engine.submit_future(acct.api_key, to="+4915112345678", sender="ACME", body="Hi")


def test_a_refused_submit_gives_its_in_flight_slot_back(start_engine):
    engine = start_engine(deep_merge(SILENT, {"engine": {"max_in_flight": 1}}))
    acct = customer(engine)
    for _ in range(3):
        assert type(submit_error(engine, acct.api_key, to="+27821234567")) is NoRoute
    assert engine.submit(acct.api_key, to="+4915112345678", sender="ACME", body="Hi").pop == "fra"


def test_a_deposit_given_as_a_float_is_refused(engine):
    acct = customer(engine, usd="")
    with pytest.raises(InputError):
        engine.deposit(acct.id, usd=10.5, chain="tron", tx_hash="0x1", from_address="T")
    assert engine.balance(acct.id) == 0


def test_a_deposit_is_idempotent_on_chain_and_tx_hash(engine):
    acct = customer(engine, usd="")
    assert engine.deposit(acct.id, usd="12.5", chain="tron", tx_hash="0xabc", from_address="T") \
        == 12_500_000
    assert engine.deposit(acct.id, usd="12.5", chain="tron", tx_hash="0xabc", from_address="T") \
        == 12_500_000
    assert engine.deposit(acct.id, usd="1", chain="eth", tx_hash="0xabc", from_address="E") \
        == 13_500_000
    assert engine.balance(acct.id) == 13_500_000


def test_a_deposit_raises_what_a_session_may_spend(engine):
    acct = customer(engine, usd="")
    assert type(submit_error(engine, acct.api_key)) is InsufficientBalance
    engine.deposit(acct.id, usd="1", chain="tron", tx_hash="0xfund", from_address="T")
    assert engine.submit(acct.api_key, to="+4915112345678", sender="ACME", body="Hi").pop == "fra"


def test_open_messages_resume_after_a_restart_and_the_balance_is_unchanged(start_engine, tmp_path):
    data = tmp_path / "restart"
    first = start_engine(overrides({"latency": {"distribution": "fixed", "ms": 600_000},
                                     "outcomes": {"delivered": 1.0}},
                                    {"resp_timeout_seconds": 600, "default_validity_seconds": 3600}),
                         data)
    acct = customer(first)
    accepted = [first.submit(acct.api_key, to=DESTINATIONS[i % len(DESTINATIONS)], sender="ACME",
                             body=f"message {i}") for i in range(60)]
    ids = [a.message_id for a in accepted]
    balance = synced_balance(first, acct.id)
    assert balance == 1_000_000_000 - sum(a.price_micro_usd for a in accepted)
    assert all(first.status(i).status == "accepted" for i in ids)
    first.stop(drain_seconds=0)

    second = start_engine(FAST_DELIVERING, data)
    finals = Finals()
    second.on_status(finals)
    finals.expect([i for i in ids if second.status(i).status == "accepted"])  # the rest: already final
    assert finals.done.wait(DEADLINE)
    assert Counter(second.status(i).status for i in ids) == {"delivered": len(ids)}, \
        [second.status(i).error for i in ids if second.status(i).status != "delivered"]
    assert all(len(v) == 1 for v in finals.final.values())
    assert second.balance(acct.id) == balance + 1_000_000  # + the sync deposit
    assert second.stats()["in_flight"] == 0
    debits = [e.reference for e in second.runtime.ledger_store.entries(acct.id) if e.kind == DEBIT]
    assert sorted(debits) == sorted(ids)


# --- the bridge between actors and host threads (no engine needed) --------------------------------


def test_the_in_flight_gate_never_exceeds_its_limit_and_never_goes_below_zero():
    gate = InFlightGate(2)
    assert gate.try_acquire() and gate.try_acquire() and not gate.try_acquire()
    assert gate.in_flight == 2
    gate.release(5)
    assert gate.in_flight == 0
    gate.force_acquire(3)  # resumed messages are already accepted: they may exceed the limit
    assert gate.in_flight == 3 and not gate.try_acquire()


def test_the_bridge_turns_a_rejection_into_the_typed_error_and_frees_the_slot():
    gate = InFlightGate(1)
    bridge = Bridge(gate)
    assert gate.try_acquire()
    rid, fut = bridge.new_request(holds_slot=True)
    bridge.tell(m.encode(m.SubmitRejected(rid, "no_route", "nothing serves ZA")))
    with pytest.raises(NoRoute, match="nothing serves ZA"):
        fut.result(0)
    assert gate.in_flight == 0 and bridge.pending_requests() == 0


def test_a_rejected_request_that_holds_no_slot_does_not_free_someone_elses():
    gate = InFlightGate(2)
    bridge = Bridge(gate)
    assert gate.try_acquire()  # a message in flight
    rid, fut = bridge.new_request()  # e.g. a deposit: takes no slot
    bridge.tell(m.encode(m.SubmitRejected(rid, "store_full", "ledger full")))
    with pytest.raises(StoreFull):
        fut.result(0)
    assert gate.in_flight == 1


def test_the_bridge_drops_malformed_replies_and_survives_a_raising_callback():
    gate = InFlightGate(5)
    bridge = Bridge(gate)
    seen = []
    bridge.on_status(lambda item: 1 / 0)
    bridge.on_status(seen.append)
    bridge.tell(b"\xc1garbage")
    gate.force_acquire(2)
    items = [m.StatusItem(f"msg_{i}", "acc", s, 0.0, "fra", "c", "DE", 1, 1, "", None)
             for i, s in enumerate(["accepted", "delivered", "failed"])]
    bridge.tell(m.encode(m.StatusesChanged(items)))
    assert seen == items and gate.in_flight == 0


def test_a_reply_conversion_error_reaches_the_caller_instead_of_vanishing():
    bridge = Bridge(InFlightGate(1))
    rid, fut = bridge.new_request(lambda reply: reply.no_such_field)
    bridge.tell(m.encode(m.CreditApplied(rid, "acc", 5, False)))
    with pytest.raises(AttributeError):
        fut.result(0)


def test_a_replaced_routing_table_survives_a_restart(start_engine, tmp_path):
    data = tmp_path / "routing"
    first = start_engine(FAST_DELIVERING, data)
    table = first.routing_table()
    for route in table["routes"]:
        if "DE" in route["match"]:  # send DE through the second carrier only
            route["carriers"] = [c for c in route["carriers"] if c["carrier"] == "fra-vodafone"]
    first.replace_routing(table)
    first.stop()
    second = start_engine(FAST_DELIVERING, data)
    de = next(r for r in second.routing_table()["routes"] if "DE" in r["match"])
    assert [c["carrier"] for c in de["carriers"]] == ["fra-vodafone"]
    acct = customer(second)
    accepted = second.submit(acct.api_key, to="+4915112345678", sender="ACME", body="Hi")
    wait = time.monotonic() + 10
    while second.status(accepted.message_id).carrier == "" and time.monotonic() < wait:
        time.sleep(0.02)
    assert second.status(accepted.message_id).carrier == "fra-vodafone"


def test_a_lone_debit_is_written_within_moments_without_anyone_asking(start_engine):
    """Debits wait a few ms to share a ledger transaction; a single one must not wait for company (nor
    for the housekeeping tick, set to a minute here so that only the debits' own timer can write it)."""
    from tests.waiting import wait_for

    engine = start_engine({"engine": {"tick_ms": 60_000}})
    acct = customer(engine)
    accepted = engine.submit(acct.api_key, to="+4915112345678", sender="ACME", body="Hi")

    def debited() -> bool:  # read the store directly: engine.balance() would flush the ledger first
        return any(e.kind == DEBIT and e.reference == accepted.message_id
                   for e in engine.runtime.ledger_store.entries(acct.id))

    wait_for(debited, "the debit in the ledger store", 2)
