"""Privacy operations outside the message path: data-subject requests, incidents, support cases.

:class:`PrivacyServices` opens ``<data_dir>/privacy`` (an LMDB environment of its own, every commit
fsynced) with its sealed stores — data-subject requests, one-time links and wallet challenges, incidents,
support cases, lawful orders' notices — and builds the desks the engine and the control port use
(``requests``, ``incidents``, ``support``, ``order_notices``). It is opened by :class:`engine.Engine` after the runtime and closed after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.lawful_notice import OrderNoticeDesk
from engine.mail.notices import Notices
from engine.privacy import former
from engine.privacy.incidents import IncidentDesk
from engine.privacy.requests import RequestDesk
from storage.dsar import DsarStore
from storage.env import open_env
from storage.incidents import IncidentStore
from storage.order_notices import OrderNotices
from storage.support import SupportCases
from storage.verification import Challenges, LinkTokens


class PrivacyServices:
    def __init__(self, data_dir: Path, settings: Settings, runtime: Any, notices: Notices,
                 rights: Any, *, clock: Callable[[], float] = time.time) -> None:
        keys = runtime.keys
        self.env = open_env(Path(data_dir) / "privacy",
                            map_size=settings.engine.privacy_map_size_mb << 20)
        account_keys = runtime.account_keys  # links, challenges and request ids: under the account's key
        self.links = LinkTokens(self.env, account_keys, legacy=keys.store_sealer("link_tokens"))
        self.challenges = Challenges(self.env, account_keys,
                                     legacy=keys.store_sealer("wallet_challenges"))
        self.support = SupportCases(self.env, keys.store_sealer("support"), account_keys, clock=clock)
        audit = _auditor(runtime)
        incidents = IncidentStore(self.env, keys.store_sealer("incidents"), account_keys, clock=clock)
        self.requests = RequestDesk(
            DsarStore(self.env, keys.store_sealer("dsar"), account_keys, clock=clock), self.links,
            self.challenges, notices, runtime.accounts, runtime.ledger_store, rights, audit,
            settings.privacy, settings.email.link_base,
            is_former=lambda account_id: former.is_former(runtime, account_id),
            support=self.support, incidents=incidents, clock=clock)
        self.incidents = IncidentDesk(incidents, notices, runtime.accounts, audit, clock=clock)
        self.order_notices = OrderNoticeDesk(
            OrderNotices(self.env, keys.store_sealer("order_notices")), notices,
            runtime.core_audit, clock=clock)

    @property
    def sweepables(self) -> dict[str, Any]:
        return {"dsar": self.requests.store, "incidents": self.incidents,
                "support": self.support, "link_tokens": self.links,
                "wallet_challenges": self.challenges, "order_notices": self.order_notices.store}

    def forget_account(self, account_id: str) -> dict[str, int]:
        """Erasure (before the account's data key is destroyed): delete its pending links and wallet
        challenges. Its data-subject requests stay (their retention row) and lose the account id with
        its keys: they name the account by its pseudonym only (``storage.dsar``)."""
        requests = [r.id for r in self.requests.store.all() if r.account_id == account_id]
        return {"links_deleted": self.links.forget_account(account_id, requests),
                "challenges_deleted": self.challenges.forget_account(account_id)}

    def stats(self) -> dict[str, float]:
        """Flat counts (``engine.http.metrics`` turns each into a ``smsroute_privacy_*`` gauge)."""
        return {**{f"dsar_{k}": v for k, v in self.requests.stats().items()},
                **{f"incidents_{k}": v for k, v in self.incidents.stats().items()}}

    def close(self) -> None:
        self.env.close()


def _auditor(runtime: Any) -> Callable[..., None]:
    """Privacy steps are staff access to personal data (policy 9): the core audit log, synced."""

    def audit(actor: str, action: str, target: str, *, subject: str = "",
              detail: dict[str, Any] | None = None) -> None:
        """``subject``: the pseudonym of an account nothing names any more, the entry is about."""
        runtime.core_audit.append(actor, action, target, "ok", detail, subject=subject or None)
        runtime.core_env.sync(True)

    return audit
