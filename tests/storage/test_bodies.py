"""BodyStore: encrypted bodies in the caller's txn, TTL purge, crypto-shredding, and fault handling."""

from __future__ import annotations

import pytest

from engine.errors import CorruptRecord, KeyUnavailable, StoreFull
from storage import bodies as bodies_module
from storage.bodies import BodyStore, durable_write
from storage.env import open_env
from storage.keys import KEY_STORE_FILE, KeyRing, LocalKeyProvider

DAY = 86400


def put(store, items):
    with store.env.begin(write=True) as txn:
        store.put_many(txn, items)


def discard(store, ids):
    with store.env.begin(write=True) as txn:
        store.discard_many(txn, ids)


def test_a_body_written_in_a_txn_reads_back_after_commit(store, ids, clock):
    mid = ids.new()
    put(store, [(mid, "hello wörld ✓", clock.now + 600)])
    assert store.get(mid) == "hello wörld ✓"
    assert list(store.pending_ids()) == [mid]


def test_a_body_in_an_aborted_txn_is_not_stored(store, ids, clock):
    mid = ids.new()
    txn = store.env.begin(write=True)
    store.put_many(txn, [(mid, "x", clock.now + 60)])
    txn.abort()
    assert store.get(mid) is None and store.count() == 0


def test_a_discarded_body_is_gone_and_leaves_no_ttl_entry(store, ids, clock):
    a, b = ids.new(), ids.new()
    put(store, [(a, "one", clock.now + 60), (b, "two", clock.now + 60)])
    discard(store, [a, ids.new()])  # an unknown id is ignored
    assert store.get(a) is None and store.get(b) == "two"
    with store.env.begin() as txn:
        assert txn.stat(store._ttl)["entries"] == 1


def test_an_expired_body_reads_as_gone_even_before_the_sweep(store, ids, clock):
    mid = ids.new()
    put(store, [(mid, "soon gone", clock.now + 30)])
    clock.advance(31)
    assert store.get(mid) is None


def test_an_expiry_beyond_the_max_ttl_is_clamped_to_its_windows_start_plus_the_max_ttl(
        env, keyring, ids, clock):
    store = BodyStore(env, keyring, max_ttl_seconds=3600, clock=clock)
    mid = ids.new()
    window_start = keyring.window_end(keyring.body_window(clock.now)) - keyring.window_seconds
    put(store, [(mid, "x", clock.now + 10 * DAY)])
    clock.now = window_start + 3600 - 1
    assert store.get(mid) == "x"
    clock.now = window_start + 3600 + 1
    assert store.get(mid) is None
    assert store.sweep().purged == 1


def test_sweep_purges_only_due_bodies(store, ids, clock):
    due = [ids.new() for _ in range(50)]
    later = [ids.new() for _ in range(30)]
    put(store, [(m, "a", clock.now + 100) for m in due] + [(m, "b", clock.now + 900) for m in later])
    clock.advance(101)
    result = store.sweep()
    assert (result.purged, result.pending) == (50, 30)
    assert list(store.pending_ids()) == later


def test_a_window_key_is_shredded_once_its_start_plus_the_max_ttl_has_passed(
        store, ids, clock, keyring):
    """No body sealed under a window's key can be read more than the max TTL after the window began."""
    mid = ids.new()
    put(store, [(mid, "x", clock.now + 60)])
    window = keyring.body_window(clock.now)
    horizon = keyring.window_end(window) - keyring.window_seconds + DAY
    clock.now = horizon - 1
    assert store.sweep().shredded_windows == ()
    assert window in keyring.live_windows()
    clock.now = horizon
    assert store.sweep().shredded_windows == (window,)
    assert window not in keyring.live_windows() and keyring.is_shredded(window)


def test_new_writes_after_a_shred_use_a_fresh_window_key(store, ids, clock, keyring):
    put(store, [(ids.new(), "old", clock.now + 60)])
    clock.advance(2 * DAY)
    store.sweep()
    mid = ids.new()
    put(store, [(mid, "new", clock.now + 60)])
    assert store.get(mid) == "new"
    assert keyring.body_window(clock.now) in keyring.live_windows()
    assert all(keyring.window_end(w) > clock.now for w in keyring.live_windows())


