"""Operator bearer tokens for the control port: random, shown once, stored only as SHA-256 digests.

A token carries a name and a set of roles: ``viewer`` (read state and metrics), ``operator`` (change
carriers, routing, accounts), ``privacy`` (legal holds, retention exceptions, processing restrictions).
Tokens are 256 random bits (``op_`` + url-safe base64) so, like API keys, a fast digest is the right
stored form (a slow KDF would only make each request expensive). Lookup is by digest.

Token names are unique (no second token may take the name of an existing one: the audit log names
operators by token name) and the ``system:`` prefix is reserved for the engine's own actors. Tokens can be
listed (name, roles, created, last use — never the token or its digest) and revoked by name.

On start with no token, :func:`ensure_first_token` creates one with every role and writes it to
``<data_dir>/operator.token`` with mode 0600; callers print that path, never the token.

Retention (row ``operator_tokens`` of ``storage.retention``): a token unused for 90 days — counted from its
last use, or its creation if it was never used — is deleted by :meth:`TokenStore.sweep`; a revoked token is
deleted at revocation. A lookup notes the use in memory only (never a write on the request path); the sweep
persists those last-use times before it judges, so a crash loses at most one sweep interval of them.

*Durable:* each create and revoke commits (fsync) before returning. *Writers:* any thread (rare; LMDB
serialises; a create checks the name's uniqueness in the same write transaction). *Readers:* any thread.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import lmdb
import msgpack

DB = b"operator_tokens"
UNUSED_SECONDS = 90 * 86400  # storage.retention row "operator_tokens"
PREFIX = "op_"
ROLES = frozenset({"viewer", "operator", "privacy"})
TOKEN_FILE = "operator.token"
RESERVED_PREFIX = "system:"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$")  # the one definition of a token name's shape


class TokenNameError(ValueError):
    """A name that is malformed, reserved or already taken."""


class TokenInfo(NamedTuple):
    name: str
    roles: frozenset[str]
    created_at: float
    last_used_at: float | None = None  # as persisted by the last sweep


def check_name(name: object) -> str:
    """A token name: 1-64 of letters, digits and ``._@:-``, not starting with ``system:``."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise TokenNameError("a token name is 1-64 letters, digits or ._@:- (starting with a letter "
                             "or digit)")
    if name.lower().startswith(RESERVED_PREFIX):
        raise TokenNameError(f"token names starting with {RESERVED_PREFIX!r} are reserved")
    return name


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenStore:
    """Operator token digests with their roles."""

    def __init__(self, env: lmdb.Environment, clock: Callable[[], float] = time.time) -> None:
        self._env = env
        self._db = env.open_db(DB)
        self._clock = clock
        self._used: dict[bytes, float] = {}  # digest -> last use, persisted by sweep()

    def create(self, name: str, roles: set[str] | frozenset[str]) -> str:
        """Make a token with ``roles``; return it (the only time it is visible). ``TokenNameError`` for a
        malformed, reserved or taken name."""
        check_name(name)
        unknown = set(roles) - ROLES
        if unknown or not roles:
            raise ValueError(f"roles must be a non-empty subset of {sorted(ROLES)}")
        token = PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        value = msgpack.packb([name, sorted(roles), self._clock()])
        with self._env.begin(write=True) as txn:
            if any(info.name == name for _, info in self._scan(txn)):
                raise TokenNameError(f"a token named {name!r} exists already")
            txn.put(_digest(token), value, db=self._db)
        return token

    def lookup(self, token: str) -> TokenInfo | None:
        """The token's name and roles, or None when unknown (or revoked)."""
        digest = _digest(token)
        with self._env.begin() as txn:
            raw = txn.get(digest, db=self._db)
        if raw is None:
            return None
        self._used[digest] = self._clock()
        return _decode(raw)

    def all(self) -> list[TokenInfo]:
        """Every token's name, roles, creation and persisted last use (oldest first)."""
        with self._env.begin() as txn:
            return sorted((info for _, info in self._scan(txn)), key=lambda i: i.created_at)

    def revoke_name(self, name: str) -> bool:
        """Revoke (delete) the token called ``name``; False when there is none."""
        with self._env.begin(write=True) as txn:
            for digest, info in self._scan(txn):
                if info.name == name:
                    self._used.pop(digest, None)
                    return txn.delete(digest, db=self._db)
        return False

    def revoke(self, token: str) -> bool:
        with self._env.begin(write=True) as txn:
            return txn.delete(_digest(token), db=self._db)

    def sweep(self, now: float) -> int:
        """Persist the last uses seen, then delete tokens unused for ``UNUSED_SECONDS``; how many."""
        used, self._used = self._used, {}
        deleted = 0
        with self._env.begin(write=True) as txn:
            for digest, raw in list(txn.cursor(db=self._db)):
                name, roles, created, *rest = msgpack.unpackb(raw)
                last = max(used.get(bytes(digest), 0.0), rest[0] if rest else 0.0, created)
                if now - last > UNUSED_SECONDS:
                    txn.delete(digest, db=self._db)
                    deleted += 1
                elif bytes(digest) in used:
                    txn.put(digest, msgpack.packb([name, roles, created, last, *rest[1:]]),
                            db=self._db)
        return deleted

    def count(self) -> int:
        with self._env.begin() as txn:
            return txn.stat(self._db)["entries"]

    def _scan(self, txn: lmdb.Transaction) -> list[tuple[bytes, TokenInfo]]:
        return [(bytes(k), _decode(v)) for k, v in txn.cursor(db=self._db)]


def _decode(raw: bytes) -> TokenInfo:
    name, roles, created, *rest = msgpack.unpackb(raw)  # [name, roles, created, last use?]
    return TokenInfo(name, frozenset(roles), created, rest[0] if rest else None)


def ensure_first_token(store: TokenStore, data_dir: str | Path) -> Path | None:
    """If no token exists, create an all-roles one in ``<data_dir>/operator.token`` (0600); its path.
    (An operator who revoked every token gets a new one by restarting the engine.)"""
    if store.count() > 0:
        return None
    path = Path(data_dir) / TOKEN_FILE
    token = store.create("first-start", ROLES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return path
