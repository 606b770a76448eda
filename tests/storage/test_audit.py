"""AuditLog: append-only, ordered, durable, atomic with the caller's change, and free of secrets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import CorruptRecord, InputError
from storage.audit import AuditLog
from storage.env import open_env


def test_entries_come_back_in_order_with_who_what_when_and_result(env, clock):
    log = AuditLog(env, clock=clock)
    assert log.append("op:alice", "place_legal_hold", "hold_1", "ok", {"reference": "CASE-7"}) == 1
    clock.advance(5)
    assert log.append("op:bob", "read_held_body", "hold_1/msg_x", "denied") == 2
    first, second = log.entries()
    assert (first.actor, first.action, first.target, first.result) == (
        "op:alice", "place_legal_hold", "hold_1", "ok")
    assert first.detail == {"reference": "CASE-7"} and second.ts == first.ts + 5
    assert [e.seq for e in log.entries(since=first.ts + 1)] == [2]


def test_entries_survive_reopening_the_environment(data_dir, clock):
    env = open_env(data_dir / "a", map_size=8 << 20)
    AuditLog(env, clock=clock).append("op", "act", "t", "ok")
    env.close()
    env = open_env(data_dir / "a", map_size=8 << 20)
    log = AuditLog(env, clock=clock)
    assert len(log) == 1 and log.append("op", "act2", "t", "ok") == 2
    env.close()


def test_an_entry_in_an_aborted_txn_disappears_with_the_change_it_described(env, clock):
    log = AuditLog(env, clock=clock)
    txn = env.begin(write=True)
    log.append("op", "act", "t", "ok", txn=txn)
    txn.abort()
    assert log.entries() == []


def test_an_entry_about_an_account_known_only_by_its_pseudonym_is_named_by_it(env, clock):
    """An account nothing names any more (its keys gone): an entry about it carries its pseudonym, so
    it is listed with the account's earlier entries; there is no id to seal."""
    log = AuditLog(env, clock=clock)
    pseudonym = "psn_" + "ab" * 16
    log.append("privacy:ann", "export_account", pseudonym, "ok", {"request": "dsr_1"},
               subject=pseudonym)
    [entry] = log.entries()
    assert (entry.subject, entry.account_id, entry.target) == (pseudonym, "", pseudonym)
    with pytest.raises(InputError, match="pseudonym"):
        log.append("privacy:ann", "export_account", "acc_1", "ok", subject="acc_1")


@pytest.mark.parametrize("key", ["body", "message_body", "api_key", "Secret", "token", "password"])
def test_a_detail_that_names_a_body_or_a_secret_is_refused(env, key):
    with pytest.raises(InputError, match="not logged"):
        AuditLog(env).append("op", "act", "t", "ok", {"outer": {key: "x"}})
    assert AuditLog(env).entries() == []


def test_an_empty_actor_is_refused(env):
    with pytest.raises(InputError):
        AuditLog(env).append("", "act", "t", "ok")


def test_a_garbled_entry_raises_corrupt_record(env):
    log = AuditLog(env)
    log.append("op", "act", "t", "ok")
    with env.begin(write=True, db=log._db) as txn:
        txn.put((1).to_bytes(8, "big"), b"\xc1")
    with pytest.raises(CorruptRecord):
        log.entries()


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(st.tuples(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20),
                               st.integers(-10**6, 10**6)), max_size=12))
def test_what_is_appended_reads_back_unchanged(tmp_path_factory, rows):
    env = open_env(tmp_path_factory.mktemp("audit"), map_size=8 << 20)
    log = AuditLog(env)
    for actor, target, n in rows:
        log.append(actor, "act", target, "ok", {"n": n})
    assert [(e.actor, e.target, e.detail["n"]) for e in log.entries()] == rows
    assert [e.seq for e in log.entries()] == list(range(1, len(rows) + 1))
    env.close()
