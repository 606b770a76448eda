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

from engine.errors import KeyUnavailable, StoreFull
from storage.account_keys import AccountKeys
from storage.full import FULL_REFUSALS
from storage.keys import KEY_STORE, KEY_STORE_FILE, RESERVE_FILE, KeyRing, LocalKeyProvider
from storage.pseudonyms import Pseudonyms
from tests.engine.disk_full_support import needs_tiny_tmpfs, run_on_tiny_tmpfs


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


def test_a_shred_whose_save_failed_is_refused_in_memory_at_once_and_saved_by_the_next_try(keys_dir, disk):
    """Without room even in the reserve (here every write fails), a shredded window key is forgotten in
    memory at once - nothing unseals under it - and ``StoreFull`` says it is not on disk yet; the sweeper's
    next call saves it. Before, the key kept opening bodies for as long as the disk stayed full."""
    keys = ring(keys_dir)
    window = keys.body_window(6000.0)
    blob = keys.body_sealer(window).seal(b"body", b"id")
    disk.on = True
    with pytest.raises(StoreFull):
        keys.shred_window(window)
    with pytest.raises(KeyUnavailable):  # before: the body still opened
        keys.body_sealer(window, create=False).open(blob, b"id")
    assert not (keys_dir / RESERVE_FILE).exists()  # given up for the save (which failed here too)
    with pytest.raises(StoreFull):  # still not on disk: the sweeper keeps alarming
        keys.shred_window(window)
    assert not ring(keys_dir).is_shredded(window)  # (the honest bound: a restart now reloads it)
    disk.on = False
    keys.shred_window(window)  # saved now
    assert ring(keys_dir).is_shredded(window)
    assert (keys_dir / RESERVE_FILE).exists()  # and the reserve is back


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


def test_at_a_window_turn_with_its_key_unsaved_no_body_is_sealed_and_what_was_stored_opens_after_a_restart(
        tmp_path, keys_dir, disk):
    """The sweeper makes the next window's key ahead of time; on a full disk it cannot. At the turn, a
    batch of new bodies is refused ``StoreFull`` (the POP refuses its messages store_full and writes its
    status changes alone: ``actors.group_commit``) - never sealed under a key a restart would not have."""
    from storage.bodies import BodyStore
    from storage.env import open_env
    from tests.storage.conftest import FakeClock

    clock = FakeClock()
    keys = KeyRing(keys_dir, LocalKeyProvider(keys_dir), window_seconds=60, clock=clock)
    env = open_env(tmp_path / "pop", map_size=16 << 20)
    try:
        bodies = BodyStore(env, keys, max_ttl_seconds=240, clock=clock)
        first = "msg_" + "01" * 16
        with env.begin(write=True) as txn:
            bodies.put_many(txn, [(first, "before", clock() + 200)])
        disk.on = True
        with pytest.raises(StoreFull):  # the next window's key, made ahead of time
            bodies.sweep()
        clock.advance(60)  # the turn: the window in force has no durable key
        assert not bodies.can_seal()  # the POP's store is not ready for new messages (space_watch)
        with pytest.raises(StoreFull, match="keys store is full"), env.begin(write=True) as txn:
            bodies.put_many(txn, [("msg_" + "02" * 16, "during", clock() + 200)])
        assert keys.body_window(clock()) not in keys.live_windows()
        disk.on = False
        assert bodies.can_seal()  # space is back: the key is made (durably) by the probe
        with env.begin(write=True) as txn:
            bodies.put_many(txn, [("msg_" + "03" * 16, "after", clock() + 200)])
        again = BodyStore(env, KeyRing(keys_dir, LocalKeyProvider(keys_dir), window_seconds=60,
                                       clock=clock), max_ttl_seconds=240, clock=clock)  # a restart
        assert [again.get(mid) for mid in again.pending_ids()] == ["before", "after"]
    finally:
        env.close()


def test_a_pop_store_whose_body_key_cannot_be_stored_stays_not_ready_whatever_room_its_map_has(tmp_path):
    """The probe that makes a full POP store ready again also asks whether new bodies can be sealed: an
    LMDB file with freed pages takes the probe's write while the key store cannot be saved, and each
    "ready" would be followed by another refused commit and ALARM."""
    from storage.env import open_env
    from storage.full import FullStores
    from storage.space_watch import PROBE_SECONDS, SpaceWatch

    env = open_env(tmp_path / "pop", map_size=16 << 20)
    try:
        sealable = [False]
        board = FullStores()
        watch = SpaceWatch("fra", env, board, lambda: sealable[0])
        watch.refused(10, now=0.0)
        watch.tick(PROBE_SECONDS)  # the map has room; the key store does not
        assert watch.full and board.names() == ["message:fra"]
        sealable[0] = True
        watch.tick(2 * PROBE_SECONDS)
        assert not watch.full and board.names() == []
    finally:
        env.close()


