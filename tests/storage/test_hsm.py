"""The PKCS#11 key provider against a SoftHSM2 token: the KEK stays in the token and wraps every key."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from engine.errors import ConfigError, CorruptRecord, KeyUnavailable
from storage.account_keys import AccountKeys
from storage.hsm import Pkcs11KeyProvider, read_pin
from storage.keys import MASTER_KEY_FILE, KeyRing
from storage.pseudonyms import Pseudonyms
from tests.softhsm import softhsm_token


@pytest.fixture
def token():
    return softhsm_token()


def provider(token, label: str, directory=None, pin: str | None = None) -> Pkcs11KeyProvider:
    return Pkcs11KeyProvider(token.module, token.label, pin or token.pin, key_label=label,
                             directory=directory)


def fresh_label() -> str:
    return f"kek-{secrets.token_hex(4)}"


def test_a_wrapped_key_unwraps_only_with_the_same_token_key(token):
    label = fresh_label()
    kek = provider(token, label)
    data_key = os.urandom(32)
    wrapped = kek.wrap(data_key)
    assert data_key not in wrapped and kek.wrap(data_key) != wrapped  # a fresh IV per wrap
    assert provider(token, label).unwrap(wrapped) == data_key  # the key object persists in the token
    with pytest.raises(KeyUnavailable):
        provider(token, fresh_label()).unwrap(wrapped)  # another KEK
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    with pytest.raises(KeyUnavailable):
        kek.unwrap(tampered)


def test_the_kek_is_sensitive_and_never_leaves_the_token(token):
    import pkcs11

    kek = provider(token, fresh_label())
    assert kek._key[pkcs11.Attribute.SENSITIVE] is True
    assert kek._key[pkcs11.Attribute.EXTRACTABLE] is False
    assert kek._key[pkcs11.Attribute.TOKEN] is True


def test_key_ring_and_account_keys_work_over_the_hsm_and_need_no_master_key_file(token, tmp_path):
    label = fresh_label()
    ring = KeyRing(tmp_path, provider(token, label, tmp_path))
    keys = AccountKeys(tmp_path / "accounts", provider(token, label, tmp_path),
                       Pseudonyms(ring.secret("pseudonym")))
    keys.create("acc_hsm")
    blob = keys.sealer("acc_hsm").seal(b"sealed under an HSM-wrapped key")
    body = ring.body_sealer(ring.current_window()).seal(b"body")
    assert not (tmp_path / MASTER_KEY_FILE).exists()
    again = KeyRing(tmp_path, provider(token, label, tmp_path))  # a restart
    assert again.body_sealer(again.current_window(), create=False).open(body) == b"body"
    keys2 = AccountKeys(tmp_path / "accounts", provider(token, label, tmp_path),
                        Pseudonyms(again.secret("pseudonym")))
    assert keys2.sealer("acc_hsm").open(blob) == b"sealed under an HSM-wrapped key"


def test_a_missing_kek_is_not_recreated_over_an_existing_key_store(token, tmp_path):
    label = fresh_label()
    KeyRing(tmp_path, provider(token, label, tmp_path))
    with pytest.raises(KeyUnavailable, match="restore it"):
        provider(token, fresh_label(), tmp_path)  # the key store was wrapped by another key


def test_a_wrong_pin_or_token_is_a_clear_key_unavailable(token):
    # A PKCS#11 login belongs to the process and other tests' sessions are logged in here, so the wrong
    # PIN is tried in a fresh process.
    wrong = "0000" if token.pin != "0000" else "1111"
    script = ("from storage.hsm import Pkcs11KeyProvider\n"
              f"Pkcs11KeyProvider({token.module!r}, {token.label!r}, {wrong!r})\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ})
    assert run.returncode != 0 and "KeyUnavailable: cannot open" in run.stderr
    assert "PinIncorrect" in run.stderr
    with pytest.raises(KeyUnavailable, match="cannot open"):
        Pkcs11KeyProvider(token.module, "no-such-token", token.pin)


def test_the_rewrapped_ring_moves_from_the_local_master_key_to_the_hsm(token, tmp_path):
    from storage.keys import LocalKeyProvider

    ring = KeyRing(tmp_path, LocalKeyProvider(tmp_path))
    record = ring.store_sealer("ledger").seal(b"row")
    label = fresh_label()
    ring.rewrap(provider(token, label))
    moved = KeyRing(tmp_path, provider(token, label, tmp_path))
    assert moved.store_sealer("ledger").open(record) == b"row"
    with pytest.raises((KeyUnavailable, CorruptRecord)):
        KeyRing(tmp_path, LocalKeyProvider(tmp_path))  # the old master key no longer opens it


def test_the_pin_comes_from_an_environment_variable_or_a_file_never_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_HSM_PIN", "4321")
    assert read_pin(pin_env="TEST_HSM_PIN") == "4321"
    (tmp_path / "pin").write_text("8765\n")
    assert read_pin(pin_file=str(tmp_path / "pin")) == "8765"
    with pytest.raises(ConfigError, match="exactly one"):
        read_pin()
    with pytest.raises(ConfigError, match="not set"):
        read_pin(pin_env="TEST_HSM_PIN_UNSET")
    with pytest.raises(ConfigError, match="cannot read"):
        read_pin(pin_file=str(tmp_path / "missing"))
