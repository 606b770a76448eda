"""Account records: round trip, the API key digest index, the 90-day sweep after closure, encryption."""

from __future__ import annotations

import struct
from dataclasses import asdict, replace

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import apikeys
from engine.errors import CorruptRecord, KeyUnavailable, UnknownAccount
from storage.accounts import (
    ACTIVE,
    CLOSED,
    RESTRICTED,
    RETENTION_AFTER_CLOSE_SECONDS,
    AccountRecord,
    AccountStore,
)
from storage.apikeys import ApiKeyStore, key_id
from storage.env import open_env
from storage.keys import KeyRing, LocalKeyProvider
from tests.storage.conftest import account_keys_in

T0 = 1_790_000_000.0
DAY = 86400.0


@pytest.fixture
def core_dir(tmp_path):
    return tmp_path / "core"


@pytest.fixture
def accounts(tmp_path, core_dir):
    env = open_env(core_dir, map_size=16 << 20)
    yield AccountStore(env, account_keys_in(tmp_path / "keys"))
    env.close()


def account(n: int = 1, **kw) -> AccountRecord:
    key = apikeys.new_api_key()
    values = dict(id=f"acc_{n:016x}", email=f"dev{n}@example.com", created_at=T0,
                  key_digests=[apikeys.digest(key)], key_hints=[apikeys.hint(key)])
    values.update(kw)
    return AccountRecord(**values)


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=30, deadline=None)
@given(email=TEXT, senders=st.lists(TEXT, max_size=3), url=st.none() | TEXT,
       statuses=st.none() | st.lists(TEXT, max_size=3), state=st.sampled_from([ACTIVE, RESTRICTED, CLOSED]),
       digests=st.lists(st.binary(min_size=32, max_size=32), max_size=3, unique=True))
def test_an_account_record_reads_back_exactly_as_written(tmp_path_factory, email, senders, url,
                                                         statuses, state, digests):
    root = tmp_path_factory.mktemp("acc")
    env = open_env(root / "core", map_size=8 << 20)
    try:
        store = AccountStore(env, account_keys_in(root / "keys"))
        rec = account(email=email, senders=senders, webhook_url=url, receipt_statuses=statuses,
                      state=state, key_digests=digests, key_hints=["h"] * len(digests))
        store.create(rec)
        assert store.get(rec.id) == rec
        assert store.key_index() == {d: rec.id for d in digests}
    finally:
        env.close()


def test_an_unknown_account_raises_unknown_account(accounts):
    with pytest.raises(UnknownAccount):
        accounts.get("acc_missing")
    with pytest.raises(UnknownAccount):
        accounts.update("acc_missing", lambda r: r)
    assert accounts.delete("acc_missing") is False


def test_creating_an_existing_account_is_refused(accounts):
    rec = accounts.create(account(1))
    with pytest.raises(ValueError):
        accounts.create(replace(rec, email="other@example.com"))
    assert accounts.get(rec.id).email == "dev1@example.com"


def test_the_key_index_follows_keys_added_and_removed_by_update(accounts):
    rec = accounts.create(account(1))
    new_digest = apikeys.digest(apikeys.new_api_key())
    accounts.update(rec.id, lambda r: replace(r, key_digests=[new_digest]))
    assert accounts.key_index() == {new_digest: rec.id}
    accounts.delete(rec.id)
    assert accounts.key_index() == {}


def test_the_sweep_deletes_accounts_closed_more_than_90_days_ago_only(accounts):
    old = accounts.create(account(1, state=CLOSED, closed_at=T0))
    recent = accounts.create(account(2, state=CLOSED, closed_at=T0 + 60 * DAY))
    active = accounts.create(account(3))
    now = T0 + RETENTION_AFTER_CLOSE_SECONDS + DAY
    assert accounts.sweep(now) == 1
    with pytest.raises(UnknownAccount):
        accounts.get(old.id)
    assert accounts.get(recent.id) == recent and accounts.get(active.id) == active
    assert set(accounts.key_index().values()) == {recent.id, active.id}
    assert accounts.sweep(T0 + 60 * DAY + RETENTION_AFTER_CLOSE_SECONDS + 1) == 1


def test_the_public_view_hides_key_digests_and_webhook_secrets(accounts):
    rec = accounts.create(account(1, webhook_secrets=["whsec_supersecretvalue1234"]))
    view = accounts.get(rec.id).public_view()
    assert "key_digests" not in view
    assert view["webhook_secrets"] == ["…1234"]
    assert view["email"] == rec.email


