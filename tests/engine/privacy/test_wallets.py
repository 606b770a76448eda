"""Wallet signatures as the wallets make them: EVM personal_sign (signed by eth-account, an independent
implementation) and TronWeb signMessageV2 (a published vector), and the address forms we accept."""

from __future__ import annotations

import pytest
from coincurve import PrivateKey
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InputError, InvalidSignature
from engine.privacy import wallets

# A TronWeb signMessageV2 vector published with an open-source wallet library's tests:
# private key, message "message", signature r|s|v.
TRON_KEY = "43985273a3d94eb753fe6acfd7003e88254effce1eb53e2e97b8522558a98038"
TRON_SIGNATURE = ("fde00bc33d78109bc61de314c1c0526a047e22a2aaae473ca84b32d8aa35ed3e03720e05d614087e"
                  "3d8c6fae63879755b32aa08818a2d4de66fee1a617a971671b")


def _key20(private: PrivateKey) -> bytes:
    return wallets.keccak256(private.public_key.format(False)[1:])[-20:]


@settings(max_examples=20, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_a_personal_sign_signature_recovers_the_signing_address(message):
    wallet = Account.create()
    signature = bytes(wallet.sign_message(encode_defunct(text=message)).signature).hex()
    assert wallets.evm_address(wallets.recover("evm", message, signature)) == wallet.address


def test_the_published_tron_vector_recovers_its_key():
    key = wallets.recover("tron", "message", TRON_SIGNATURE)
    assert key == _key20(PrivateKey(bytes.fromhex(TRON_KEY)))
    address = wallets.tron_address(key)
    assert address.startswith("T") and wallets.address_key("tron", address) == key
    assert wallets.address_key("tron", "41" + key.hex()) == key  # the hex form


def test_an_evm_signature_does_not_verify_as_a_tron_one():
    wallet = Account.create()
    signature = bytes(wallet.sign_message(encode_defunct(text="hi")).signature).hex()
    assert wallets.recover("tron", "hi", signature) != bytes.fromhex(wallet.address[2:])


def test_evm_addresses_compare_without_case_but_a_broken_checksum_is_no_address():
    wallet = Account.create()
    key = bytes.fromhex(wallet.address[2:])
    assert wallets.address_key("evm", wallet.address) == key
    assert wallets.address_key("evm", wallet.address.lower()) == key
    assert wallets.address_key("evm", "0x" + wallet.address[2:].upper()) == key
    letters = [i for i, c in enumerate(wallet.address) if c.isalpha() and i > 1]
    broken = list(wallet.address)
    broken[letters[0]] = broken[letters[0]].swapcase()
    if "".join(broken)[2:] not in (wallet.address[2:].lower(), wallet.address[2:].upper()):
        assert wallets.address_key("evm", "".join(broken)) is None


def test_a_tron_address_with_a_bad_checksum_or_another_prefix_is_no_address():
    key = _key20(PrivateKey())
    address = wallets.tron_address(key)
    flipped = address[:-1] + ("a" if address[-1] != "a" else "b")
    assert wallets.address_key("tron", flipped) is None
    assert wallets.address_key("tron", "TXYZ") is None
    assert wallets.address_key("evm", address) is None


@pytest.mark.parametrize("signature", ["", "0x1234", "zz" * 65, "00" * 64 + "05"])
def test_a_malformed_signature_is_refused(signature):
    with pytest.raises(InvalidSignature):
        wallets.recover("evm", "hi", signature)


def test_an_unknown_scheme_is_refused():
    with pytest.raises(InputError):
        wallets.recover("bitcoin", "hi", "00" * 65)
