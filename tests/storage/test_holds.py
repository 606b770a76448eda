"""Holds: the three policy exceptions keep a body past its TTL and shredding, only via their own path."""

from __future__ import annotations

import msgpack
import pytest

from engine.errors import CorruptRecord, HoldConflict, HoldEnded, InputError, KeyUnavailable
from storage.audit import AuditLog
from storage.bodies import BodyStore
from storage.holds import ENDED_RETENTION_SECONDS, HoldKind, Holds
from storage.keys import KEY_STORE_FILE
from storage.pseudonyms import token_text
from tests.storage.conftest import account_keys_in

DAY = 86400


@pytest.fixture
def audit(env, clock):
    return AuditLog(env, clock=clock)


@pytest.fixture
def holds(store, keyring, audit, clock):
    return Holds(store, keyring, audit, clock=clock)


def put(store, items):
    with store.env.begin(write=True) as txn:
        store.put_many(txn, items)


def ack_and_expire(store, clock, mids):
    with store.env.begin(write=True) as txn:
        store.discard_many(txn, mids)
    clock.advance(2 * DAY)
    return store.sweep()


def test_a_legal_hold_keeps_a_body_through_ack_ttl_and_window_shredding(
        store, holds, ids, clock, keyring):
    mid, other = ids.new(), ids.new()
    put(store, [(mid, "evidence text", clock.now + 600), (other, "ordinary", clock.now + 600)])
    hold = holds.place_legal_hold([mid], actor="op:alice", reason="phishing complaint",
                                  reference="CARRIER-123", until=clock.now + 30 * DAY)
    window = keyring.body_window(clock.now)
    result = ack_and_expire(store, clock, [mid, other])
    assert window in result.shredded_windows
    assert store.get(mid) is None  # the ordinary path no longer has it
    assert holds.read_held_body(hold.hold_id, mid, actor="op:bob") == "evidence text"
    assert holds.held_message_ids(hold.hold_id) == [mid]


def test_a_held_transient_body_purged_by_the_sweep_is_counted_as_held(store, holds, ids, clock):
    mid = ids.new()
    put(store, [(mid, "x", clock.now + 60)])
    holds.place_legal_hold([mid], actor="op", reason="r", reference="ref", until=clock.now + DAY)
    clock.advance(61)
    assert store.sweep().held_purged == 1


def test_releasing_a_hold_deletes_its_copies_and_shreds_its_key(store, holds, ids, clock, keyring,
                                                                 data_dir):
    mid = ids.new()
    put(store, [(mid, "evidence", clock.now + 600)])
    hold = holds.place_legal_hold([mid], actor="op", reason="r", reference="ref",
                                  until=clock.now + DAY)
    wrapped = keyring._wrapped_named[f"hold:{hold.hold_id}"][1]
    holds.release(hold.hold_id, actor="op:carol", reason="case closed")
    assert holds.held_message_ids(hold.hold_id) == []
    assert f"hold:{hold.hold_id}" not in keyring.named_keys()
    assert wrapped not in (data_dir / "keys" / KEY_STORE_FILE).read_bytes()
    with pytest.raises(HoldEnded, match="ended"):
        holds.read_held_body(hold.hold_id, mid, actor="op")
    with pytest.raises(InputError):
        holds.release(hold.hold_id, actor="op", reason="again")


def test_a_hold_expires_at_its_until_and_the_sweep_shreds_it(store, holds, ids, clock, keyring):
    mid = ids.new()
    put(store, [(mid, "evidence", clock.now + 600)])
    hold = holds.place_legal_hold([mid], actor="op", reason="r", reference="ref",
                                  until=clock.now + 3 * DAY)
    ack_and_expire(store, clock, [mid])
    assert holds.sweep() == 0
    clock.advance(DAY + 1)
    assert holds.sweep() == 1
    assert holds.get(hold.hold_id).ended_by == "system:sweeper"
    assert holds.held_message_ids(hold.hold_id) == []
    assert keyring.named_keys() == [f"hold-notes:{hold.hold_id}", "holds"]  # notes: a year more
    with pytest.raises(HoldEnded):
        holds.read_held_body(hold.hold_id, mid, actor="op")


