"""Wallet signatures: who signed a message, as the chains' wallets sign them, and did that wallet pay us.

Why it exists: policy 7.5 accepts "a signed message from a wallet previously used to top up" as
authentication for a data-subject request. Two formats are accepted, both secp256k1 with a recoverable
65-byte signature ``r | s | v`` (hex, ``v`` 27/28 or 0/1):

* ``evm``: EIP-191 ``personal_sign`` (MetaMask and every EVM wallet): keccak-256 of
  ``"\\x19Ethereum Signed Message:\\n" + len(message) + message``. The address is the last 20 bytes of the
  keccak-256 of the public key, written ``0x`` + hex; comparison ignores case, but a mixed-case address
  must carry a valid EIP-55 checksum.
* ``tron``: TronWeb ``signMessageV2`` / TronLink: the same with ``"\\x19TRON Signed Message:\\n"``. The
  address is base58check of ``0x41`` + those 20 bytes (``T…``), or its hex form ``41…``.

Public keys are recovered with ``coincurve`` (libsecp256k1); keccak-256 is ``pycryptodome``'s and
base58check is the ``base58`` package's. :func:`deposited_from` is the one place that reads the ledger's
deposit from-addresses.
"""

from __future__ import annotations

import base58
from coincurve import PublicKey
from Crypto.Hash import keccak

from engine.errors import InputError, InvalidSignature
from storage.ledger import DEPOSIT, LedgerStore

__all__ = ["SCHEMES", "address_key", "deposited_from", "evm_address", "recover", "tron_address"]

SCHEMES = ("evm", "tron")
_PREFIX = {"evm": b"\x19Ethereum Signed Message:\n", "tron": b"\x19TRON Signed Message:\n"}
_HEX = set("0123456789abcdefABCDEF")


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def message_hash(scheme: str, message: str) -> bytes:
    raw = message.encode("utf-8")
    return keccak256(_PREFIX[scheme] + str(len(raw)).encode() + raw)


def recover(scheme: str, message: str, signature: str) -> bytes:
    """The 20-byte account key of the wallet that signed ``message``; ``InvalidSignature`` otherwise."""
    if scheme not in SCHEMES:
        raise InputError(f"signature scheme is one of {', '.join(SCHEMES)}")
    sig = _signature_bytes(signature)
    v = sig[64] - 27 if sig[64] >= 27 else sig[64]
    if v not in (0, 1):
        raise InvalidSignature("the signature's recovery id is not 27/28 (or 0/1)")
    try:
        public = PublicKey.from_signature_and_message(sig[:64] + bytes([v]),
                                                      message_hash(scheme, message), hasher=None)
    except Exception:  # coincurve raises ValueError / its own errors for an invalid signature
        raise InvalidSignature("the signature does not verify") from None
    return keccak256(public.format(compressed=False)[1:])[-20:]


def _signature_bytes(signature: str) -> bytes:
    text = signature[2:] if isinstance(signature, str) and signature[:2] in ("0x", "0X") else signature
    if not isinstance(text, str) or len(text) != 130 or not set(text) <= _HEX:
        raise InvalidSignature("a signature is 65 bytes in hex (r, s, v)")
    return bytes.fromhex(text)


def evm_address(key: bytes) -> str:
    """EIP-55 checksummed ``0x`` address of a 20-byte key."""
    plain = key.hex()
    digest = keccak256(plain.encode()).hex()
    return "0x" + "".join(c.upper() if int(d, 16) >= 8 else c for c, d in zip(plain, digest[:40], strict=True))


def tron_address(key: bytes) -> str:
    return base58.b58encode_check(b"\x41" + key).decode()


def address_key(scheme: str, address: str) -> bytes | None:
    """The 20-byte key of an address written for ``scheme``, or None if it is not such an address (a
    bad EIP-55 checksum or base58check counts as not an address)."""
    if not isinstance(address, str):
        return None
    if scheme == "evm":
        if len(address) != 42 or address[:2] not in ("0x", "0X") or not set(address[2:]) <= _HEX:
            return None
        key = bytes.fromhex(address[2:])
        body = address[2:]
        if body != body.lower() and body != body.upper() and evm_address(key) != "0x" + body:
            return None
        return key
    if scheme == "tron":
        if len(address) == 42 and address[:2] == "41" and set(address) <= _HEX:
            return bytes.fromhex(address)[1:]
        try:
            raw = base58.b58decode_check(address)
        except ValueError:
            return None
        return raw[1:] if len(raw) == 21 and raw[0] == 0x41 else None
    return None


def deposit_from_addresses(ledger: LedgerStore, account_id: str) -> list[str]:
    """The from-addresses the ledger logged for the account's deposits (the one reader of them)."""
    return [e.from_address for e in ledger.entries(account_id)
            if e.kind == DEPOSIT and e.from_address]


def deposited_from(ledger: LedgerStore, account_id: str, scheme: str, key: bytes) -> bool:
    """Did a wallet with this key (written for ``scheme``) deposit to the account?"""
    return any(address_key(scheme, a) == key for a in deposit_from_addresses(ledger, account_id))
