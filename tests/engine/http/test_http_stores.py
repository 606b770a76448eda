"""The HTTP layer's stores: request log (policy 2.1, 90 days), idempotency records, operator tokens."""

from __future__ import annotations

import asyncio
import os
import stat
import time

import pytest

from engine.http.errors import HttpError
from engine.http.idempotency import IdempotencyStore, StoredAnswer, check_key, request_hash
from engine.http.requestlog import RETENTION_SECONDS, RequestLog, RequestLogEntry
from engine.http.store import GroupCommitter, open_http_env
from engine.http.tokens import ROLES, UNUSED_SECONDS, TokenStore, ensure_first_token

SECRET = b"s" * 32

DAY = 86400.0


@pytest.fixture
def env(tmp_path):
    e = open_http_env(tmp_path)
    yield e
    e.close()


def test_request_log_entries_hold_only_the_five_policy_fields(env):
    log = RequestLog(env)
    log.record_now(RequestLogEntry(1000.0, "POST /v1/messages", "127.0.0.1", 202, 120))
    [entry] = list(log.entries())
    assert entry._fields == ("at", "endpoint", "source_ip", "status", "response_bytes")
    assert entry == RequestLogEntry(1000.0, "POST /v1/messages", "127.0.0.1", 202, 120)


def test_sweep_deletes_entries_older_than_90_days_and_keeps_the_rest(env):
    log = RequestLog(env)
    now = 200 * DAY
    ages = [100 * DAY, 91 * DAY, 90 * DAY - 1, 10 * DAY, 0.0]
    for age in ages:
        log.record_now(RequestLogEntry(now - age, "GET /v1/balance", "10.0.0.1", 200, 10))
    assert log.sweep(now) == 2
    assert [now - e.at for e in log.entries()] == ages[2:]
    assert log.sweep(now) == 0
    assert log.sweep(now + RETENTION_SECONDS + DAY) == 3


def test_request_log_written_through_the_committer_is_durable_after_flush(env):
    async def scenario():
        committer = GroupCommitter(env)
        log = RequestLog(env, committer)
        for i in range(50):
            log.record(RequestLogEntry(float(i), "GET /v1/balance", "::1", 200, i))
        log.flush()
        await committer.flush()
        committer.close()

    asyncio.run(scenario())
    assert len(list(RequestLog(env).entries())) == 50


def test_idempotency_replays_the_same_body_and_refuses_a_different_one(env):
    async def scenario():
        store = IdempotencyStore(env, GroupCommitter(env))
        h1, h2 = request_hash(b'{"a":1}', SECRET), request_hash(b'{"a":2}', SECRET)
        assert store.lookup("acc", "k1", h1) is None
        store.begin("acc", "k1", h1)
        with pytest.raises(HttpError) as busy:
            store.lookup("acc", "k1", h1)
        assert busy.value.status == 409
        with pytest.raises(HttpError) as other:
            store.lookup("acc", "k1", h2)
        assert other.value.status == 422
        at = time.time()  # (a record older than 24 hours counts as absent)
        await store.store("acc", "k1", StoredAnswer(h1, 202, b'{"id":"m"}', at))
        store.end("acc", "k1")
        assert store.lookup("acc", "k1", h1) == StoredAnswer(h1, 202, b'{"id":"m"}', at)
        assert store.lookup("other-account", "k1", h2) is None  # keys are per account
        with pytest.raises(HttpError) as mismatch:
            store.lookup("acc", "k1", h2)
        assert mismatch.value.status == 422
        assert store.sweep(at + DAY + 1) == 1
        assert store.lookup("acc", "k1", h2) is None

    asyncio.run(scenario())


def test_a_pending_record_left_by_a_crash_answers_outcome_unknown(env):
    async def scenario():
        store = IdempotencyStore(env, GroupCommitter(env), SECRET)
        h = request_hash(b"{}", SECRET)
        store.begin("acc", "k", h)
        await store.reserve("acc", "k", h, now=time.time())
        with pytest.raises(HttpError) as busy:  # same process, still working: plain conflict
            store.lookup("acc", "k", h)
        assert busy.value.code == "idempotency_conflict"
        restarted = IdempotencyStore(env, GroupCommitter(env), SECRET)  # the process died mid-request
        with pytest.raises(HttpError) as unknown:
            restarted.lookup("acc", "k", h)
        assert (unknown.value.status, unknown.value.code) == (409, "idempotency_outcome_unknown")
        await store.abandon("acc", "k")
        assert restarted.lookup("acc", "k", h) is None

    asyncio.run(scenario())