def test_a_debug_window_captures_only_its_account_and_only_while_open(store, holds, ids, clock):
    window = holds.open_debug_window("acct_1", actor="customer:acct_1", reason="debug webhook",
                                     reference="TICKET-9", until=clock.now + 2 * DAY)
    mine, theirs = ids.new(), ids.new()
    put(store, [(mine, "my body", clock.now + 600, "acct_1"),
                (theirs, "their body", clock.now + 600, "acct_2")])
    assert holds.held_message_ids(window.hold_id) == [mine]
    ack_and_expire(store, clock, [mine, theirs])  # 2 days later: the window has ended
    assert holds.sweep() == 1
    late = ids.new()
    put(store, [(late, "after", clock.now + 600, "acct_1")])
    assert holds.held_message_ids(window.hold_id) == []
    assert store.capture is None  # no account-scoped hold left: the write path pays nothing


def test_a_debug_window_body_is_readable_after_its_ttl_through_the_hold_only(
        store, holds, ids, clock):
    window = holds.open_debug_window("acct_1", actor="customer:acct_1", reason="debug",
                                     reference="T-1", until=clock.now + 7 * DAY)
    mid = ids.new()
    put(store, [(mid, "reproduce me", clock.now + 600, "acct_1")])
    ack_and_expire(store, clock, [mid])
    assert store.get(mid) is None
    assert holds.read_held_body(window.hold_id, mid, actor="customer:acct_1") == "reproduce me"


def test_a_lawful_order_can_name_messages_and_an_account(store, holds, ids, clock):
    old = ids.new()
    put(store, [(old, "named", clock.now + 600, "acct_9")])
    order = holds.register_lawful_order(actor="legal:dana", reason="court order",
                                        reference="ORDER-2026-17", until=clock.now + 100 * DAY,
                                        message_ids=[old], account_id="acct_9")
    new = ids.new()
    put(store, [(new, "later", clock.now + 600, "acct_9")])
    assert holds.held_message_ids(order.hold_id) == sorted([old, new])
    assert order.kind == HoldKind.LAWFUL_ORDER


@pytest.mark.parametrize("kind, seconds", [("legal", 91 * DAY), ("debug", 7 * DAY + 1),
                                           ("order", 366 * DAY)])
def test_a_hold_longer_than_its_kinds_maximum_is_refused(holds, ids, clock, kind, seconds):
    until = clock.now + seconds
    with pytest.raises(InputError, match="at most"):
        if kind == "legal":
            holds.place_legal_hold([ids.new()], actor="op", reason="r", reference="x", until=until)
        elif kind == "debug":
            holds.open_debug_window("a", actor="c", reason="r", reference="x", until=until)
        else:
            holds.register_lawful_order(actor="op", reason="r", reference="x", until=until,
                                        account_id="a")


@pytest.mark.parametrize("actor, reason, reference", [("", "r", "x"), ("op", "", "x"),
                                                      ("op", "r", "")])
def test_a_hold_without_who_why_or_reference_is_refused(holds, ids, clock, actor, reason,
                                                        reference):
    with pytest.raises(InputError, match="who"):
        holds.place_legal_hold([ids.new()], actor=actor, reason=reason, reference=reference,
                               until=clock.now + DAY)


def test_a_hold_ending_in_the_past_or_covering_nothing_is_refused(holds, clock, ids):
    with pytest.raises(InputError, match="future"):
        holds.place_legal_hold([ids.new()], actor="o", reason="r", reference="x", until=clock.now)
    with pytest.raises(InputError, match="messages or an account"):
        holds.register_lawful_order(actor="o", reason="r", reference="x", until=clock.now + 9)


def test_a_hold_on_an_already_purged_body_keeps_nothing_and_says_so(store, holds, audit, ids,
                                                                      clock):
    mid = ids.new()
    hold = holds.place_legal_hold([mid], actor="op", reason="r", reference="x",
                                  until=clock.now + DAY)
    assert holds.held_message_ids(hold.hold_id) == []
    assert audit.entries()[-1].detail["not_stored"] == 1