def test_a_commit_of_status_changes_alone_needs_no_body_key(tmp_path, keys_dir, disk):
    """At a window turn with the key store unsaveable, a commit that carries no new message (status
    changes, body discards, refund bookkeeping) is written. Before, it asked for the window's key anyway
    and failed: on a full key disk no status change was written at all."""
    from types import SimpleNamespace

    from storage.bodies import BodyStore
    from storage.env import open_env
    from storage.owed_debits import OwedDebits
    from storage.pop_commit import PopCommit
    from storage.refunds import OwedRefunds
    from tests.storage.conftest import FakeClock

    clock = FakeClock()
    keys = KeyRing(keys_dir, LocalKeyProvider(keys_dir), window_seconds=60, clock=clock)
    env = open_env(tmp_path / "pop", map_size=16 << 20)
    try:
        store = SimpleNamespace(env=env, records=None, refunds=OwedRefunds(env), debits=OwedDebits(env),
                                bodies=BodyStore(env, keys, max_ttl_seconds=240, clock=clock))
        commit = PopCommit(store, body_ttl_seconds=240, expiry_grace_seconds=1)
        commit.refunds.append(SimpleNamespace(message_id="msg_" + "04" * 16))  # a refund owed
        disk.on = True
        clock.advance(60)  # the window turns: its key cannot be stored
        batch = commit.stage([], [])
        with env.begin(write=True) as txn:
            commit.write_staged(txn, batch)
        assert store.refunds.all() == ["msg_" + "04" * 16]  # written
    finally:
        env.close()


def test_a_pop_refused_for_its_key_store_names_the_keys_store_in_its_alarm(tmp_path, caplog):
    """The POP's new messages refused because the body window's key cannot be stored: its ALARM, summary
    and recovery lines name the ``keys`` store. Before, they said ``store message is full`` and the
    operator looked at the LMDB map and its disk, not the key directory's."""
    import logging

    from engine.errors import StoreFull
    from storage.env import open_env
    from storage.full import FullStores, store_full
    from storage.space_watch import SUMMARY_SECONDS, SpaceWatch

    err = store_full(KEY_STORE, logged=False)
    assert isinstance(err, StoreFull) and err.store == KEY_STORE
    env = open_env(tmp_path / "pop", map_size=16 << 20)
    try:
        watch = SpaceWatch("fra", env, FullStores(), lambda: True)
        with caplog.at_level(logging.WARNING, logger="storage.space_watch"):
            watch.refused(10, 0.0, err.store)
            watch.refused(5, SUMMARY_SECONDS + 1, err.store)
            watch.wrote_new()
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 3, lines
        assert lines[0].startswith("pop fra: ALARM store keys is full (the key directory's disk")
        assert lines[1].startswith("pop fra: ALARM store keys still full: 5 new messages refused")
        assert lines[2].startswith("pop fra: store keys takes new messages again")
        assert not any("store message" in line for line in lines)
    finally:
        env.close()


SHRED_CHILD = r"""
import json, sys
from storage.keys import KeyRing, LocalKeyProvider
from tests.engine.disk_full_support import fill_disk

keys_dir = sys.argv[1] + "/keys"
keys = KeyRing(keys_dir, LocalKeyProvider(keys_dir), window_seconds=60)
window = keys.body_window(6000.0)
blob = keys.body_sealer(window).seal(b"body", b"id")
hold = keys.named_sealer("hold:h1").seal(b"copy", b"id")
fill_disk(sys.argv[1])
errors = []
for shred in (lambda: keys.shred_window(window), lambda: keys.shred_named("hold:h1")):
    try:
        shred()
    except Exception as exc:
        errors.append(type(exc).__name__)
try:
    keys.named_sealer("hold:h2")
    new_key = "made"
except Exception as exc:
    new_key = type(exc).__name__
again = KeyRing(keys_dir, LocalKeyProvider(keys_dir), window_seconds=60)  # a restart, the disk still full
print(json.dumps({"errors": errors, "new_key": new_key, "window_shredded": again.is_shredded(window),
                  "hold_key": again.has_named("hold:h1")}))
"""


@needs_tiny_tmpfs
def test_a_shred_on_a_full_disk_is_durable_at_once_in_the_space_of_the_reserve(tmp_path):
    """A real full disk (a 4 MiB tmpfs filled to its last page): shredding a body window's key and a
    hold's key (a debugging window's end) succeeds and survives a restart, written in the blocks the
    reserve file gave up. Before, each was ``StoreFull`` and the key stayed on disk - bodies readable past
    their 24 h - until space came back. A new key is still refused: the reserve is for shreds only."""
    seen, _ = run_on_tiny_tmpfs(tmp_path / "mnt", SHRED_CHILD)
    assert seen["errors"] == [], seen
    assert seen["window_shredded"] and not seen["hold_key"], seen
    assert seen["new_key"] == "StoreFull", seen