def test_idempotency_records_are_keyed_by_a_keyed_hash_not_the_clients_key(env, tmp_path):
    async def scenario():
        store = IdempotencyStore(env, GroupCommitter(env), SECRET)
        h = request_hash(b"{}", SECRET)
        await store.store("acc_visible", "order-4915112345678",
                          StoredAnswer(h, 202, b"{}", time.time()))
        assert store.lookup("acc_visible", "order-4915112345678", h).status == 202
        assert IdempotencyStore(env, GroupCommitter(env), b"t" * 32).lookup(
            "acc_visible", "order-4915112345678", h) is None  # another secret: another key

    asyncio.run(scenario())
    env.sync(True)
    raw = (tmp_path / "http" / "data.mdb").read_bytes()
    assert b"4915112345678" not in raw and b"acc_visible" not in raw


def test_tokens_unused_for_90_days_are_swept_and_used_ones_kept(env):
    clock = [time.time()]
    now = clock[0]
    store = TokenStore(env, clock=lambda: clock[0])
    used, idle = store.create("alice", {"viewer"}), store.create("bob", {"operator"})
    assert store.sweep(now) == 0
    clock[0] = now + 60
    store.lookup(used)  # noted in memory, persisted by the next sweep
    assert store.sweep(now + 60) == 0
    restarted = TokenStore(env)  # the last use survived a restart
    assert restarted.sweep(now + UNUSED_SECONDS + 30) == 1
    assert restarted.lookup(used) is not None and restarted.lookup(idle) is None
    assert restarted.sweep(now + 2 * UNUSED_SECONDS + 120) == 1  # alice's last use is old now too
    assert restarted.count() == 0


@pytest.mark.parametrize("key", ["", "a" * 256, "has space", "é"])
def test_bad_idempotency_keys_are_refused(key):
    with pytest.raises(HttpError):
        check_key(key)


def test_tokens_are_stored_as_digests_and_carry_their_roles(env, tmp_path):
    store = TokenStore(env)
    token = store.create("alice", {"viewer"})
    info = store.lookup(token)
    assert info is not None and info.roles == {"viewer"} and info.name == "alice"
    assert store.lookup(token + "x") is None
    with env.begin() as txn:
        values = [v for _, v in txn.cursor(db=env.open_db(b"operator_tokens"))]
        keys = [k for k, _ in txn.cursor(db=env.open_db(b"operator_tokens"))]
    assert all(token.encode() not in k + v for k, v in zip(keys, values, strict=True))
    assert store.revoke(token) and store.lookup(token) is None
    with pytest.raises(ValueError):
        store.create("bad", {"root"})


def test_first_start_writes_one_all_roles_token_file_with_mode_0600(env, tmp_path):
    store = TokenStore(env)
    path = ensure_first_token(store, tmp_path)
    assert path == tmp_path / "operator.token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = path.read_text().strip()
    assert store.lookup(token).roles == ROLES
    assert ensure_first_token(store, tmp_path) is None  # only on first start


def test_token_names_are_unique_and_system_names_are_reserved(env):
    from engine.http.tokens import TokenNameError

    store = TokenStore(env)
    token = store.create("bob", {"viewer"})
    with pytest.raises(TokenNameError):
        store.create("bob", {"operator"})
    for name in ("system:erasure", "System:x", "", "x" * 65, "a b"):
        with pytest.raises(TokenNameError):
            store.create(name, {"viewer"})
    assert [(t.name, t.roles) for t in store.all()] == [("bob", frozenset({"viewer"}))]
    assert store.revoke_name("bob") and store.lookup(token) is None and store.all() == []
    assert not store.revoke_name("bob")


def test_a_new_first_token_is_written_when_every_token_was_revoked(env, tmp_path):
    store = TokenStore(env)
    first = ensure_first_token(store, tmp_path).read_text().strip()
    assert store.revoke(first) and store.count() == 0
    second = ensure_first_token(store, tmp_path).read_text().strip()
    assert second != first and store.lookup(second).roles == ROLES


DEADLOCK_PROBE = r"""
import asyncio, sys, tempfile, threading
from engine.http.idempotency import IdempotencyStore
from engine.http.requestlog import RequestLog
from engine.http.store import Apply, GroupCommitter, open_http_env

env = open_http_env(tempfile.mkdtemp())

async def main():
    committer = GroupCommitter(env)
    RequestLog(env, committer)
    store = IdempotencyStore(env, committer, b"s" * 32)
    inside, release = threading.Event(), threading.Event()

    def hold(txn):  # the commit thread holds the environment's write lock until released
        inside.set()
        release.wait(30)

    held = committer.write([Apply(hold)])
    await asyncio.get_running_loop().run_in_executor(None, inside.wait, 30)
    first = asyncio.ensure_future(store.reserve("acc_1", "key-1", b"h" * 32, 1.0))
    await asyncio.sleep(0)  # the loop takes the first idempotency write while the commit is open
    release.set()
    await held
    await first
    committer.close()

asyncio.run(main())
print("ok")
"""