def test_every_hold_action_is_audited_without_any_body_text(store, holds, audit, ids, clock):
    mid = ids.new()
    put(store, [(mid, "SECRET-BODY-TEXT", clock.now + 600)])
    hold = holds.place_legal_hold([mid], actor="op:a", reason="abuse", reference="C-1",
                                  until=clock.now + DAY)
    holds.read_held_body(hold.hold_id, mid, actor="op:b")
    holds.release(hold.hold_id, actor="op:c", reason="done")
    with pytest.raises(HoldEnded):
        holds.read_held_body(hold.hold_id, mid, actor="op:d")
    trail = [(e.actor, e.action, e.result) for e in audit.entries()]
    assert trail == [("op:a", "place_legal_hold", "ok"), ("op:b", "read_held_body", "ok"),
                     ("op:c", "release_legal_hold", "ok"), ("op:d", "read_held_body", "denied")]
    assert "SECRET-BODY-TEXT" not in repr(audit.entries())


def test_holds_and_their_capture_survive_a_restart(env, keyring, store, holds, audit, ids, clock):
    mid = ids.new()
    put(store, [(mid, "kept", clock.now + 600)])
    legal = holds.place_legal_hold([mid], actor="op", reason="r", reference="x",
                                   until=clock.now + DAY)
    debug = holds.open_debug_window("acct_1", actor="c", reason="r", reference="y",
                                    until=clock.now + DAY)
    store2 = BodyStore(env, keyring, clock=clock)
    holds2 = Holds(store2, keyring, audit, clock=clock)
    assert {h.hold_id for h in holds2.active()} == {legal.hold_id, debug.hold_id}
    later = ids.new()
    put(store2, [(later, "captured after restart", clock.now + 600, "acct_1")])
    assert holds2.read_held_body(debug.hold_id, later, actor="c") == "captured after restart"
    assert holds2.read_held_body(legal.hold_id, mid, actor="op") == "kept"


def test_a_placement_asked_again_answers_its_hold_across_a_restart_and_after_its_release(
        env, keyring, store, holds, audit, ids, clock):
    mid = ids.new()
    put(store, [(mid, "kept", clock.now + 600)])
    asked = {"actor": "op", "reason": "r", "reference": "x", "until": clock.now + DAY,
             "message_ids": [mid]}
    request = (b"key-hash", b"content-hash")
    hold, new = holds.place(HoldKind.LEGAL_HOLD, **asked, request=request)
    assert new
    holds2 = Holds(BodyStore(env, keyring, clock=clock), keyring, audit, clock=clock)
    assert holds2.place(HoldKind.LEGAL_HOLD, **asked, request=request) == (hold, False)
    with pytest.raises(HoldConflict, match=hold.hold_id):
        holds2.place(HoldKind.LEGAL_HOLD, **asked, request=(b"key-hash", b"other content"))
    holds2.release(hold.hold_id, actor="op", reason="closed")
    again, new = holds2.place(HoldKind.LEGAL_HOLD, **asked, request=request)
    assert (again.hold_id, new) == (hold.hold_id, False) and again.ended_at is not None
    assert [h.hold_id for h in holds2.active()] == []
    other, new = holds2.place(HoldKind.LEGAL_HOLD, **asked, request=(b"new key", b"content-hash"))
    assert new and other.hold_id != hold.hold_id


def test_a_released_hold_leaves_ciphertext_at_most_and_no_key_that_opens_it(
        store, holds, ids, clock, keyring, data_dir, tmp_path):
    mid = ids.new()
    put(store, [(mid, "HELD-PLAINTEXT-42", clock.now + 600)])
    hold = holds.place_legal_hold([mid], actor="op", reason="r", reference="x",
                                  until=clock.now + 10 * DAY)
    ack_and_expire(store, clock, [mid])
    everything = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
    assert b"HELD-PLAINTEXT-42" not in everything  # the held copy is sealed too
    key = bytes.fromhex(mid[4:])
    with store.env.begin(db=holds._held_db) as txn:
        held_blob = bytes(txn.get(bytes.fromhex(hold.hold_id[5:]) + key))
    (tmp_path / "backup").mkdir()
    store.env.copy(str(tmp_path / "backup"))
    holds.release(hold.hold_id, actor="op", reason="closed")
    assert held_blob in (tmp_path / "backup" / "data.mdb").read_bytes()  # a backup still has it
    survivors = [keyring.body_sealer(w) for w in keyring.live_windows()]
    survivors += [keyring.named_sealer(n) for n in keyring.named_keys()]
    for sealer in survivors:
        with pytest.raises(CorruptRecord):
            sealer.open(held_blob, key)
    with pytest.raises(KeyUnavailable):
        keyring.named_sealer(f"hold:{hold.hold_id}", create=False)


