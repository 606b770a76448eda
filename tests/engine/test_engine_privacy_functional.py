"""The privacy policy through the embedding API: what is on disk, retention exceptions, subject rights."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engine import Engine, messages
from engine.errors import AccountRestricted, AuthError, HoldEnded
from tests.engine.crash_support import delivering_carriers

TOS = ["+4915112345678", "+6591234567", "+5511987654321"]


class Finals:
    """Collects final statuses; ``wait(ids)`` blocks until all of them are final (with a deadline)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.cond = threading.Condition()

    def __call__(self, item) -> None:
        if item.status != "accepted":
            with self.cond:
                self.seen[item.message_id] = item.status
                self.cond.notify_all()

    def wait(self, ids, timeout: float = 30.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: set(ids) <= set(self.seen), timeout), "not final in time"


@pytest.fixture
def engine(tmp_path):
    finals = Finals()
    eng = Engine.start(data_dir=tmp_path / "data", overrides=delivering_carriers(), on_status=finals)
    eng.finals = finals
    yield eng
    eng.stop()


def _account(engine, email="holder@example.com"):
    acc = engine.create_account(email=email)
    engine.register_sender(acc.id, "ACME")
    engine.deposit(acc.id, usd="100", chain="tron", tx_hash=f"0x{acc.id}", from_address="TWallet9")
    return acc


def _send(engine, acc, bodies):
    futs = [engine.submit_future(acc.api_key, TOS[i % 3], "ACME", body) for i, body in enumerate(bodies)]
    ids = [f.result(10).message_id for f in futs]
    engine.finals.wait(ids)
    return ids


def _files_containing(root: Path, needles: list[bytes]) -> list[tuple[str, bytes]]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits.extend((str(path), n) for n in needles if n in data)
    return hits


def test_no_body_email_number_or_api_key_is_readable_in_any_file_of_the_data_dir(engine, tmp_path):
    acc = _account(engine, email="secret-holder@example.com")
    bodies = [f"Your one-time code is PLAINTEXT{i:05d}" for i in range(300)]
    _send(engine, acc, bodies)
    engine.sweep_now()
    needles = [b"PLAINTEXT", b"secret-holder@example.com", b"4915112345678", b"6591234567",
               acc.api_key.encode(), b"TWallet9"]
    assert _files_containing(tmp_path / "data", needles) == []


def test_a_debug_window_keeps_bodies_past_carrier_ack_readable_only_through_the_hold(engine):
    acc = _account(engine)
    placed = engine.place_hold("debug_window", actor="ops:alice", reason="customer ticket 42",
                               reference="TICKET-42", until=time.time() + 3600, account_id=acc.id)
    hold_ids = {h["pop"]: h["hold_id"] for h in placed["holds"]}
    assert set(hold_ids) == {"fra", "sin", "gru"}
    [mid] = _send(engine, acc, ["debug me please"])
    engine.sweep_now()
    rec = engine.status(mid)
    assert rec.carrier_acked_at > 0  # the transient body is gone...
    assert engine.runtime.pop_stores[rec.pop].bodies.get(mid) is None
    body = engine.read_held_body(hold_ids[rec.pop], mid, actor="ops:alice")
    assert body == "debug me please"  # ...but the hold kept its own copy
    actions = [(e.actor, e.action, e.result) for e in engine.runtime.audit_entries()]
    assert ("ops:alice", "read_held_body", "ok") in actions

    engine.release_hold(hold_ids[rec.pop], actor="ops:alice", reason="ticket closed")
    with pytest.raises(HoldEnded):
        engine.read_held_body(hold_ids[rec.pop], mid, actor="ops:alice")


def test_export_gives_everything_held_about_an_account_without_secrets(engine):
    acc = _account(engine)
    ids = _send(engine, acc, ["one", "two"])
    export = engine.export_account(acc.id)
    assert export["account"]["email"] == "holder@example.com"
    assert {m["message_id"] for m in export["messages"]} == set(ids)
    assert all("body" not in m for m in export["messages"])
    assert "key_digests" not in export["account"]
    assert acc.webhook_secret not in repr(export)
    kinds = sorted(e["kind"] for e in export["ledger"])
    assert kinds == ["debit", "debit", "deposit"]


