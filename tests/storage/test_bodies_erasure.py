"""Issue 3's "done means" for bodies: no plaintext on disk, and after the TTL no key for what is left.

Both tests scan the raw bytes of every file under the data directory (LMDB data and lock files, the key
store, the master key), so they also cover stale LMDB pages and anything a backup would copy.
"""

from __future__ import annotations

import shutil

import pytest

from engine.errors import CorruptRecord, KeyUnavailable
from storage.crypto import Sealer
from storage.keys import KEY_STORE_FILE, LocalKeyProvider

DAY = 86400
N = 3000


def marker(i: int) -> str:
    return f"PLAINTEXT-MARKER-{i:06d} your code is 4711"


def every_file_bytes(root) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def write_batches(store, ids, clock, n=N, batch=500):
    mids = []
    for start in range(0, n, batch):
        chunk = [(ids.new(), marker(i), clock.now + 4 * 3600) for i in range(start, start + batch)]
        with store.env.begin(write=True) as txn:
            store.put_many(txn, chunk)
        mids.extend(m for m, _, _ in chunk)
    return mids


def test_no_plaintext_reaches_any_file_under_the_data_dir_after_writes_acks_and_sweeps(
        store, ids, clock, data_dir):
    mids = write_batches(store, ids, clock)
    assert store.get(mids[0]) == marker(0)  # the bodies really are there, just sealed
    with store.env.begin(write=True) as txn:
        store.discard_many(txn, mids[: N // 2])  # carrier acknowledged half
    clock.advance(60)
    store.sweep()
    raw = every_file_bytes(data_dir)
    assert b"PLAINTEXT-MARKER" not in raw and b"your code is 4711" not in raw
    assert all(marker(i).encode() not in raw for i in range(0, N, 97))
    provider = LocalKeyProvider(data_dir / "keys")
    for wrapped in store.keys._wrapped_windows.values():
        assert provider.unwrap(wrapped) not in raw  # no data key in clear anywhere either


def test_after_the_ttl_the_remaining_ciphertext_is_on_disk_but_its_key_is_gone_everywhere(
        store, ids, clock, data_dir, keyring, tmp_path):
    mids = write_batches(store, ids, clock, n=1000)
    with store.env.begin(write=True) as txn:
        store.discard_many(txn, mids[:400])
    window = keyring.body_window(clock.now)
    provider = LocalKeyProvider(data_dir / "keys")
    data_key = provider.unwrap(keyring._wrapped_windows[window])  # captured only to prove the point
    wrapped = keyring._wrapped_windows[window]
    msg_key = bytes.fromhex(mids[-1][4:])
    with store.env.begin(db=store._bodies) as txn:
        value = bytes(txn.get(msg_key))
    blob, aad = value[8:], value[:8] + msg_key  # associated data: expiry + message id

    clock.advance(DAY + 3600)  # past the window's end plus the max TTL
    backup = tmp_path / "backup.mdb"
    (tmp_path / "backup_env").mkdir()
    store.env.copy(str(tmp_path / "backup_env"))  # an LMDB backup taken before the sweep
    shutil.copyfile(store.env.path() + "/data.mdb", backup)  # and a raw file copy
    result = store.sweep()
    assert result.purged == 600 and window in result.shredded_windows

    # The ciphertext survives in the copies (and possibly stale pages) ...
    assert blob in backup.read_bytes()
    assert blob in (tmp_path / "backup_env" / "data.mdb").read_bytes()
    # ... and the key that was needed would have opened it: the copy really holds that body.
    assert Sealer(data_key, window).open(blob, aad) == marker(999).encode()
    # But the key is gone: not in the key store (wrapped or clear), not in any file, not in memory.
    everything = every_file_bytes(data_dir)
    assert wrapped not in (data_dir / "keys" / KEY_STORE_FILE).read_bytes()
    assert data_key not in everything and wrapped not in everything
    with pytest.raises(KeyUnavailable, match="shredded"):
        keyring.body_sealer(window)
    # No key that still exists opens it.
    survivors = [keyring.body_sealer(w) for w in keyring.live_windows()]
    survivors += [keyring.named_sealer(n) for n in keyring.named_keys()]
    for sealer in survivors:
        with pytest.raises(CorruptRecord):
            sealer.open(blob, aad)
    assert store.get(mids[-1]) is None