def test_reasons_and_references_are_sealed_in_the_hold_record_and_in_the_audit_log(
        store, holds, audit, ids, clock, data_dir):
    mid = ids.new()
    put(store, [(mid, "body", clock.now + 600)])
    hold = holds.place_legal_hold([mid], actor="op:a", reason="REASON-MARKER fraud by Jane Roe",
                                  reference="REFERENCE-MARKER-77", until=clock.now + DAY)
    holds.read_held_body(hold.hold_id, mid, actor="op:b")
    holds.release(hold.hold_id, actor="op:c", reason="RELEASE-MARKER resolved")
    everything = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
    for marker in (b"REASON-MARKER", b"Jane Roe", b"REFERENCE-MARKER", b"RELEASE-MARKER"):
        assert marker not in everything
    assert "MARKER" not in repr(audit.entries())  # sealed, not merely absent from the file bytes
    notes = [holds.open_notes(e.detail)["notes"] for e in audit.entries()]
    assert notes[0]["reason"].startswith("REASON-MARKER") and notes[1] == {
        "reference": "REFERENCE-MARKER-77"} and notes[2] == {"reason": "RELEASE-MARKER resolved"}


def test_an_ended_holds_record_and_notes_are_swept_a_year_after_it_ended(
        store, holds, audit, ids, clock, keyring, env):
    hold = holds.place_legal_hold([ids.new()], actor="op", reason="why", reference="ref",
                                  until=clock.now + DAY)
    holds.release(hold.hold_id, actor="op", reason="done")
    clock.advance(ENDED_RETENTION_SECONDS - 60)
    assert holds.sweep() == 0 and holds.get(hold.hold_id) is not None
    clock.advance(120)
    assert holds.sweep() == 1
    assert holds.get(hold.hold_id) is None
    assert f"hold-notes:{hold.hold_id}" not in keyring.named_keys()
    assert all(holds.open_notes(e.detail)["notes"] == "shredded" for e in audit.entries())
    assert Holds(BodyStore(env, keyring, clock=clock), keyring, audit, clock=clock).get(
        hold.hold_id) is None  # gone from the store, not only from memory


def test_forgetting_an_account_ends_its_debug_window_and_shreds_the_notes_of_it(
        store, holds, audit, ids, clock, keyring, env):
    window = holds.open_debug_window("acct_gone", actor="customer:acct_gone",
                                     reason="WINDOW-REASON my app breaks", reference="opt-in",
                                     until=clock.now + DAY)
    legal = holds.place_legal_hold([ids.new()], actor="op", reason="LEGAL-REASON", reference="L-1",
                                   until=clock.now + DAY)
    assert holds.forget_account("acct_gone") == 1
    assert holds.get(window.hold_id).ended_by == "system:erasure"
    trail = {e.action: holds.open_notes(e.detail)["notes"] for e in audit.entries()}
    assert trail["place_debug_window"] == "shredded" and trail["release_debug_window"] == "shredded"
    assert trail["place_legal_hold"]["reason"] == "LEGAL-REASON"  # an exception to erasure: kept
    reopened = Holds(BodyStore(env, keyring, clock=clock), keyring, audit, clock=clock)
    assert reopened.get(window.hold_id).reason == "" and reopened.get(window.hold_id).account_id is None
    assert reopened.get(legal.hold_id).reason == "LEGAL-REASON"


