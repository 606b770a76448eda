"""The API key lifecycle: create (shown once), list, revoke; and which keys authenticate at all.

A key authenticates while its digest is in the engine's key index (``digest -> account id``), which the
HTTP API and ``submit`` consult first. The index holds the keys of active and restricted accounts only: a
closed account's keys leave it at closure (and are left out when the engine starts), so they are refused
everywhere — reads, settings and debugging windows as well as new messages. Revocation removes the digest
from the account record, the index and the account's session in that order, so a revoked key stops
authenticating at once. Every create and revoke is audit-logged (who, what, which account) and the holder
gets a security alert e-mail.

A revoked key still names its account for as long as its metadata is kept (90 days, the retention
table's account records): :meth:`ApiKeyManager.revoked_owner` finds the account of a presented key that
was revoked, by the key's id (a hash of its digest), so that repeated use of a leaked and revoked key
reaches the holder as a "failed authentications" alert. The map is rebuilt from the store at start.

Metadata (id, hint, created, last used, revoked) lives in :mod:`storage.apikeys`; a key created before that
store existed is listed from the account record (hint only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from engine import apikeys
from engine import messages as m
from engine.errors import AccountRestricted, LastApiKey, UnknownApiKey
from storage.accounts import ACTIVE, CLOSED, AccountRecord
from storage.apikeys import ApiKeyInfo, ApiKeyStore, key_id
from storage.retention import cutoff


@dataclass(frozen=True)
class NewApiKey:
    """A created key: ``api_key`` is shown here once and never again."""

    id: str
    api_key: str
    hint: str


def require_active(record: AccountRecord) -> AccountRecord:
    """``AccountRestricted`` unless the account is active: a restricted account may read, not change."""
    if record.state != ACTIVE:
        raise AccountRestricted(f"account is {record.state}: settings cannot be changed")
    return record


class ApiKeyManager:
    """Creates, lists and revokes an account's keys and keeps the key index in step."""

    def __init__(self, runtime: Any, key_index: dict[bytes, str],
                 audit: Callable[[str, str, str], None],
                 alert: Callable[[str, str], object] = lambda account_id, kind: None) -> None:
        self._runtime = runtime
        self._alert = alert  # the holder's security alert e-mail (api_key_created / _revoked)
        self._accounts = runtime.accounts
        self._store: ApiKeyStore = runtime.api_keys
        self._index = key_index
        self._audit = audit
        closed = {r.id for r in self._accounts.all() if r.state == CLOSED}
        for digest in [d for d, account_id in key_index.items() if account_id in closed]:
            del key_index[digest]
        # key id -> (account id, revoked at) of the revoked keys the store still keeps
        self._revoked: dict[str, tuple[str, float]] = {
            kid: (account_id, at) for account_id, kid, at in self._store.revoked()
            if account_id not in closed}

    def create(self, account_id: str, *, actor: str) -> NewApiKey:
        api_key = apikeys.new_api_key()
        digest, hint = apikeys.digest(api_key), apikeys.hint(api_key)
        self._accounts.update(account_id, lambda r: replace(
            require_active(r), key_digests=[*r.key_digests, digest], key_hints=[*r.key_hints, hint]))
        info = self._store.add(account_id, digest, hint)
        self._index[digest] = account_id
        self._runtime.tell_session(account_id, m.ApiKeyAdded(account_id, digest))
        self._audit(actor, "create_api_key", account_id)
        self._alert(account_id, "api_key_created")
        return NewApiKey(info.id, api_key, hint)

    def list(self, account_id: str) -> list[dict]:
        """The account's keys, active first then revoked: id, hint, created, last used, revoked."""
        record = self._accounts.get(account_id)
        rows = self._store.for_account(account_id)
        active = [self._active_info(record, i, rows)._asdict() for i in range(len(record.key_digests))]
        revoked = [info._asdict() for info in rows.values() if info.revoked_at is not None]
        return active + sorted(revoked, key=lambda info: info["revoked_at"])

    def revoke(self, account_id: str, kid: str, *, actor: str, keep_last: bool = False) -> dict:
        """Revoke one key now; with ``keep_last`` refuse to revoke the account's only key."""
        rows = self._store.for_account(account_id)
        found: list[tuple[bytes, ApiKeyInfo]] = []

        def change(r: AccountRecord) -> AccountRecord:
            digests = [d for d in r.key_digests if key_id(d) == kid]
            if not digests:
                raise UnknownApiKey(f"no active API key {kid} on this account")
            if keep_last and len(r.key_digests) == 1:
                raise LastApiKey("this is the account's only key: create another one first")
            i = r.key_digests.index(digests[0])
            found.append((digests[0], self._active_info(r, i, rows)))
            return replace(r, key_digests=r.key_digests[:i] + r.key_digests[i + 1:],
                           key_hints=r.key_hints[:i] + r.key_hints[i + 1:])

        self._accounts.update(account_id, change)
        digest, info = found[-1]
        self._index.pop(digest, None)
        self._runtime.tell_session(account_id, m.ApiKeyRevoked(account_id, digest))
        revoked = self._store.revoke(account_id, info)
        self._revoked[info.id] = (account_id, revoked.revoked_at)
        self._audit(actor, "revoke_api_key", account_id)
        self._alert(account_id, "api_key_revoked")
        return revoked._asdict()

    def account_closed(self, record: AccountRecord) -> None:
        """A closed account's keys authenticate nowhere any more (and name it no more)."""
        for digest in record.key_digests:
            self._index.pop(digest, None)
        self._forget_revoked(record.id)

    def revoked_owner(self, digest: bytes, now: float | None = None) -> str | None:
        """The account a revoked key (by its digest) belonged to, while its metadata is kept."""
        kid = key_id(digest)
        found = self._revoked.get(kid)
        if found is None:
            return None
        account_id, revoked_at = found
        if revoked_at < cutoff("account_records", time.time() if now is None else now):
            self._revoked.pop(kid, None)  # swept from the store by now, or about to be
            return None
        return account_id

    def _forget_revoked(self, account_id: str) -> None:
        for kid, (owner, _at) in list(self._revoked.items()):  # (a copy: revocations may run meanwhile)
            if owner == account_id:
                self._revoked.pop(kid, None)

    def touch(self, account_id: str, digest: bytes) -> None:
        self._store.touch(account_id, digest)

    def forget(self, account_id: str) -> int:
        self._forget_revoked(account_id)
        return self._store.forget_account(account_id)

    @staticmethod
    def _active_info(record: AccountRecord, i: int, rows: dict[str, ApiKeyInfo]) -> ApiKeyInfo:
        kid = key_id(record.key_digests[i])
        hint = record.key_hints[i] if i < len(record.key_hints) else ""
        return rows.get(kid) or ApiKeyInfo(kid, hint, None, None, None)
