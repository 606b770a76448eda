"""Per-account keys: made once, durable, cached (bounded), shredded for good; keyed tokens for ids."""

from __future__ import annotations

import os

import pytest

from engine.errors import CorruptRecord, KeyUnavailable
from storage.account_keys import DATA, LEDGER, AccountKeys
from storage.keys import KeyRing, LocalKeyProvider
from storage.pseudonyms import Pseudonyms
from tests.storage.conftest import account_keys_in


def test_keys_survive_a_restart_and_differ_per_account_and_purpose(tmp_path):
    keys = account_keys_in(tmp_path / "keys", "acc_a", "acc_b")
    blob = keys.sealer("acc_a").seal(b"record", b"id")
    again = account_keys_in(tmp_path / "keys")
    assert again.sealer("acc_a").open(blob, b"id") == b"record"
    for other in (again.sealer("acc_b"), again.sealer("acc_a", LEDGER)):
        with pytest.raises(CorruptRecord):
            other.open(blob, b"id")


def test_creating_twice_keeps_the_first_keys(tmp_path):
    keys = account_keys_in(tmp_path / "keys", "acc_a")
    blob = keys.sealer("acc_a").seal(b"x")
    keys.create("acc_a")
    assert account_keys_in(tmp_path / "keys").sealer("acc_a").open(blob) == b"x"


def test_a_shredded_key_is_gone_from_memory_and_disk_and_nothing_opens_its_blobs(tmp_path):
    keys = account_keys_in(tmp_path / "keys", "acc_a")
    data_blob = keys.sealer("acc_a", DATA).seal(b"email", b"id")
    ledger_blob = keys.sealer("acc_a", LEDGER).seal(b"tx", b"id")
    wrapped_file = (tmp_path / "keys" / "accounts" / f"{keys.token('acc_a').hex()}.key").read_bytes()
    keys.shred("acc_a", (DATA,))
    with pytest.raises(KeyUnavailable):
        keys.sealer("acc_a", DATA)
    assert keys.sealer("acc_a", LEDGER).open(ledger_blob, b"id") == b"tx"  # the other purpose lives
    keys.shred("acc_a")
    assert list((tmp_path / "keys" / "accounts").iterdir()) == []
    fresh = account_keys_in(tmp_path / "keys")  # a new process, with the master key
    for purpose in (DATA, LEDGER):
        with pytest.raises(KeyUnavailable):
            fresh.sealer("acc_a", purpose)
    ring = KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))
    for name in ring.named_keys():
        for blob in (data_blob, ledger_blob):
            with pytest.raises(CorruptRecord):
                ring.named_sealer(name).open(blob, b"id")
    assert wrapped_file not in b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    keys.shred("acc_a")  # idempotent


def test_the_cache_is_bounded_and_a_miss_unwraps_again(tmp_path):
    accounts = [f"acc_{i}" for i in range(5)]
    account_keys_in(tmp_path / "keys", *accounts)
    keys = account_keys_in(tmp_path / "keys", cache_size=2)  # a fresh process: nothing cached
    for account in accounts:
        keys.sealer(account)
    assert len(keys._cache) == 2 and keys.unwraps == 5
    keys.sealer(accounts[-1])
    assert keys.unwraps == 5  # a hit does not unwrap
    keys.sealer(accounts[0])
    assert keys.unwraps == 6  # evicted: unwrapped again


def test_files_are_named_by_token_not_by_account_id(tmp_path):
    account_keys_in(tmp_path / "keys", "acc_visibleid")
    names = " ".join(p.name for p in (tmp_path / "keys").rglob("*"))
    data = b"".join(p.read_bytes() for p in (tmp_path / "keys").rglob("*") if p.is_file())
    assert "visibleid" not in names and b"visibleid" not in data


def test_rewrap_moves_every_account_key_to_a_new_kek(tmp_path):
    keys = account_keys_in(tmp_path / "keys", "acc_a")
    blob = keys.sealer("acc_a").seal(b"x")
    new = LocalKeyProvider(tmp_path / "new-kek")
    assert keys.rewrap(new) == 1
    moved = AccountKeys(tmp_path / "keys" / "accounts", new, keys.pseudonyms)
    assert moved.sealer("acc_a").open(blob) == b"x"
    with pytest.raises(KeyUnavailable):
        AccountKeys(tmp_path / "keys" / "accounts", LocalKeyProvider(tmp_path / "keys"),
                    keys.pseudonyms).sealer("acc_a")


def test_tokens_are_stable_keyed_and_domain_separated():
    secret = os.urandom(32)
    p, q = Pseudonyms(secret), Pseudonyms(os.urandom(32))
    assert p.account("acc_1") == Pseudonyms(secret).account("acc_1")
    assert p.account("acc_1") != q.account("acc_1") and p.account("acc_1") != p.account("acc_2")
    assert p.pseudonym("acc_1") == "psn_" + p.account("acc_1").hex()
    assert p.natural_key("deposit", "tron", "0xab") != p.natural_key("deposit", "eth", "0xab")
    assert p.natural_key("a", "b") != p.natural_key("a\x00b")[:0] + p.natural_key("ab")
    assert p.natural_key("account", "acc_1")[:16] != p.account("acc_1")


def test_the_key_ring_keeps_hmac_secrets_wrapped_and_stable(tmp_path):
    ring = KeyRing(tmp_path, LocalKeyProvider(tmp_path))
    secret = ring.secret("pseudonym")
    assert len(secret) == 32 and secret != ring.secret("idempotency")
    assert KeyRing(tmp_path, LocalKeyProvider(tmp_path)).secret("pseudonym") == secret
    assert secret not in b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name != "master.key")
