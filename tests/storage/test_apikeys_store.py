"""API key metadata store: sealed rows, revocation, last-used at minute resolution, sweeps and erasure."""

from __future__ import annotations

import hashlib
import time

import pytest

from engine.errors import KeyUnavailable
from storage.account_keys import DATA, AccountKeys
from storage.apikeys import USAGE_RESOLUTION_SECONDS, ApiKeyStore, key_id
from storage.keys import LocalKeyProvider
from storage.pseudonyms import Pseudonyms
from tests.storage.conftest import T0
from tests.waiting import wait_for

DAY = 86400
D1, D2 = hashlib.sha256(b"k1").digest(), hashlib.sha256(b"k2").digest()


@pytest.fixture
def account_keys(data_dir):
    keys = AccountKeys(data_dir / "keys" / "accounts", LocalKeyProvider(data_dir / "keys"),
                       Pseudonyms(b"p" * 32))
    for account_id in ("acc_1", "acc_2", "acc_10", "acc_gone"):
        keys.create(account_id)
    return keys


def _store(env, account_keys) -> ApiKeyStore:
    return ApiKeyStore(env, account_keys)


def test_a_key_id_is_stable_and_reveals_nothing_of_the_digest():
    assert key_id(D1) == key_id(D1) != key_id(D2)
    assert key_id(D1).startswith("key_") and len(key_id(D1)) == 28
    assert D1.hex()[:8] not in key_id(D1)


def test_rows_are_listed_per_account_revoked_with_a_time_and_sealed_at_rest(env, account_keys,
                                                                            data_dir):
    store = _store(env, account_keys)
    store.add("acc_1", D1, "sk_live_…HINT", now=T0)
    store.add("acc_2", D2, "sk_live_…OTHR", now=T0)
    info = store.for_account("acc_1")[key_id(D1)]
    assert (info.hint, info.created_at, info.last_used_at, info.revoked_at) == (
        "sk_live_…HINT", T0, None, None)
    store.revoke("acc_1", info, now=T0 + 5)
    assert store.for_account("acc_1")[key_id(D1)].revoked_at == T0 + 5
    assert list(store.for_account("acc_2")) == [key_id(D2)]
    raw = b"".join(p.read_bytes() for p in (data_dir / "pop_fra").iterdir())
    assert b"HINT" not in raw and "sk_live_…".encode() not in raw
    store.close()


def test_last_used_is_written_in_the_background_at_most_once_a_minute(env, account_keys):
    store = _store(env, account_keys)
    store.add("acc_1", D1, "h", now=T0)
    now = time.time()
    store.touch("acc_1", D1, now)
    wait_for(lambda: store.for_account("acc_1")[key_id(D1)].last_used_at == now, "usage written")
    store.touch("acc_1", D1, now + USAGE_RESOLUTION_SECONDS / 2)  # within the minute: not written
    store.touch("acc_1", D1, now + USAGE_RESOLUTION_SECONDS + 1)
    store.close()  # writes what is queued
    assert store.for_account("acc_1")[key_id(D1)].last_used_at == now + USAGE_RESOLUTION_SECONDS + 1


def test_the_sweep_removes_keys_revoked_90_days_ago_and_rows_of_deleted_accounts(env, account_keys):
    store = _store(env, account_keys)
    for account_id, digest in (("acc_1", D1), ("acc_1", D2), ("acc_gone", D1)):
        store.add(account_id, digest, "h", now=T0)
    store.revoke("acc_1", store.for_account("acc_1")[key_id(D1)], now=T0)
    account_keys.shred("acc_gone", (DATA,))  # the account was deleted: its data key is gone
    assert store.sweep(T0 + 89 * DAY) == 1  # only the deleted account's row
    assert store.sweep(T0 + 91 * DAY) == 1  # the revoked key, now past 90 days
    assert list(store.for_account("acc_1")) == [key_id(D2)] and store.for_account("acc_gone") == {}
    store.close()


def test_rows_are_sealed_under_the_accounts_data_key_and_unreadable_once_it_is_shredded(env,
                                                                                      account_keys):
    store = _store(env, account_keys)
    store.add("acc_2", D2, "h", now=T0)
    assert store.for_account("acc_2")
    account_keys.shred("acc_2", (DATA,))  # erasure: every copy of the row (stale pages, backups)...
    with pytest.raises(KeyUnavailable):
        store.for_account("acc_2")  # ...opens no more, even with the master key
    store.close()


def test_erasure_forgets_every_row_of_the_account_only(env, account_keys):
    store = _store(env, account_keys)
    store.add("acc_1", D1, "h")
    store.add("acc_1", D2, "h")
    store.add("acc_10", D1, "h")  # a prefix of another account's id must not match
    assert store.forget_account("acc_1") == 2
    assert store.for_account("acc_1") == {} and len(store.for_account("acc_10")) == 1
    store.close()


def test_revoked_lists_each_revoked_key_with_its_account_and_time_and_skips_erased_accounts(
        env, account_keys):
    store = _store(env, account_keys)
    for account_id, digest in (("acc_1", D1), ("acc_1", D2), ("acc_2", D1), ("acc_gone", D2)):
        store.add(account_id, digest, "h", now=T0)
    store.revoke("acc_1", store.for_account("acc_1")[key_id(D2)], now=T0 + 7)
    store.revoke("acc_gone", store.for_account("acc_gone")[key_id(D2)], now=T0 + 8)
    account_keys.shred("acc_gone", (DATA,))  # erased: its rows name no one any more
    assert store.revoked() == [("acc_1", key_id(D2), T0 + 7)]
    store.close()