def _holds_on(tmp_path, keys_dir, clock):
    """A POP's body store and holds over a ring in ``keys_dir`` (a start: call again for a restart)."""
    from storage.audit import AuditLog
    from storage.bodies import BodyStore
    from storage.env import open_env
    from storage.holds import Holds

    env = open_env(tmp_path / "pop", map_size=16 << 20)
    keys = KeyRing(keys_dir, LocalKeyProvider(keys_dir), window_seconds=60, clock=clock)
    bodies = BodyStore(env, keys, max_ttl_seconds=240, clock=clock)
    return env, keys, bodies, Holds(bodies, keys, AuditLog(env, clock=clock), clock=clock)


def test_a_hold_ended_while_its_key_cannot_be_saved_is_ended_in_memory_and_its_key_shredded_after_a_restart(
        tmp_path, keys_dir, disk):
    """Releasing a hold commits its end in LMDB, then shreds its key. With no room even for the shred
    (every write fails; no reserve helps), the release answers the ended hold and the table says so -
    before, it raised ``StoreFull`` after the commit and the hold stayed listed as active. A restart before
    space returns reloads the key from ``keys.store``; the holds store shreds it again at start, because its
    hold is ended on disk - before, nothing did and the hold's copies (deleted, still on stale pages) opened
    again. Once space is back the body sweep saves the shred."""
    from engine.errors import HoldEnded
    from storage.holds import _key_name
    from tests.storage.conftest import FakeClock

    clock = FakeClock()
    mid = "msg_" + "05" * 16
    env, keys, bodies, holds = _holds_on(tmp_path, keys_dir, clock)
    try:
        with env.begin(write=True) as txn:
            bodies.put_many(txn, [(mid, "evidence", clock() + 200)])
        hold = holds.place_legal_hold([mid], actor="op", reason="r", reference="ref", until=clock() + 3600)
        copy = holds.read_held_body(hold.hold_id, mid, actor="op")
        assert copy == "evidence"
        sealed = keys.named_sealer(_key_name(hold.hold_id)).seal(b"copy", b"id")  # as on a stale page
        disk.on = True
        ended = holds.release(hold.hold_id, actor="op", reason="done")  # before: StoreFull
        assert ended.ended_at is not None
        assert holds.get(hold.hold_id).ended_at is not None and holds.active() == []
        with pytest.raises(HoldEnded):
            holds.read_held_body(hold.hold_id, mid, actor="op")
        assert not keys.has_named(_key_name(hold.hold_id))  # forgotten in memory at once
    finally:
        env.close()
    env, keys, bodies, holds = _holds_on(tmp_path, keys_dir, clock)  # a restart, the disk still full
    try:
        assert holds.get(hold.hold_id).ended_at is not None
        with pytest.raises(KeyUnavailable):  # before: the reloaded key opened the copy
            keys.named_sealer(_key_name(hold.hold_id), create=False).open(sealed, b"id")
        disk.on = False
        bodies.sweep()  # space is back: the sweep saves the shred
    finally:
        env.close()
    assert not ring(keys_dir).has_named(_key_name(hold.hold_id))


def test_an_ended_holds_record_stays_until_its_notes_key_is_shredded_on_disk(tmp_path, keys_dir, disk):
    """A year after a hold ends, the sweep deletes its record and shreds its notes key (which seals the
    reason and reference in its audit entries). On a full key disk the shred is in memory only; the record
    now stays until the shred is on disk, so a restart that reloads the key finds the record and the next
    sweep shreds it again. Before, the record was deleted first and the reloaded notes key was never
    shredded: the audit entries' notes opened again, for good."""
    from storage.holds import ENDED_RETENTION_SECONDS, _notes_key
    from tests.storage.conftest import FakeClock

    clock = FakeClock()
    env, keys, bodies, holds = _holds_on(tmp_path, keys_dir, clock)
    try:
        hold = holds.open_debug_window("acc_a", actor="op", reason="r", reference="ref",
                                       until=clock() + 3600)
        holds.release(hold.hold_id, actor="op", reason="done")
        clock.advance(ENDED_RETENTION_SECONDS + 1)
        disk.on = True
        with pytest.raises(StoreFull):
            holds.sweep()
        assert holds.get(hold.hold_id) is not None
    finally:
        env.close()
    env, keys, bodies, holds = _holds_on(tmp_path, keys_dir, clock)  # a restart; then space returns
    try:
        disk.on = False
        assert holds.get(hold.hold_id) is not None  # before: the record was gone, the key back
        assert holds.sweep() == 1
        assert holds.get(hold.hold_id) is None
    finally:
        env.close()
    assert not ring(keys_dir).has_named(_notes_key(hold.hold_id))


