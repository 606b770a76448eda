"""One name per account across a cluster: what a worker answers the core names accounts as the core does.

Why it exists: an entry or a hold about an account names it by its keyed pseudonym (``psn_…``,
``storage.audit``, ``storage.holds``), computed under the key ring's pseudonym secret. Every process of a
cluster has a key ring of its own (a worker may run on another host, under another KEK), so a worker's
pseudonym of an account is not the core's - and the core's is the one everything else uses: the
ledger's carve-out (an erasure's ``ledger_token``), the data-subject records, ``GET /v1/audit?account=``
and ``?subject=``. Left as written, two workers named one account by two pseudonyms, none of them the
core's: ``GET /v1/audit?account=acc_…`` found none of the workers' hold entries, and after an erasure
nothing tied them to the account's ``ledger_token``.

How: the core gives its pseudonym of the account with every hold on an account it places
(``ShardQuery`` ``place_hold``), and the worker keeps it with the hold (``Hold.core_subject``, sealed
in the hold record like the rest; the hold record outlives every audit entry about the hold). A worker
answers with the core's name in place of its own: a hold (:func:`hold_answer`) and each audit entry
about a hold (:func:`entry_named`, found by the hold id the entry's target starts with). An entry of an
older version's hold (no ``core_subject``) is named so when the question names the account by its id
(the worker computes its own pseudonym of it: :func:`older_names`). The core then fills in the account
id of an entry about an account that exists (:class:`CoreNaming`), as one process shows it.

Not chosen: giving the workers the core's pseudonym secret. It also derives the ledger's hash-chain and
natural-key keys (``Pseudonyms.subkey``), so a worker holding it could forge the core's ledger chain, and
no key material crosses from the core to a worker today (each has its own key ring and KEK). The
pseudonyms a worker stores stay its own: what is shipped is the core's pseudonym of one account, which a
worker could not turn back into anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

__all__ = ["CoreNaming", "entry_named", "hold_answer", "hold_id_of", "older_names", "renamed"]


def renamed(text: str, own: str, core: str) -> str:
    """``text`` with the pseudonym ``own`` replaced by ``core`` (an actor ``customer:psn_…``, a target)."""
    return text.replace(own, core) if own and core and own != core else text


def hold_id_of(target: str) -> str:
    """The hold an audit entry is about: its target is the hold id, or ``<hold id>/<message id>``."""
    return target.partition("/")[0]


def entry_named(entry: Any, core_subject: str) -> Any:
    """An audit entry (``storage.audit.AuditEntry``) naming its account by ``core_subject`` instead of
    the pseudonym it was written with; unchanged without one or about no account."""
    own = entry.subject
    if not own or not core_subject or own == core_subject:
        return entry
    return entry._replace(subject=core_subject, actor=renamed(entry.actor, own, core_subject),
                          target=renamed(entry.target, own, core_subject))


def older_names(about: tuple[str, str] | None, own_pseudonym: Callable[[str], str]) -> dict[str, str]:
    """``{this store's pseudonym: the core's}`` for the account a question names by its id
    (``about``: ``(the core's pseudonym, the account id or "")``): how entries of a hold placed by an
    older version, which kept no ``core_subject``, are found and named. Empty without an id."""
    if not about or not about[1]:
        return {}
    return {own_pseudonym(about[1]): about[0]}


def hold_answer(hold: Any, **extra: Any) -> dict[str, Any]:
    """A hold (``storage.holds.Hold``) as answered to the core or a caller: the account named by the
    core's pseudonym (``subject``, and in ``actor`` / ``ended_by`` where it stands for the id);
    ``core_subject`` itself stays inside."""
    fields = asdict(hold)
    own, core = fields["subject"], fields.pop("core_subject", "")
    if own and core and own != core:
        fields["subject"] = core
        fields["actor"] = renamed(fields["actor"], own, core)
        fields["ended_by"] = fields["ended_by"] and renamed(fields["ended_by"], own, core)
    return {**extra, **fields}


class CoreNaming:
    """The core's last step on a worker's audit entry: the account id of an account that exists, as one
    process shows it (in ``account_id``, and in ``actor`` / ``target`` where the pseudonym stands for
    it); ``""`` once it is erased. An entry the worker could open (its id shown) is named by the
    core's pseudonym of that id. ``pseudonym``: the core's (``Pseudonyms.pseudonym``); ``account_of``:
    the id of the account filed under a core token, None if there is none
    (``AccountStore.id_by_token``)."""

    def __init__(self, pseudonym: Callable[[str], str],
                 account_of: Callable[[bytes], str | None]) -> None:
        self._pseudonym = pseudonym
        self._account_of = account_of

    def entries(self, entries: list[Any]) -> list[Any]:
        """``entries`` named as the core names them (each account looked up once per call)."""
        found: dict[str, str] = {}
        return [self._named(entry, found) for entry in entries]

    def _named(self, entry: Any, found: dict[str, str]) -> Any:
        if entry.account_id:
            return entry._replace(subject=self._pseudonym(entry.account_id))
        subject = entry.subject
        if not subject.startswith("psn_"):
            return entry
        if subject not in found:
            try:
                token = bytes.fromhex(subject.removeprefix("psn_"))
            except ValueError:
                token = b""
            found[subject] = (self._account_of(token) or "") if token else ""
        account = found[subject]
        if not account:
            return entry
        return entry._replace(actor=entry.actor.replace(subject, account),
                              target=entry.target.replace(subject, account), account_id=account)
