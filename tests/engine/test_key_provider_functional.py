"""The engine with its keys elsewhere: ``[keys] dir`` outside the data directory, and an HSM over PKCS#11."""

from __future__ import annotations

import shutil

import pytest

from engine import Engine
from engine.errors import KeyUnavailable
from storage.keys import KEY_STORE_FILE, MASTER_KEY_FILE
from tests.engine.crash_support import delivering_carriers
from tests.softhsm import softhsm_token


def _use(engine: Engine, email: str) -> tuple[str, str]:
    acc = engine.create_account(email=email)
    engine.register_sender(acc.id, "ACME")
    engine.deposit(acc.id, usd="5", chain="tron", tx_hash="0xkeys", from_address="TKeys")
    accepted = engine.submit(acc.api_key, "+4915112345678", "ACME", "hello")
    return acc.id, accepted.message_id


def test_keys_can_live_outside_the_data_directory_which_then_holds_only_ciphertext(tmp_path):
    data, keys = tmp_path / "data", tmp_path / "vault" / "keys"
    overrides = {**delivering_carriers(), "keys": {"dir": str(keys)}}
    engine = Engine.start(data_dir=data, overrides=overrides)
    account_id, message_id = _use(engine, "elsewhere@example.com")
    engine.stop()
    assert (keys / MASTER_KEY_FILE).exists() and (keys / KEY_STORE_FILE).exists()
    assert list((keys / "accounts").glob("*.key"))
    assert not any(p.name in (MASTER_KEY_FILE, KEY_STORE_FILE) for p in data.rglob("*"))
    engine = Engine.start(data_dir=data, overrides=overrides)  # the same keys: all readable again
    try:
        assert engine.account(account_id).email == "elsewhere@example.com"
        assert engine.status(message_id) is not None
    finally:
        engine.stop()
    stolen = tmp_path / "stolen"  # a copy of the data directory alone
    shutil.copytree(data, stolen)
    with pytest.raises(KeyUnavailable, match="is \\[keys\\] dir right"):
        Engine.start(data_dir=stolen, overrides={**delivering_carriers(),
                                                 "keys": {"dir": str(tmp_path / "empty")}})


def test_the_engine_runs_with_its_kek_in_a_pkcs11_token(tmp_path, monkeypatch):
    token = softhsm_token()
    monkeypatch.setenv("SMSROUTE_TEST_ENGINE_PIN", token.pin)
    keys = {"provider": "pkcs11", "pkcs11_module": token.module, "pkcs11_token_label": token.label,
            "pkcs11_key_label": f"engine-kek-{tmp_path.name}",
            "pkcs11_pin_env": "SMSROUTE_TEST_ENGINE_PIN"}
    overrides = {**delivering_carriers(), "keys": keys}
    engine = Engine.start(data_dir=tmp_path / "data", overrides=overrides)
    account_id, message_id = _use(engine, "hsm-backed@example.com")
    engine.stop()
    assert not any(p.name == MASTER_KEY_FILE for p in tmp_path.rglob("*"))
    engine = Engine.start(data_dir=tmp_path / "data", overrides=overrides)
    try:
        assert engine.account(account_id).email == "hsm-backed@example.com"
        assert engine.status(message_id).account_id == account_id
        assert engine.balance(account_id) > 0
    finally:
        engine.stop()