def test_account_values_are_encrypted_on_disk(accounts, core_dir):
    accounts.create(account(1, email="very.private.person@example.org", senders=["SECRETCO"]))
    raw = (core_dir / "data.mdb").read_bytes()
    assert b"very.private.person@example.org" not in raw
    assert b"SECRETCO" not in raw


def test_deleting_an_account_shreds_its_data_key_and_tells_the_ledger(tmp_path, core_dir):
    env = open_env(core_dir, map_size=16 << 20)
    deleted = []
    store = AccountStore(env, account_keys_in(tmp_path / "keys"), on_deleted=deleted.append)
    rec = store.create(account(1, email="stale.copy@example.org"))
    with env.begin() as txn:
        blob = bytes(txn.get(store.token(rec.id), db=store._db))
    assert store.delete(rec.id)
    assert deleted == [store.token(rec.id)]  # the ledger is told the token: all the store knows
    fresh = account_keys_in(tmp_path / "keys")  # a new process holding the master key
    with pytest.raises(KeyUnavailable):
        fresh.sealer(rec.id)
    ring = KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))
    for name in ring.named_keys():  # what a stale page still holds opens under no key left
        with pytest.raises(CorruptRecord):
            ring.named_sealer(name).open(blob, store.token(rec.id))
    env.close()


def test_a_deletion_that_crashed_before_the_shred_is_finished_by_the_next_sweep(tmp_path, core_dir):
    env = open_env(core_dir, map_size=16 << 20)
    keys = account_keys_in(tmp_path / "keys")
    store = AccountStore(env, keys)
    rec = store.create(account(1))
    real_shred = keys.shred_token
    keys.shred_token = lambda *a, **k: (_ for _ in ()).throw(OSError("power cut"))
    with pytest.raises(OSError):
        store.delete(rec.id)
    keys.shred_token = real_shred
    assert keys.has(rec.id)  # the record is gone, the key not yet
    with pytest.raises(UnknownAccount):
        store.get(rec.id)
    store.sweep(T0)
    assert not keys.has(rec.id)
    env.close()


def _every_key_and_value(env) -> list[bytes]:
    with env.begin() as txn:
        names = [bytes(k) for k, _ in txn.cursor()]
    out = list(names)
    for name in names:
        with env.begin(db=env.open_db(name, create=False)) as txn:
            out.extend(bytes(x) for kv in txn.cursor() for x in kv)
    return out


def test_an_older_layout_keyed_by_account_id_is_moved_to_tokens_when_the_stores_open(tmp_path, core_dir):
    """An environment written by an older version (records, digest index, closure and API key rows
    keyed by the plaintext account id) opens with everything readable, and no live key or value names
    the account any more."""
    env = open_env(core_dir, map_size=16 << 20)
    keys = account_keys_in(tmp_path / "keys")
    rec = account(7, state=CLOSED, closed_at=T0)
    keys.create(rec.id)
    sealer, key = keys.sealer(rec.id), rec.id.encode()
    row = f"{rec.id}/{key_id(rec.key_digests[0])}".encode()
    with env.begin(write=True) as txn:  # the older layout, as that version wrote it
        txn.put(key, sealer.seal(msgpack.packb(asdict(rec)), key), db=env.open_db(b"accounts", txn=txn))
        txn.put(rec.key_digests[0], key, db=env.open_db(b"api_key_digests", txn=txn))
        txn.put(key, struct.pack(">d", T0), db=env.open_db(b"account_closures", txn=txn))
        env.open_db(b"account_shred_pending", txn=txn)
        txn.put(row, sealer.seal(msgpack.packb(["…abcd", T0, None, None]), row),
                db=env.open_db(b"api_keys", txn=txn))
    store, rows = AccountStore(env, keys), ApiKeyStore(env, keys)
    assert (store.migrated, rows.migrated) == (1, 1)
    assert store.get(rec.id) == rec
    assert store.key_index() == {rec.key_digests[0]: rec.id}
    assert [(i.id, i.hint) for i in rows.for_account(rec.id).values()] == [
        (key_id(rec.key_digests[0]), "…abcd")]
    assert [x for x in _every_key_and_value(env) if key in x] == []
    assert AccountStore(env, keys).migrated == 0  # done once
    assert store.sweep(T0 + RETENTION_AFTER_CLOSE_SECONDS + DAY) == 1  # its closure moved too
    rows.close()
    env.close()