BUSY_DISK_CHILD = r"""
import json, os, sys
from storage.keys import RESERVE_FILE, KeyRing, LocalKeyProvider
from tests.engine.disk_full_support import fill_disk, free_disk

mnt = sys.argv[1]
keys_dir = mnt + "/keys"
keys = KeyRing(keys_dir, LocalKeyProvider(keys_dir), window_seconds=60)
windows = [keys.body_window(6000.0 + 60 * n) for n in range(6)]
for window in windows:
    keys.body_sealer(window)
fills = fill_disk(mnt, "a")
busy, real_fallocate = [True], os.posix_fallocate


def racing_fallocate(fd, offset, length):
    # another writer takes the blocks a shred freed before the ring makes its reserve again (a race a
    # real busy disk can lose at any moment; here it is lost every time)
    if busy[0]:
        fills.extend(fill_disk(mnt, f"r{len(fills)}-"))
    return real_fallocate(fd, offset, length)


os.posix_fallocate = racing_fallocate


def shred_all(batch, tag):
    errors = []
    for n, window in enumerate(batch):
        try:
            keys.shred_window(window)
        except Exception as exc:
            errors.append(type(exc).__name__)
        fills.extend(fill_disk(mnt, f"{tag}{n}-"))  # and whatever is left after it
    return errors


first = shred_all(windows[:3], "b")
busy[0] = False
free_disk(fills)  # space comes back for a while, with no key change meanwhile
del fills[:]
keys.save_unsaved_shreds()  # the body sweep's tick
fills.extend(fill_disk(mnt, "c"))  # and the disk fills up again
busy[0] = True
second = shred_all(windows[3:], "d")
again = KeyRing(keys_dir, LocalKeyProvider(keys_dir), window_seconds=60)  # a restart, the disk full
print(json.dumps({"first": first, "second": second,
                  "durable": [again.is_shredded(w) for w in windows]}))
"""


@needs_tiny_tmpfs
def test_several_shreds_in_one_outage_on_a_busy_full_disk_are_durable_and_the_reserve_comes_back(tmp_path):
    """A disk that stays full while something else keeps writing (it takes the blocks a shred frees before
    the ring can make its reserve again): three shreds in a row are each durable, and after space came
    back for a moment (one body sweep tick, no key change) three more in the next outage are too. Before,
    the reserve covered one rewrite and was deleted whole when it could not be made again: the second
    shred of an outage was ``StoreFull`` (in memory only, reloaded by a restart), and the reserve came
    back only with the next successful key save."""
    seen, _ = run_on_tiny_tmpfs(tmp_path / "mnt", BUSY_DISK_CHILD)
    assert seen["first"] == [] and seen["second"] == [], seen
    assert all(seen["durable"]), seen


def test_an_accounts_erasure_on_a_full_key_disk_ends_its_debugging_windows_and_a_restart_keeps_their_notes_shredded(
        tmp_path, keys_dir, disk):
    """Erasure ends the account's debugging windows and shreds their notes keys. With no room even for the
    shred (every write fails; no reserve helps) it used to raise ``StoreFull`` half way, the notes key in
    memory only: a restart reloaded it and the window's reason opened again. Now the windows' records are
    marked erased in the erasure's own LMDB commit (no key-store space needed) and every start shreds
    their notes keys again until the body sweep can save the shred."""
    from storage.holds import _key_name, _notes_key
    from tests.storage.conftest import FakeClock

    clock = FakeClock()
    env, keys, bodies, holds = _holds_on(tmp_path, keys_dir, clock)
    try:
        hold = holds.open_debug_window("acc_a", actor="customer:acc_a", reason="r", reference="ref",
                                       until=clock() + 3600)
        notes = keys.named_sealer(_notes_key(hold.hold_id)).seal(b"reason", b"id")  # as in an audit entry
        disk.on = True
        assert holds.forget_account("acc_a") == 1  # before: StoreFull
        assert holds.get(hold.hold_id).ended_at is not None and holds.active() == []
        assert not keys.has_named(_notes_key(hold.hold_id))
    finally:
        env.close()
    env, keys, bodies, holds = _holds_on(tmp_path, keys_dir, clock)  # a restart, the disk still full
    try:
        assert holds.get(hold.hold_id).notes_erased and holds.get(hold.hold_id).reason == ""
        with pytest.raises(KeyUnavailable):  # before: the reloaded notes key opened the notes
            keys.named_sealer(_notes_key(hold.hold_id), create=False).open(notes, b"id")
        disk.on = False
        bodies.sweep()  # space is back: the sweep saves the shreds
    finally:
        env.close()
    again = ring(keys_dir)
    assert not again.has_named(_notes_key(hold.hold_id)) and not again.has_named(_key_name(hold.hold_id))