def test_a_first_write_to_a_database_while_a_commit_holds_the_write_lock_does_not_freeze():
    """py-lmdb's open_db begins a write transaction while holding the interpreter lock: opening a
    database on the loop thread while the commit thread held the write lock froze the process (seen
    in CI). The committer only uses the handles its stores registered at construction."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", DEADLOCK_PROBE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the HTTP store froze: a first write waited on the commit's lock") from None
    assert proc.returncode == 0 and out.strip() == "ok", err


def test_a_stored_answer_is_sealed_under_its_accounts_key_and_unreadable_once_that_key_is_gone(
        env, tmp_path):
    """The answer echoes the client's reference (policy 9: at rest only encrypted); erasing the account
    destroys its key (policy 7.1), after which the answer is never replayed, to anyone."""
    from engine.errors import KeyUnavailable
    from storage.crypto import Sealer

    keys = {"acc_a": Sealer(os.urandom(32)), "acc_b": Sealer(os.urandom(32))}

    def sealer_for(account_id: str) -> Sealer:
        if account_id not in keys:
            raise KeyUnavailable(account_id)
        return keys[account_id]

    async def scenario():
        store = IdempotencyStore(env, GroupCommitter(env), SECRET, sealer_for=sealer_for)
        h = request_hash(b"{}", SECRET)
        answer = StoredAnswer(h, 202, b'{"client_ref":"REFMARKER-jane"}', time.time())
        await store.store("acc_a", "k", answer)
        assert store.lookup("acc_a", "k", h) == answer
        del keys["acc_a"]  # erased: its data key is shredded
        with pytest.raises(HttpError) as gone:
            store.lookup("acc_a", "k", h)
        assert (gone.value.status, gone.value.code) == (409, "idempotency_outcome_unknown")

    asyncio.run(scenario())
    env.sync(True)
    assert b"REFMARKER" not in (tmp_path / "http" / "data.mdb").read_bytes()


def test_an_idempotency_key_older_than_24_hours_is_a_new_request_before_the_sweep_runs(env):
    """The README's rule is 24 hours; the sweep runs hourly, so the answer must not depend on it."""
    async def scenario():
        store = IdempotencyStore(env, GroupCommitter(env), SECRET)
        first, other = request_hash(b'{"a":1}', SECRET), request_hash(b'{"a":2}', SECRET)
        old = time.time() - DAY - 60
        await store.store("acc", "done", StoredAnswer(first, 202, b'{"id":"m"}', old))
        await store.reserve("acc", "interrupted", first, old)  # a crash mid-request, a day ago
        for key in ("done", "interrupted"):
            assert store.lookup("acc", key, first) is None  # not replayed, not "outcome unknown"
            assert store.lookup("acc", key, other) is None  # not "key reused"
        fresh = time.time() - DAY + 60
        await store.store("acc", "recent", StoredAnswer(first, 202, b'{"id":"m"}', fresh))
        assert store.lookup("acc", "recent", first).body == b'{"id":"m"}'

    asyncio.run(scenario())


def test_request_log_batches_waiting_for_a_hung_fsync_are_bounded_and_the_excess_is_counted(env):
    """A disk that stops answering must not grow the request log's queue at the request rate: beyond
    MAX_LATER waiting batches the newest are dropped and counted; once the disk answers, the log works."""
    import threading

    from engine.http.store import Apply

    MAX_LATER = 64  # noqa: N806 (the bound README documents)

    stalled = threading.Event()
    resume = threading.Event()

    def hang(txn):  # the commit thread is stuck, as in an fsync that does not return
        stalled.set()
        assert resume.wait(30)

    async def scenario():
        committer = GroupCommitter(env)
        log = RequestLog(env, committer)
        blocked = committer.write([Apply(hang)])
        await asyncio.get_running_loop().run_in_executor(None, stalled.wait, 10)
        for i in range(MAX_LATER * 10):
            log.record(RequestLogEntry(float(i), "GET /v1/balance", "::1", 200, i))
            log.flush()  # one batch per request: the worst case
        assert len(committer._pending) == MAX_LATER
        assert committer.later_dropped == MAX_LATER * 9
        resume.set()
        await blocked
        await committer.flush()
        log.record(RequestLogEntry(1e6, "GET /v1/balance", "::1", 200, 1))
        log.flush()
        await committer.flush()
        committer.close()

    asyncio.run(scenario())
    assert len(list(RequestLog(env).entries())) == MAX_LATER + 1