def test_a_sweep_prepares_the_next_windows_key_ahead_of_the_write_path(store, clock, keyring):
    store.sweep()
    assert keyring.body_window(clock.now) + 1 in keyring.live_windows()


def test_pending_ids_walks_every_chunk_in_order(store, ids, clock, monkeypatch):
    monkeypatch.setattr(bodies_module, "_PENDING_CHUNK", 7)
    mids = [ids.new() for _ in range(30)]
    put(store, [(m, "x", clock.now + 60) for m in mids])
    assert list(store.pending_ids()) == mids


def test_a_tampered_value_raises_corrupt_record_and_alarms_while_others_stay_readable(
        store, ids, clock):
    a, b = ids.new(), ids.new()
    put(store, [(a, "alpha", clock.now + 60), (b, "beta", clock.now + 60)])
    key = bytes.fromhex(a[4:])
    with store.env.begin(write=True, db=store._bodies) as txn:
        value = bytearray(txn.get(key))
        value[-3] ^= 0x40
        txn.put(key, bytes(value))
    with pytest.raises(CorruptRecord, match=a):
        store.get(a)
    assert store.alarms.counts["corrupt_record"] == 1
    assert store.get(b) == "beta"


@pytest.mark.parametrize("keep", [0, 5, 12, 30])
def test_a_truncated_value_raises_corrupt_record(store, ids, clock, keep):
    mid = ids.new()
    put(store, [(mid, "some body text", clock.now + 60)])
    key = bytes.fromhex(mid[4:])
    with store.env.begin(write=True, db=store._bodies) as txn:
        txn.put(key, bytes(txn.get(key))[:keep])
    with pytest.raises(CorruptRecord):
        store.get(mid)
    assert store.alarms.counts["corrupt_record"] == 1


def test_a_body_swapped_onto_another_message_id_fails_authentication(store, ids, clock):
    a, b = ids.new(), ids.new()
    put(store, [(a, "for a", clock.now + 60), (b, "for b", clock.now + 60)])
    with store.env.begin(write=True, db=store._bodies) as txn:
        txn.put(bytes.fromhex(b[4:]), bytes(txn.get(bytes.fromhex(a[4:]))))
    with pytest.raises(CorruptRecord):
        store.get(b)
    assert store.get(a) == "for a"


def test_a_bit_flipped_in_data_mdb_on_disk_is_detected(data_dir, keyring, ids, clock):
    path = data_dir / "pop_x"
    env = open_env(path, map_size=8 << 20)
    store = BodyStore(env, keyring, clock=clock)
    mids = [ids.new() for _ in range(20)]
    put(store, [(m, f"body number {i:04d}", clock.now + 60) for i, m in enumerate(mids)])
    with env.begin(db=store._bodies) as txn:
        blob = bytes(txn.get(bytes.fromhex(mids[7][4:])))[8:]
    env.close()
    raw = bytearray((path / "data.mdb").read_bytes())
    at = raw.find(blob)
    assert at > 0
    raw[at + len(blob) - 20] ^= 0x01  # inside the ciphertext
    (path / "data.mdb").write_bytes(bytes(raw))
    env = open_env(path, map_size=8 << 20)
    store = BodyStore(env, keyring, clock=clock)
    with pytest.raises(CorruptRecord):
        store.get(mids[7])
    others = [store.get(m) for i, m in enumerate(mids) if i != 7]
    assert others == [f"body number {i:04d}" for i in range(20) if i != 7]
    env.close()


def test_a_lost_key_store_is_reported_as_key_unavailable_not_as_corruption(
        env, data_dir, keyring, ids, clock):
    put(BodyStore(env, keyring, clock=clock), [(ids.new(), "x", clock.now + 60)])
    (data_dir / "keys" / KEY_STORE_FILE).unlink()
    fresh = KeyRing(data_dir / "keys", LocalKeyProvider(data_dir / "keys"))
    with pytest.raises(KeyUnavailable, match="missing or was replaced"):
        BodyStore(env, fresh, clock=clock)