def test_export_also_gives_the_holders_keys_support_correspondence_and_requests_and_no_one_elses(
        engine):
    """Policy 7.1 access/portability covers everything 2.1 lists as collected: the account's API keys
    (metadata, never the key), its support correspondence, and the record of its own privacy
    requests; another account's are not in it."""
    acc, other = _account(engine), _account(engine, email="other@example.com")
    spare = engine.create_api_key(acc.id)
    engine.revoke_api_key(acc.id, spare.id)
    support = engine.privacy.support
    case = support.open("double charge", "SUPPORTMARKER my invoice", opened_by="support:bob",
                        account_id=acc.id)
    support.add_message(case.id, "out", "refunded", "support:bob")
    support.open("other's case", "OTHERMARKER", opened_by="support:bob", account_id=other.id)
    mine = engine.privacy.requests.register(acc.id, "access", actor="privacy:carol")
    engine.privacy.requests.register(other.id, "erasure", actor="privacy:carol")

    export = engine.export_account(acc.id)

    keys = {k["id"]: k for k in export["api_keys"]}
    assert len(keys) == 2 and keys[spare.id]["revoked_at"] and keys[spare.id]["hint"] == spare.hint
    assert spare.api_key not in repr(export) and acc.api_key not in repr(export)
    [exported_case] = export["support_cases"]
    assert exported_case["id"] == case.id
    assert [msg[3] for msg in exported_case["messages"]] == ["SUPPORTMARKER my invoice", "refunded"]
    assert [r["id"] for r in export["privacy_requests"]] == [mine.id]
    assert "OTHERMARKER" not in repr(export) and other.id not in repr(export)


def test_rectification_restriction_and_objection_take_effect(engine):
    acc = _account(engine)
    engine.rectify_account(acc.id, email="new@example.com")
    assert engine.account(acc.id).email == "new@example.com"
    engine.restrict_account(acc.id, True)
    with pytest.raises(AccountRestricted):
        engine.submit(acc.api_key, TOS[0], "ACME", "hello")
    engine.restrict_account(acc.id, False)
    assert engine.submit(acc.api_key, TOS[0], "ACME", "hello").status == "accepted"
    engine.object_to_processing(acc.id, "analytics")
    assert engine.account(acc.id).objections == ["analytics"]


def test_analytics_are_aggregates_without_identifiers_and_skip_objecting_accounts(engine):
    keep = [_account(engine, f"keep{i}@example.com") for i in range(3)]
    objector = _account(engine, "object@example.com")
    for acc in [*keep, objector]:
        _send(engine, acc, [f"m{i}" for i in range(12)])  # 4 per POP's corridor
    before = sum(c["messages"] for c in engine.analytics()["corridors"])
    assert before == 48
    engine.object_to_processing(objector.id, "analytics")
    report = engine.analytics()
    assert sum(c["messages"] for c in report["corridors"]) == 36
    engine.restrict_account(keep[0].id, True)  # restriction stops this processing too...
    assert engine.analytics()["corridors"] == []  # ...and two accounts per group are too few to show
    text = repr(report)
    for secret in (keep[0].id, objector.id, "4915112345678", "keep0@example.com"):
        assert secret not in text


def test_erasure_deletes_the_account_and_records_but_pseudonymises_the_ledger(engine):
    acc = _account(engine)
    _send(engine, acc, ["to be erased"])
    result = engine.erase_account(acc.id)
    assert result["message_records_deleted"] == 1
    with pytest.raises(AuthError):
        engine.submit(acc.api_key, TOS[0], "ACME", "after erasure")
    entries = list(engine.runtime.ledger_store.entries())
    assert entries and all(e.account_id != acc.id for e in entries)
    assert all(e.from_address != "TWallet9" for e in entries)
    token = result["ledger_token"]
    assert sum(e.amount_micro_usd for e in entries if e.account_id == token) == \
        engine.runtime.ledger_store.balance(token)


def test_erasure_while_messages_are_in_flight_leaves_no_record_and_no_ledger_row_behind(tmp_path):
    from tests.engine.crash_support import silent_carriers

    engine = Engine.start(data_dir=tmp_path / "inflight", overrides=silent_carriers())
    try:
        acc = _account(engine)
        futs = [engine.submit_future(acc.api_key, TOS[i % 3], "ACME", f"pending {i}")
                for i in range(300)]
        accepted = [f.result(10).message_id for f in futs]  # durable, never answered by carriers
        result = engine.erase_account(acc.id)
        assert result["message_records_deleted"] == len(accepted)
        # nothing writes a record back later: the POPs no longer hold the messages
        for pop in engine.runtime.directory.pops.values():
            pop.ask(messages.encode(messages.Tick(0.0)))  # a tick and its flush have run
        assert all(engine.status(mid) is None for mid in accepted)
        entries = list(engine.runtime.ledger_store.entries())
        assert len([e for e in entries if e.kind == "debit"]) == len(accepted)
        assert all(e.account_id == result["ledger_token"] for e in entries)
        assert all(e.reference == "" for e in entries)  # message ids and tx hash shredded
        assert engine.runtime.ledger_store.balance(result["ledger_token"]) == \
            sum(e.amount_micro_usd for e in entries)
        assert engine.gate.in_flight == 0  # the erased messages gave their slots back
    finally:
        engine.stop(drain_seconds=0)
