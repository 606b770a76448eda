"""A new account whose keys cannot be stored (the key directory's disk is full): ``store_full`` naming the
``keys`` store, counted, and logged - one ALARM for the outage, a summary at most a minute, one line when
an account's keys are stored again. Before, it was counted in ``smsroute_store_full_refusals_total`` only:
nothing in the log said why account creation failed.

The full disk is simulated as in ``tests/storage/test_keys_disk_full.py`` (``os.write`` fails with ENOSPC
under the account key directory); ``tests/engine/cluster/test_worker_disk_full_new_account_functional.py``
fills a real tmpfs under a worker.
"""

from __future__ import annotations

import logging

import pytest

from engine import Engine
from engine.errors import StoreFull
from storage.full import FULL_REFUSALS
from storage.keys import KEY_STORE
from tests.storage.test_keys_disk_full import FullDisk


def test_an_account_refused_for_a_full_key_store_is_logged_once_and_its_recovery_once(
        tmp_path, monkeypatch, caplog):
    engine = Engine.start(data_dir=tmp_path / "data")
    try:
        disk = FullDisk(monkeypatch, engine.runtime.account_keys.directory)
        refused = FULL_REFUSALS[KEY_STORE]
        disk.on = True
        with caplog.at_level(logging.WARNING, logger="storage.full_alarm"):
            for i in range(3):
                with pytest.raises(StoreFull, match="keys store is full"):
                    engine.create_account(email=f"full{i}@example.com")
            disk.on = False
            engine.create_account(email="after@example.com")
            engine.create_account(email="after2@example.com")
        assert FULL_REFUSALS[KEY_STORE] == refused + 3  # smsroute_store_full_refusals_total{store="keys"}
        lines = [r.getMessage() for r in caplog.records if r.name == "storage.full_alarm"]
        assert lines == [
            "accounts: ALARM store keys is full: a new account, refused store_full until it takes writes "
            "again; nothing stored is lost",
            "accounts: store keys takes writes again (2 writes refused since the last report)"], lines
        assert not any("@example.com" in r.getMessage() or "acc_" in r.getMessage()
                       for r in caplog.records)  # no address or account id
    finally:
        engine.stop()
