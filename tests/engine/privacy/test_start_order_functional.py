"""The first start after the upgrade that seals a data-subject request's account id under the account's
ledger key too (``storage.dsar``): the privacy store adds that copy to older records when it opens, and
the closed accounts' sweep (which shreds the data key the older copy is sealed under) must not run before.

The sweeper sweeps on its first tick, while the engine is still opening the privacy stores. To test the
order without timing luck, the upgrade is held until the sweeper has swept once (a condition with a
deadline): before the fix that first sweep deleted the account and its data key, and the request lost
its account id for good.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from actors.sweeper import SweeperActor
from engine import Engine
from engine.billing.offline import stopped_engine
from engine.config import load_settings
from engine.errors import UnknownAccount
from storage.dsar import DsarRecord, DsarStore
from storage.env import open_env
from storage.records_base import SealedRecords

DAY = 86400


def _open_request_of_a_closed_account(data: Path, wallet) -> tuple[str, str]:
    """An account a wallet deposited to, with an open access request, then closed (the record kept)."""
    with Engine.start(data) as engine:
        account = engine.create_account("former.holder@example.com")
        engine.deposit(account.id, "5", "ethereum", f"tx-{account.id}", wallet.address)
        desk = engine.privacy.requests
        challenge = desk.challenge(account.id, "access", source="test")
        signature = wallet.sign_message(encode_defunct(text=challenge.message)).signature
        request = desk.open_with_signature(challenge.challenge_id, "evm", "0x" + bytes(signature).hex())
        engine.close_account(account.id)
    return account.id, request.id


def _as_the_previous_version_left_it(data: Path, account_id: str, request_id: str) -> None:
    """The request sealed under the account's data key alone (no ledger copy), and the account closed
    91 days ago: due to be swept on the next sweep."""
    settings = load_settings(None, None)
    with stopped_engine(data, settings) as runtime:
        runtime.accounts.update(account_id, lambda r: replace(r, closed_at=time.time() - 91 * DAY))
        env = open_env(data / "privacy", map_size=settings.engine.privacy_map_size_mb << 20)
        try:
            sealer = runtime.keys.store_sealer("dsar")
            store = DsarStore(env, sealer, runtime.account_keys)

            def older_format(record: DsarRecord, key: bytes) -> dict:
                doc = store._encode(record, key)
                del doc["ledger_sealed_account"]
                return doc

            SealedRecords(env, sealer, b"dsar", DsarRecord, "request",
                          encode=older_format).put(store.get(request_id))
            assert not store.get(request_id).ledger_sealed_account
        finally:
            env.close()


def test_a_request_of_an_older_version_keeps_its_account_when_the_first_sweep_comes_early(
        tmp_path, monkeypatch):
    data, wallet = tmp_path / "data", Account.create()
    account_id, request_id = _open_request_of_a_closed_account(data, wallet)
    _as_the_previous_version_left_it(data, account_id, request_id)

    swept_once = threading.Event()
    sweep, upgrade = SweeperActor._sweep, DsarStore._add_ledger_copies

    def sweep_and_say_so(self, now: float) -> None:
        sweep(self, now)
        swept_once.set()

    upgraded_after_a_sweep = []

    def upgrade_after_the_first_sweep(self) -> None:  # the start-up window, made certain
        upgraded_after_a_sweep.append(swept_once.wait(timeout=10))
        upgrade(self)

    monkeypatch.setattr(SweeperActor, "_sweep", sweep_and_say_so)
    monkeypatch.setattr(DsarStore, "_add_ledger_copies", upgrade_after_the_first_sweep)
    with Engine.start(data) as engine:
        assert upgraded_after_a_sweep == [True]  # the sweeper had swept before the store opened
        engine.sweep_now()  # whatever the first sweep left, the account is due now
        with pytest.raises(UnknownAccount):  # the closed account's record was swept
            engine.runtime.accounts.get(account_id)
        desk = engine.privacy.requests
        assert desk.get(request_id)["account_id"] == account_id  # staff still see whose it is
        answer = desk.fulfil(request_id, actor="privacy:test")
        assert answer["request"]["status"] == "completed"
        assert [e["from_address"] for e in answer["result"]["ledger"]] == [wallet.address]
