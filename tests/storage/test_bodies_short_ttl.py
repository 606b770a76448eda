"""Body TTLs shorter than a key window (issue 14): the key in use is never shredded, and still no body
stays decryptable past its TTL (key-level), across restarts with another TTL too."""

from __future__ import annotations

import msgpack
import pytest

from engine.errors import KeyUnavailable
from storage.bodies import BodyStore, body_max_ttl
from storage.keys import KeyRing, LocalKeyProvider
from tests.storage.conftest import FakeClock

DAY = 86400


def _ring(data_dir, clock: FakeClock) -> KeyRing:
    return KeyRing(data_dir / "keys", LocalKeyProvider(data_dir / "keys"), clock=clock)


def _put(env, store: BodyStore, message_id: str, body: str, expires_at: float) -> None:
    with env.begin(write=True) as txn:
        store.put_many(txn, [(message_id, body, expires_at)])


def _window_of(env, store: BodyStore, message_id: str) -> int:
    from engine.ids import id_bytes
    from storage.crypto import blob_key_id

    with env.begin(db=store._bodies) as txn:
        return blob_key_id(bytes(txn.get(id_bytes(message_id)))[8:])


def _key_gone(ring: KeyRing, window: int) -> bool:
    if not ring.is_shredded(window):
        return False
    with pytest.raises(KeyUnavailable):
        ring.body_sealer(window, create=False)
    return True


@pytest.mark.parametrize(("ttl", "sweep"), [(600, 60), (1800, 60), (5, 1), (5, 60), (1, 1)])
def test_a_short_body_ttl_keeps_accepting_bodies_and_shreds_each_key_within_the_ttl(
        env, data_dir, clock, ids, ttl, sweep):
    ring = _ring(data_dir, clock)
    store = BodyStore(env, ring, max_ttl_seconds=body_max_ttl(ttl, sweep), clock=clock)
    # the key-level promise: within the TTL when it is at least twice the sweep interval, else
    # within the TTL plus one sweep interval
    bound = ttl if ttl >= 2 * sweep else ttl + sweep
    written: list[tuple[float, str, int]] = []
    step = 0
    while step < max(40, 3 * bound // sweep + 3):  # several TTLs and windows
        mid = ids.new()
        _put(env, store, mid, f"code {step}", clock.now + ttl)  # the commit's expiry: now + TTL
        assert store.get(mid) == f"code {step}"
        written.append((clock.now, mid, _window_of(env, store, mid)))
        clock.advance(sweep)
        store.sweep()  # before the fix: shredded the window in use, the next put raised KeyUnavailable
        for at, _, window in written:
            if clock.now >= at + bound:
                assert _key_gone(ring, window), (at, clock.now, window)
        step += 1
    assert len({w for _, _, w in written}) > 3  # the bodies spanned several windows


def test_a_restart_with_another_ttl_keeps_older_bodies_until_their_own_expiry(env, data_dir, clock, ids):
    ring = _ring(data_dir, clock)
    store = BodyStore(env, ring, max_ttl_seconds=body_max_ttl(DAY, 60), clock=clock)
    old = ids.new()
    _put(env, store, old, "sealed under the day-long TTL", clock.now + 20_000)
    old_window = _window_of(env, store, old)

    # restart: the TTL tightened to 10 minutes
    ring = _ring(data_dir, clock)
    store = BodyStore(env, ring, max_ttl_seconds=body_max_ttl(600, 60), clock=clock)
    assert store.get(old) == "sealed under the day-long TTL"
    new_ids = []
    for _ in range(60):  # an hour of sweeps
        mid = ids.new()
        _put(env, store, mid, "short-lived", clock.now + 600)
        new_ids.append((clock.now, mid, _window_of(env, store, mid)))
        clock.advance(60)
        store.sweep()
        assert store.get(old) == "sealed under the day-long TTL"
        assert not ring.is_shredded(old_window)
        for at, _, window in new_ids:
            if clock.now >= at + 600:
                assert _key_gone(ring, window)

    # restart: the TTL back to a day; the 10-minute windows keep their own horizon
    ring = _ring(data_dir, clock)
    store = BodyStore(env, ring, max_ttl_seconds=body_max_ttl(DAY, 60), clock=clock)
    last_at, last, last_window = new_ids[-1]
    assert store.get(last) == "short-lived"
    later, later_expiry = ids.new(), clock.now + 50_000
    _put(env, store, later, "a day again", later_expiry)
    later_window = _window_of(env, store, later)
    assert later_window > last_window > old_window  # window ids only grow: no new key is a tombstone
    while clock.now < last_at + 600:
        clock.advance(60)
        store.sweep()
    assert _key_gone(ring, last_window) and store.get(old) == "sealed under the day-long TTL"
    while clock.now < ring.window_horizon(old_window):  # the old body's window: a day from its start
        clock.advance(600)
        store.sweep()
        if clock.now < later_expiry:
            assert store.get(later) == "a day again" and not ring.is_shredded(later_window)
    assert store.get(old) is None and _key_gone(ring, old_window)


def test_a_key_store_written_before_eras_stays_readable_under_a_short_ttl(env, data_dir, clock, ids):
    ring = _ring(data_dir, clock)
    store = BodyStore(env, ring, max_ttl_seconds=body_max_ttl(DAY, 60), clock=clock)
    old = ids.new()
    _put(env, store, old, "from an older version", clock.now + 7200)
    window = _window_of(env, store, old)
    assert window == int(clock.now // 3600)  # the version-1 numbering: hours since the epoch
    path = data_dir / "keys" / "keys.store"
    doc = msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)
    del doc["eras"]
    doc["version"] = 1
    path.write_bytes(msgpack.packb(doc))  # as an older smsroute wrote it

    ring = _ring(data_dir, clock)
    store = BodyStore(env, ring, max_ttl_seconds=body_max_ttl(600, 60), clock=clock)
    assert store.get(old) == "from an older version"
    for _ in range(30):
        mid = ids.new()
        _put(env, store, mid, "new", clock.now + 600)
        clock.advance(60)
        store.sweep()
        assert store.get(mid) == "new"
    assert store.get(old) == "from an older version"


def test_each_pop_opening_its_body_store_with_the_same_ttl_rewrites_the_key_store_once(
        data_dir, clock, monkeypatch):
    import storage.keys

    ring = _ring(data_dir, clock)
    writes = []
    real_write = storage.keys.atomic_write
    monkeypatch.setattr(storage.keys, "atomic_write", lambda *a: (writes.append(a[0]), real_write(*a)))
    ring.use_body_windows(600)  # the first POP's body store at start: the era is recorded
    ring.use_body_windows(600)  # the next POPs of the process: nothing changed, nothing written
    ring.use_body_windows(600)
    assert len(writes) == 1
    ring.use_body_windows(1200)  # another TTL: a new era, written
    assert len(writes) == 2