def test_hold_records_name_an_account_by_pseudonym_and_lose_its_id_with_its_data_key(
        store, keyring, env, data_dir, clock):
    """A debugging window's ``customer:acc_…`` actor and a lawful order's account are kept in the
    record (a year past the end, past an erasure) only as the pseudonym and an id sealed under the
    account's data key: once that key is destroyed, the record opened with every key left names it no
    more, while the order keeps its reason and pseudonym."""
    accounts = account_keys_in(data_dir / "keys" / "accounts", "acc_erasedz5")
    audit = AuditLog(env, clock=clock, accounts=accounts)
    holds = Holds(store, keyring, audit, clock=clock, accounts=accounts)
    window = holds.open_debug_window("acc_erasedz5", actor="customer:acc_erasedz5", reason="debug",
                                     reference="opt-in", until=clock() + DAY)
    order = holds.register_lawful_order(actor="privacy:kim", reason="court", reference="ORD-1",
                                        until=clock() + DAY, account_id="acc_erasedz5")
    assert holds.get(window.hold_id).actor == "customer:acc_erasedz5"  # read as placed meanwhile
    assert Holds(store, keyring, audit, clock=clock, accounts=accounts).get(
        order.hold_id).account_id == "acc_erasedz5"
    holds.forget_account("acc_erasedz5")
    accounts.shred("acc_erasedz5")  # the erasure destroys the account's keys
    pseudonym = token_text(accounts.token("acc_erasedz5"))
    records = []
    with env.begin(db=env.open_db(b"holds")) as txn:
        for key, blob in txn.cursor():
            records.append(keyring.store_sealer("holds").open(bytes(blob), bytes(key)))
            notes = msgpack.unpackb(records[-1])["notes"]
            for name in keyring.named_keys():
                try:
                    records.append(keyring.named_sealer(name).open(notes, name.encode()))
                except CorruptRecord:
                    pass
    assert len(records) >= 3 and [r for r in records if b"acc_erasedz5" in r] == []
    reopened = Holds(store, keyring, audit, clock=clock, accounts=accounts)
    kept = reopened.get(order.hold_id)
    assert (kept.reason, kept.subject, kept.account_id) == ("court", pseudonym, None)
    assert reopened.get(window.hold_id).ended_by == "system:erasure"
    assert reopened.get(window.hold_id).actor == f"customer:{pseudonym}"


def test_a_window_read_back_without_its_account_id_is_still_ended_by_the_accounts_erasure(
        store, keyring, env, data_dir, clock):
    """A worker of an older version placed a window without a data key of the account (it had sent
    nothing through that worker): restarted, it reads the hold back with its pseudonym but no id. The
    account's erasure still finds it by that pseudonym: the window ends and its notes are shredded."""
    accounts = account_keys_in(data_dir / "keys" / "accounts")  # no key of acc_nokeyzz1 here
    audit = AuditLog(env, clock=clock, accounts=accounts)
    holds = Holds(store, keyring, audit, clock=clock, accounts=accounts)
    window = holds.open_debug_window("acc_nokeyzz1", actor="customer:acc_nokeyzz1", reason="debug",
                                     reference="opt-in", until=clock() + DAY)
    other = holds.open_debug_window("acc_otherzz2", actor="customer:acc_otherzz2", reason="debug",
                                    reference="opt-in", until=clock() + DAY)
    reopened = Holds(store, keyring, audit, clock=clock, accounts=accounts)
    assert reopened.get(window.hold_id).account_id is None  # its id was sealed under no key
    assert [h.hold_id for h in reopened.of_account("acc_nokeyzz1")] == [window.hold_id]
    assert reopened.forget_account("acc_nokeyzz1") == 1
    ended = reopened.get(window.hold_id)
    assert (ended.ended_by, ended.reason) == ("system:erasure", "")  # ended, notes shredded
    assert f"hold-notes:{window.hold_id}" not in keyring.named_keys()
    assert reopened.get(other.hold_id).ended_at is None  # another account's window stays