def test_a_missing_window_key_gives_key_unavailable_and_an_alarm(store, keyring, ids, clock):
    mid = ids.new()
    put(store, [(mid, "x", clock.now + 60)])
    window = keyring.body_window(clock.now)
    del keyring._windows[window]  # simulate a key store that lost this one key
    del keyring._wrapped_windows[window]
    with pytest.raises(KeyUnavailable, match="lost or replaced"):
        store.get(mid)
    assert store.alarms.counts["key_unavailable"] == 1


def test_a_wrong_master_key_stops_the_key_ring_with_a_clear_message(data_dir, keyring):
    keyring.body_sealer(1)
    (data_dir / "keys" / "master.key").write_bytes(bytes(32))
    with pytest.raises(KeyUnavailable, match="master key"):
        KeyRing(data_dir / "keys", LocalKeyProvider(data_dir / "keys"))


def test_a_full_map_raises_store_full_and_loses_nothing_committed(data_dir, keyring, ids, clock):
    env = open_env(data_dir / "tiny", map_size=256 << 10)
    store = BodyStore(env, keyring, clock=clock)
    committed: list[str] = []
    with pytest.raises(StoreFull, match="full"):
        for _ in range(1000):
            batch = [ids.new() for _ in range(50)]
            with durable_write(env) as txn:
                store.put_many(txn, [(m, "z" * 200, clock.now + 60) for m in batch])
            committed.extend(batch)
    assert len(committed) > 0
    assert all(store.get(m) == "z" * 200 for m in committed)
    assert store.count() == len(committed)
    discard(store, committed[:100])  # after the failure the store still takes writes
    put(store, [(ids.new(), "small", clock.now + 60)])
    env.close()


def test_put_many_itself_raises_store_full_when_the_map_fills_inside_the_batch(
        data_dir, keyring, ids, clock):
    env = open_env(data_dir / "tiny2", map_size=256 << 10)
    store = BodyStore(env, keyring, clock=clock)
    txn = env.begin(write=True)
    with pytest.raises(StoreFull, match="not written"):
        store.put_many(txn, [(ids.new(), "y" * 300, clock.now + 60) for _ in range(2000)])
    txn.abort()
    assert store.count() == 0
    env.close()


def test_a_malformed_message_id_is_refused(store, clock):
    with pytest.raises(ValueError):
        put(store, [("msg_nothex", "x", clock.now + 60)])


def test_a_large_backlog_is_purged_across_several_small_transactions(store, ids, clock,
                                                                      monkeypatch):
    monkeypatch.setattr(bodies_module, "SWEEP_BATCH", 7)
    due = [ids.new() for _ in range(30)]
    live = [ids.new() for _ in range(3)]
    put(store, [(m, "a", clock.now + 10) for m in due] + [(m, "b", clock.now + 999) for m in live])
    clock.advance(11)
    result = store.sweep()
    assert (result.purged, result.pending) == (30, 3)
    assert list(store.pending_ids()) == live


def test_an_extended_expiry_written_behind_the_stores_back_fails_authentication(store, ids, clock):
    mid = ids.new()
    put(store, [(mid, "short lived", clock.now + 60)])
    key = bytes.fromhex(mid[4:])
    with store.env.begin(write=True, db=store._bodies) as txn:
        value = bytes(txn.get(key))
        txn.put(key, (2**62).to_bytes(8, "big") + value[8:])
    with pytest.raises(CorruptRecord):
        store.get(mid)


def test_a_damaged_key_id_is_reported_as_corruption_not_as_a_lost_key(store, ids, clock):
    mid = ids.new()
    put(store, [(mid, "x", clock.now + 60)])
    key = bytes.fromhex(mid[4:])
    with store.env.begin(write=True, db=store._bodies) as txn:
        value = bytearray(txn.get(key))
        value[9] ^= 0x10  # the first byte of the key id
        txn.put(key, bytes(value))
    with pytest.raises(CorruptRecord, match="cannot belong"):
        store.get(mid)
    assert store.alarms.counts == {"corrupt_record": 1}
