"""Erasure on a full key disk completes, and nothing it erased comes back with a restart before space does.

The full disk is simulated (``tests.storage.test_keys_disk_full.FullDisk``: every write under the key
directory fails, so not even the shred reserve helps): the worst case. Before, the erasure raised
``StoreFull`` half way (a debugging window's notes key dropped in memory only, the account's data and
ledger keys still on disk) and a restart reloaded the notes key.
"""

from __future__ import annotations

import time

from engine import Engine
from storage.holds import _notes_key
from tests.engine.crash_support import delivering_carriers
from tests.storage.test_keys_disk_full import FullDisk


def test_an_erasure_on_a_full_key_disk_completes_and_a_restart_brings_no_key_of_the_account_back(
        tmp_path, monkeypatch):
    data = tmp_path / "data"
    disk = FullDisk(monkeypatch, data / "keys")
    engine = Engine.start(data_dir=data, overrides=delivering_carriers())
    try:
        acc = engine.create_account(email="full.disk@example.com")
        engine.place_hold("debug_window", actor=f"customer:{acc.id}", reason="r", reference="opt-in",
                          until=time.time() + 3600, account_id=acc.id)
        windows = [h["hold_id"] for h in engine.runtime.shards.active_holds()]
        assert windows
        disk.on = True
        answer = engine.erase_account(acc.id)  # before: StoreFull
        assert answer["account_record"] == "erased"
        assert not list((data / "keys" / "accounts").glob("*.key"))  # data and ledger key: unlinked
    finally:
        engine.stop()
    engine = Engine.start(data_dir=data, overrides=delivering_carriers())  # the disk still full
    try:
        keys = engine.runtime.keys
        assert [w for w in windows if keys.has_named(_notes_key(w))] == []  # before: reloaded
        assert not engine.runtime.account_keys.has(acc.id)
    finally:
        engine.stop()