def _rewrite_as_an_older_version(env, keyring, hold_id: str, *dropped: str) -> None:
    """Rewrite a hold's record without ``dropped`` fields: what a version before them stored."""
    db, sealer, key = env.open_db(b"holds"), keyring.store_sealer("holds"), hold_id.encode()
    with env.begin(write=True, db=db) as txn:
        fields = msgpack.unpackb(sealer.open(bytes(txn.get(key)), key))
        assert set(dropped) <= set(fields)
        txn.put(key, sealer.seal(msgpack.packb({k: v for k, v in fields.items()
                                                if k not in dropped}), key))


def test_a_lawful_orders_holds_keep_its_order_id_and_a_record_without_one_still_loads(
        store, holds, audit, ids, clock, keyring, env):
    """Every hold of one order carries its ``order_id`` across a restart; a hold written by the version
    before order ids (no ``order_id`` field) loads as it was, with ``order_id == ""``."""
    mid = ids.new()
    put(store, [(mid, "held text", clock.now + 600)])
    order = holds.register_lawful_order(actor="privacy:kim", reason="court", reference="ORD-9",
                                        until=clock.now + DAY, message_ids=[mid],
                                        order_id="ord_00112233445566ff")
    own = holds.register_lawful_order(actor="privacy:kim", reason="court", reference="ORD-9",
                                      until=clock.now + DAY, account_id="acct_x")
    legal = holds.place_legal_hold([mid], actor="op", reason="r", reference="L-9",
                                   until=clock.now + DAY)
    assert own.order_id.startswith("ord_") and own.order_id != order.order_id
    assert legal.order_id == ""
    reopened = Holds(BodyStore(env, keyring, clock=clock), keyring, audit, clock=clock)
    assert reopened.get(order.hold_id).order_id == "ord_00112233445566ff"

    _rewrite_as_an_older_version(env, keyring, order.hold_id, "order_id")
    older = Holds(BodyStore(env, keyring, clock=clock), keyring, audit, clock=clock)
    loaded = older.get(order.hold_id)
    assert (loaded.order_id, loaded.reason, loaded.reference, loaded.message_ids) == (
        "", "court", "ORD-9", (mid,))
    assert older.read_held_body(order.hold_id, mid, actor="privacy:kim") == "held text"


@pytest.mark.parametrize("per_account_keys", [True, False])
def test_a_lawful_order_keeps_its_holders_sealed_and_an_erased_one_drops_out(
        store, keyring, env, data_dir, clock, ids, per_account_keys):
    """The holders of a message order (account -> its messages held) outlive a restart without the
    messages' records, sealed at rest: under each holder's data key (named by pseudonym) in the
    engine, in the hold's notes without per-account keys. An erased holder drops out: at once, and
    on reading the record again once its key is gone."""
    accounts = account_keys_in(data_dir / "keys" / "accounts", "acc_holderaa01", "acc_holderbb02")
    audit = AuditLog(env, clock=clock, accounts=accounts)
    keys = {"accounts": accounts} if per_account_keys else {}
    holds = Holds(store, keyring, audit, clock=clock, **keys)
    order = holds.register_lawful_order(
        actor="privacy:kim", reason="court", reference="ORD-H", until=clock.now + DAY,
        message_ids=[ids.new(), ids.new(), ids.new()],
        holders={"acc_holderbb02": 1, "acc_holderaa01": 2})
    expected = (("acc_holderaa01", 2), ("acc_holderbb02", 1))
    assert order.holders == expected
    assert Holds(store, keyring, audit, clock=clock, **keys).get(order.hold_id).holders == expected
    with env.begin(db=env.open_db(b"holds")) as txn:
        record = keyring.store_sealer("holds").open(bytes(txn.get(order.hold_id.encode())),
                                                     order.hold_id.encode())
    assert b"acc_holder" not in record  # the store key alone does not name them

    holds.forget_account("acc_holderaa01")
    assert holds.get(order.hold_id).holders == (("acc_holderbb02", 1),)
    if per_account_keys:
        accounts.shred("acc_holderaa01")  # the erasure destroys its keys
        reopened = Holds(store, keyring, audit, clock=clock, **keys)
        assert reopened.get(order.hold_id).holders == (("acc_holderbb02", 1),)
