"""The key directory's disk is full: every key write is ``StoreFull`` for the ``keys`` store, and a key whose
save failed is never used - not kept in memory, not handed out, not sealed under.

The full disk is simulated: ``os.write`` fails with ENOSPC for files under the key directory while the
test says so (``tests/engine/cluster/test_worker_disk_full_new_account_functional.py`` and the POP tests
use a real tmpfs).
"""

from __future__ import annotations

import errno
import os

import pytest

from engine.errors import StoreFull
from storage.account_keys import AccountKeys
from storage.full import FULL_REFUSALS
from storage.keys import KEY_STORE, KEY_STORE_FILE, KeyRing, LocalKeyProvider
from storage.pseudonyms import Pseudonyms


class FullDisk:
    """While ``on``: ``os.write`` to a file under ``directory`` fails with ENOSPC."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, directory) -> None:
        self.on = False
        self.directory = str(directory)
        real = os.write

        def write(fd: int, data) -> int:
            if self.on and os.readlink(f"/proc/self/fd/{fd}").startswith(self.directory):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, data)

        monkeypatch.setattr(os, "write", write)


@pytest.fixture
def keys_dir(tmp_path):
    return tmp_path / "keys"


@pytest.fixture
def disk(monkeypatch, keys_dir) -> FullDisk:
    LocalKeyProvider(keys_dir)  # the master key exists before the disk fills
    return FullDisk(monkeypatch, keys_dir)


def ring(keys_dir) -> KeyRing:
    return KeyRing(keys_dir, LocalKeyProvider(keys_dir), window_seconds=60)


def test_a_secret_whose_save_failed_is_never_handed_out(keys_dir, disk):
    keys = ring(keys_dir)
    refused = FULL_REFUSALS[KEY_STORE]
    disk.on = True
    for _ in range(2):  # before: the second call returned the secret kept in memory, never saved
        with pytest.raises(StoreFull, match="keys store is full"):
            keys.secret("pseudonym")
    assert FULL_REFUSALS[KEY_STORE] == refused + 2  # smsroute_store_full_refusals_total{store="keys"}
    assert not keys.has_named("secret:pseudonym")
    assert not list(keys_dir.glob("*.tmp"))  # the partly written store is removed, not left taking space
    disk.on = False
    secret = keys.secret("pseudonym")
    assert ring(keys_dir).secret("pseudonym") == secret  # what was handed out is what a restart has


def test_a_window_key_whose_save_failed_seals_nothing_and_the_next_one_made_is_durable(keys_dir, disk):
    keys = ring(keys_dir)
    window = keys.body_window(6000.0)
    disk.on = True
    with pytest.raises(StoreFull):
        keys.body_sealer(window)
    assert window not in keys.live_windows()  # not even in memory
    disk.on = False
    blob = keys.body_sealer(window).seal(b"body", b"id")
    assert ring(keys_dir).body_sealer(window, create=False).open(blob, b"id") == b"body"


def test_a_shred_whose_save_failed_keeps_the_key_and_is_done_by_the_next_try(keys_dir, disk):
    keys = ring(keys_dir)
    window = keys.body_window(6000.0)
    blob = keys.body_sealer(window).seal(b"body", b"id")
    disk.on = True
    with pytest.raises(StoreFull):
        keys.shred_window(window)
    assert keys.body_sealer(window, create=False).open(blob, b"id") == b"body"  # memory = disk
    disk.on = False
    keys.shred_window(window)  # before: a no-op (memory said shredded), the key stayed in the file
    assert ring(keys_dir).is_shredded(window)


def test_an_account_key_that_cannot_be_stored_is_store_full_and_not_cached(keys_dir, disk):
    provider = LocalKeyProvider(keys_dir)
    keys = AccountKeys(keys_dir / "accounts", provider, Pseudonyms(ring(keys_dir).secret("pseudonym")))
    disk.on = True
    with pytest.raises(StoreFull, match="keys store is full"):  # before: OSError
        keys.create("acc_a")
    assert not keys.has("acc_a") and not list((keys_dir / "accounts").iterdir())
    disk.on = False
    keys.create("acc_a")
    assert keys.has("acc_a")


def test_the_key_store_file_is_untouched_by_a_failed_save(keys_dir, disk):
    keys = ring(keys_dir)
    keys.store_sealer("ledger")
    before = (keys_dir / KEY_STORE_FILE).read_bytes()
    disk.on = True
    with pytest.raises(StoreFull):
        keys.store_sealer("holds")
    assert (keys_dir / KEY_STORE_FILE).read_bytes() == before
