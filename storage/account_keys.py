"""Per-account data keys: what makes an account's erasure survive a disk image.

Why it exists: LMDB never wipes freed pages, so a deleted account record, its message records and the
identifying fields of its ledger rows stay in ``data.mdb`` (and in copies and backups of it) after erasure.
Sealed under store-wide keys, that ciphertext would stay readable to anyone holding the data directory and
the master key. So every per-account record is sealed under keys of its own account, and erasure destroys
those keys (crypto-shredding, as ``storage.bodies`` does per time window): every copy of the account's
ciphertext, on live pages, stale pages or backups, becomes unreadable.

Two keys per account, because they end at different times:

* ``DATA`` — the account record, its message records (delivery-receipt metadata) and what it asked to keep
  (debugging windows). Destroyed on erasure, and when a closed account is swept 90 days after closure.
* ``LEDGER`` — the identifying fields of its ledger rows (its id, message ids, chain, transaction hash,
  wallet). Destroyed on erasure (the ledger's carve-out keeps amounts and times, not identifiers), or
  together with the account's last ledger row, 7 years on (``storage.ledger``).

Layout: one file per account, ``<directory>/<token hex>.key`` (msgpack ``{"v": 1, "data": wrapped,
"ledger": wrapped}``), named by the account's keyed token (``storage.pseudonyms``) rather than its id; each
key wrapped by the key-encryption key of a :class:`~storage.keys.KeyProvider` (the local master key or an
HSM). Keys live outside every LMDB file, like the key ring's.

Hot path: message records are sealed per message at accept and at carrier ack, ledger rows per debit. An
unwrapped key is cached (a bounded LRU of :class:`~storage.crypto.Sealer`), so sealing costs one dict
lookup more than a store-wide key; only a miss reads the file and asks the provider to unwrap (an HSM
round trip with ``pkcs11``).

Durability contract: :meth:`AccountKeys.create` and :meth:`AccountKeys.shred` rewrite (or unlink) the
account's file atomically (temp file, fsync, rename, fsync the directory) before they return; a key is used
only after it is durable. *Writers:* any thread (one lock). *Readers:* any thread.
*Not guaranteed:* an unlinked file's blocks may survive in the filesystem; they hold only wrapped keys,
useless without the KEK (rotate it with :meth:`AccountKeys.rewrap` for a stronger guarantee).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import msgpack

from engine.errors import CorruptRecord, KeyUnavailable
from storage.crypto import KEY_BYTES, Sealer
from storage.keys import KeyProvider, atomic_write, fsync_dir
from storage.pseudonyms import ACCOUNT_TOKEN_BYTES, Pseudonyms

__all__ = ["DATA", "LEDGER", "PURPOSES", "AccountKeys"]

DATA, LEDGER = "data", "ledger"
PURPOSES = (DATA, LEDGER)
_KEY_IDS = {DATA: 0x7FFF_FF01, LEDGER: 0x7FFF_FF02}  # in every blob header; not secret
_FILE_VERSION = 1
DEFAULT_CACHE_SIZE = 10_000


class AccountKeys:
    """The data and ledger keys of every account, in ``directory``, wrapped by ``provider``."""

    def __init__(self, directory: str | Path, provider: KeyProvider, pseudonyms: Pseudonyms, *,
                 cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.pseudonyms = pseudonyms
        self._provider = provider
        self._cache: OrderedDict[tuple[bytes, str], Sealer] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.RLock()
        self.unwraps = 0  # cache misses that asked the provider (a metric for operators and tests)

    def token(self, account_id: str) -> bytes:
        return self.pseudonyms.account(account_id)

    # --- create, use, shred -----------------------------------------------------------------------

    def create(self, account_id: str) -> None:
        """Make the account's keys (both purposes) if they do not exist yet. Idempotent."""
        self.create_token(self.token(account_id))

    def create_token(self, token: bytes, purposes: tuple[str, ...] = PURPOSES) -> None:
        """Make the keys of ``token`` for ``purposes`` if they do not exist yet (idempotent). Also for
        tokens that name no account: the mail outbox keeps one random-token key per mail that must
        outlive its account (``storage.outbox``), in a directory of its own."""
        if len(token) != ACCOUNT_TOKEN_BYTES:
            raise ValueError("an account token is 16 bytes")
        with self._lock:
            wrapped = self._read(token)
            missing = [p for p in purposes if p not in wrapped]
            if not missing:
                return
            keys = {p: os.urandom(KEY_BYTES) for p in missing}
            wrapped.update({p: self._provider.wrap(k) for p, k in keys.items()})
            self._write(token, wrapped)
            for purpose, key in keys.items():
                self._remember(token, purpose, Sealer(key, _KEY_IDS[purpose]))

    def sealer(self, account_id: str, purpose: str = DATA) -> Sealer:
        """The account's key for ``purpose``; ``KeyUnavailable`` if it was shredded or never made."""
        return self.sealer_for_token(self.token(account_id), purpose)

    def sealer_for_token(self, token: bytes, purpose: str = DATA) -> Sealer:
        """The key of the account whose token is ``token`` (records carry the token, not the id)."""
        cache_key = (token, purpose)
        with self._lock:
            sealer = self._cache.get(cache_key)
            if sealer is not None:
                self._cache.move_to_end(cache_key)
                return sealer
            wrapped = self._read(token).get(purpose)
            if wrapped is None:
                raise KeyUnavailable(f"no {purpose} key for account token {token.hex()[:8]}…: "
                                     "shredded (erased or past retention) or never made")
            self.unwraps += 1
            sealer = Sealer(self._provider.unwrap(wrapped), _KEY_IDS[purpose])
            self._remember(token, purpose, sealer)
            return sealer

    def has(self, account_id: str, purpose: str = DATA) -> bool:
        token = self.token(account_id)
        with self._lock:
            return (token, purpose) in self._cache or purpose in self._read(token)

    def shred(self, account_id: str, purposes: tuple[str, ...] = PURPOSES) -> None:
        """Destroy the account's keys for ``purposes``: everything sealed under them is unreadable from
        now on, everywhere. Idempotent."""
        self.shred_token(self.token(account_id), purposes)

    def shred_token(self, token: bytes, purposes: tuple[str, ...] = PURPOSES) -> None:
        if len(token) != ACCOUNT_TOKEN_BYTES:
            raise ValueError("an account token is 16 bytes")
        with self._lock:
            for purpose in purposes:
                self._cache.pop((token, purpose), None)
            wrapped = self._read(token)
            left = {p: w for p, w in wrapped.items() if p not in purposes}
            if left == wrapped:
                return
            if left:
                self._write(token, left)
            else:
                self._path(token).unlink()
                fsync_dir(self.directory)

    def tokens(self) -> list[tuple[bytes, float]]:
        """Every token that has a key file here, with the file's modification time (for sweeps)."""
        out = []
        for path in self.directory.glob("*.key"):
            try:
                token = bytes.fromhex(path.stem)
                mtime = path.stat().st_mtime
            except (ValueError, FileNotFoundError):  # not ours, or shredded meanwhile
                continue
            if len(token) == ACCOUNT_TOKEN_BYTES:
                out.append((token, mtime))
        return out

    def rewrap(self, provider: KeyProvider) -> int:
        """KEK rotation: re-wrap every account key under ``provider``; returns how many files."""
        with self._lock:
            n = 0
            for path in self.directory.glob("*.key"):
                token = bytes.fromhex(path.stem)
                wrapped = self._read(token)
                self._write(token, {p: provider.wrap(self._provider.unwrap(w))
                                    for p, w in wrapped.items()})
                n += 1
            self._provider = provider
            return n

    # --- files and cache --------------------------------------------------------------------------

    def _remember(self, token: bytes, purpose: str, sealer: Sealer) -> None:
        self._cache[(token, purpose)] = sealer
        self._cache.move_to_end((token, purpose))
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _path(self, token: bytes) -> Path:
        return self.directory / f"{token.hex()}.key"

    def _read(self, token: bytes) -> dict[str, bytes]:
        path = self._path(token)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            doc = msgpack.unpackb(raw, raw=False)
            if doc.pop("v") != _FILE_VERSION or not set(doc) <= set(PURPOSES):
                raise ValueError("unknown version or purpose")
            return {p: bytes(w) for p, w in doc.items()}
        except Exception as exc:  # msgpack and KeyError/ValueError alike
            raise CorruptRecord(f"account key file {path.name} is unreadable: {exc!r}") from None

    def _write(self, token: bytes, wrapped: dict[str, bytes]) -> None:
        atomic_write(self._path(token), msgpack.packb({"v": _FILE_VERSION, **wrapped}))

    def __repr__(self) -> str:
        return f"AccountKeys({str(self.directory)!r}, cached={len(self._cache)})"
