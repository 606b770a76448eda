"""KeyRing and LocalKeyProvider: keys outside LMDB, atomic key store, crypto-shredding, clear failures."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from engine.errors import CorruptRecord, KeyUnavailable
from storage.keys import KEY_STORE_FILE, MASTER_KEY_FILE, RESERVE_FILE, KeyRing, LocalKeyProvider


def ring(path, **kw) -> KeyRing:
    return KeyRing(path, LocalKeyProvider(path), **kw)


def test_the_master_key_file_is_created_with_mode_0600(tmp_path):
    LocalKeyProvider(tmp_path)
    mode = stat.S_IMODE(os.stat(tmp_path / MASTER_KEY_FILE).st_mode)
    assert mode == 0o600


def test_the_key_store_holds_only_wrapped_keys(tmp_path):
    keys = ring(tmp_path, window_seconds=60)
    w = keys.body_window(1000.0)
    keys.body_sealer(w)
    raw_key = LocalKeyProvider(tmp_path).unwrap(keys._wrapped_windows[w])  # test-only peek
    assert len(raw_key) == 32
    assert raw_key not in (tmp_path / KEY_STORE_FILE).read_bytes()
    assert stat.S_IMODE(os.stat(tmp_path / KEY_STORE_FILE).st_mode) == 0o600


def test_window_keys_and_store_keys_survive_a_reopen(tmp_path):
    keys = ring(tmp_path, window_seconds=60)
    w = keys.body_window(6000.0)
    body_blob = keys.body_sealer(w).seal(b"body", b"id")
    rec_blob = keys.store_sealer("records").seal(b"record")
    again = ring(tmp_path, window_seconds=60)
    assert again.body_sealer(w, create=False).open(body_blob, b"id") == b"body"
    assert again.store_sealer("records").open(rec_blob) == b"record"
    assert again.live_windows() == [w] and again.ring_id == keys.ring_id


def test_body_window_groups_times_by_window_seconds(tmp_path):
    keys = ring(tmp_path, window_seconds=3600)
    assert keys.body_window(7200.0) == keys.body_window(10799.9) == 2
    assert keys.body_window(10800.0) == 3 and keys.window_end(2) == 10800.0


def test_a_shredded_window_key_is_gone_from_memory_and_from_the_key_store(tmp_path):
    keys = ring(tmp_path, window_seconds=60)
    w = keys.body_window(600.0)
    keys.body_sealer(w)
    wrapped = keys._wrapped_windows[w]
    assert wrapped in (tmp_path / KEY_STORE_FILE).read_bytes()
    keys.shred_window(w)
    assert wrapped not in (tmp_path / KEY_STORE_FILE).read_bytes()
    assert keys.live_windows() == []
    with pytest.raises(KeyUnavailable, match="shredded"):
        keys.body_sealer(w)
    with pytest.raises(KeyUnavailable, match="shredded"):
        ring(tmp_path, window_seconds=60).body_sealer(w)


def test_shredding_twice_or_an_unknown_window_is_harmless(tmp_path):
    keys = ring(tmp_path)
    keys.body_sealer(5)
    keys.shred_window(5)
    keys.shred_window(5)
    keys.shred_window(99)
    assert keys.is_shredded(5) and keys.is_shredded(99)


def test_tombstones_stay_bounded_and_old_windows_still_count_as_shredded(tmp_path):
    keys = ring(tmp_path)
    for w in range(5000):
        keys._tombstones.append(w)  # bulk-add without 5000 fsyncs
    keys.shred_window(5000)
    assert len(keys._tombstones) <= 4096
    assert all(keys.is_shredded(w) for w in (0, 903, 4999, 5000))
    assert not keys.is_shredded(5001)


def test_reading_an_unknown_window_without_create_names_a_lost_key_store(tmp_path):
    keys = ring(tmp_path)
    with pytest.raises(KeyUnavailable, match="lost or replaced"):
        keys.body_sealer(12, create=False)


def test_a_wrong_master_key_gives_key_unavailable_with_a_clear_message(tmp_path):
    ring(tmp_path).body_sealer(1)
    (tmp_path / MASTER_KEY_FILE).write_bytes(os.urandom(32))
    with pytest.raises(KeyUnavailable, match="master key|provider"):
        ring(tmp_path)


def test_a_wrong_master_key_is_detected_even_when_the_ring_has_no_keys_yet(tmp_path):
    ring(tmp_path)
    (tmp_path / MASTER_KEY_FILE).write_bytes(os.urandom(32))
    with pytest.raises(KeyUnavailable):
        ring(tmp_path)


def test_a_missing_master_key_next_to_a_key_store_is_not_silently_replaced(tmp_path):
    ring(tmp_path).body_sealer(1)
    (tmp_path / MASTER_KEY_FILE).unlink()
    with pytest.raises(KeyUnavailable, match="missing"):
        LocalKeyProvider(tmp_path)
    assert not (tmp_path / MASTER_KEY_FILE).exists()


def test_a_truncated_master_key_file_gives_key_unavailable(tmp_path):
    LocalKeyProvider(tmp_path)
    (tmp_path / MASTER_KEY_FILE).write_bytes(b"abc")
    with pytest.raises(KeyUnavailable, match="expected 32"):
        LocalKeyProvider(tmp_path)


def test_a_garbled_key_store_gives_corrupt_record(tmp_path):
    ring(tmp_path).body_sealer(1)
    (tmp_path / KEY_STORE_FILE).write_bytes(b"\x93garbage")
    with pytest.raises(CorruptRecord, match="key store"):
        ring(tmp_path)


def test_a_missing_key_store_starts_a_new_ring_with_a_new_id(tmp_path):
    first = ring(tmp_path)
    first.body_sealer(1)
    (tmp_path / KEY_STORE_FILE).unlink()
    second = ring(tmp_path)
    assert second.ring_id != first.ring_id and second.live_windows() == []


def test_named_keys_are_shredded_individually(tmp_path):
    keys = ring(tmp_path)
    hold = keys.named_sealer("hold:h1")
    records = keys.store_sealer("records")
    assert hold.key_id != records.key_id
    keys.shred_named("hold:h1")
    with pytest.raises(KeyUnavailable):
        keys.named_sealer("hold:h1", create=False)
    assert ring(tmp_path).named_keys() == ["records"]


def test_kek_rotation_rewraps_every_key_and_the_old_master_key_no_longer_opens_the_store(tmp_path):
    keys = ring(tmp_path)
    blob = keys.body_sealer(3).seal(b"x")
    new_dir = tmp_path / "kek2"
    keys.rewrap(LocalKeyProvider(new_dir))
    reopened = KeyRing(tmp_path, LocalKeyProvider(new_dir))
    assert reopened.body_sealer(3, create=False).open(blob) == b"x"
    with pytest.raises(KeyUnavailable):
        KeyRing(tmp_path, LocalKeyProvider(tmp_path))


def test_concurrent_first_use_of_a_window_creates_exactly_one_key(tmp_path):
    keys = ring(tmp_path)
    got: list = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        got.append(keys.body_sealer(42))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(s) for s in got}) == 1


def test_no_temporary_file_is_left_after_a_rewrite(tmp_path):
    keys = ring(tmp_path)
    keys.body_sealer(1)
    keys.shred_window(1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_STORE_FILE, RESERVE_FILE, MASTER_KEY_FILE]


def test_the_shred_reserve_is_made_at_start_for_a_key_store_written_without_one(tmp_path):
    """A key directory from before the reserve (or one whose reserve a shred gave up) gets it back at the
    next start, room for RESERVE_REWRITES rewrites of the store (each its size plus the margin), so the
    first shreds on a full disk have their room."""
    from storage.keys import RESERVE_MARGIN, RESERVE_REWRITES

    ring(tmp_path).body_sealer(1)
    (tmp_path / RESERVE_FILE).unlink()
    ring(tmp_path)
    size = RESERVE_REWRITES * ((tmp_path / KEY_STORE_FILE).stat().st_size + RESERVE_MARGIN)
    assert (tmp_path / RESERVE_FILE).stat().st_size == size
    assert (tmp_path / RESERVE_FILE).stat().st_blocks * 512 >= size  # allocated, not a sparse file
