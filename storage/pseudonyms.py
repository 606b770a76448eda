"""Keyed HMACs for identifiers that a store must use as keys: account tokens and natural keys.

Why it exists: a store often needs a stable key derived from an identifier — the ledger's balance row of an
account, the deposit idempotency key ``(chain, tx hash)``, the file that holds an account's data keys. Stored
in plaintext, such a key identifies a person or a payment long after the record that named it was erased
(a transaction hash leads back to the wallet on a public chain). So smsroute stores only keyed HMAC-SHA256
tokens of them, under a secret that lives in the key ring (``storage.keys.KeyRing.secret``), wrapped by the
key-encryption key like every data key:

* :meth:`Pseudonyms.account` — the 16-byte token of an account id. The ledger keys balances and entries by it
  from the first write, so erasure has nothing to rewrite; the account's data keys are filed under it.
* :meth:`Pseudonyms.pseudonym` — the same token as text (``psn_…``), what an erased account is called in
  the ledger's 7-year carve-out.
* :meth:`Pseudonyms.natural_key` — a 32-byte token of any natural key (kind, chain, reference, ...).
* :meth:`Pseudonyms.subkey` — a 32-byte key derived for one purpose (the ledger keys its idempotency index
  and its hash chain with keyed BLAKE2b under such keys: cheaper per message than HMAC-SHA256).

Each use is domain-separated (a label is part of the HMAC input), so an account token can never equal the
natural key of a payment. Tokens are stable across restarts (the secret is durable) and unlinkable to their
input without the secret. Thread-safe.
"""

from __future__ import annotations

import hashlib
import hmac
import threading

__all__ = ["ACCOUNT_TOKEN_BYTES", "Pseudonyms", "keyed_hash", "token_text"]

ACCOUNT_TOKEN_BYTES = 16
_CACHE_LIMIT = 65536  # account id -> token: a bounded memo, cleared when full


class Pseudonyms:
    """HMAC-SHA256 tokens under one secret (32 bytes, from the key ring)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("a pseudonym secret is at least 32 bytes")
        self._base = hmac.new(secret, digestmod=hashlib.sha256)  # copied per use: 3x cheaper than new
        self._tokens: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def account(self, account_id: str) -> bytes:
        """The 16-byte token of an account id (memoised: it is computed on every sealed write)."""
        token = self._tokens.get(account_id)
        if token is None:
            token = self._mac(b"account", account_id.encode())[:ACCOUNT_TOKEN_BYTES]
            with self._lock:
                if len(self._tokens) >= _CACHE_LIMIT:
                    self._tokens.clear()
                self._tokens[account_id] = token
        return token

    def pseudonym(self, account_id: str) -> str:
        """The account's token as text: how the ledger names an account once it is erased."""
        return token_text(self.account(account_id))

    def natural_key(self, *parts: str) -> bytes:
        """A 32-byte token of a natural key such as ``("deposit", chain, tx_hash)``."""
        return self._mac(b"natural-key", b"\x00".join(p.encode("utf-8", "surrogatepass") for p in parts))

    def subkey(self, purpose: str) -> bytes:
        """A 32-byte secret for one purpose (e.g. ``"ledger-chain"``), derived from the pseudonym
        secret: stable across restarts, unrelated to every other purpose's key and token."""
        return self._mac(b"subkey", purpose.encode())

    def _mac(self, label: bytes, data: bytes) -> bytes:
        mac = self._base.copy()
        mac.update(label + b"\x00" + data)
        return mac.digest()

    def __repr__(self) -> str:  # never show the secret
        return "Pseudonyms()"


def keyed_hash(data: bytes, secret: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` under a caller's own ``secret``: what a store keeps instead of a request
    or an ``Idempotency-Key`` it must recognise again but never show (the customer API's stored answers,
    a hold placed with a key)."""
    return hmac.new(secret, data, hashlib.sha256).digest()


def token_text(token: bytes) -> str:
    """An account token as the text shown in the ledger and in erasure answers."""
    return "psn_" + token.hex()
