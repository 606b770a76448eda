"""MailService: opens the mail store, picks the transport, runs the worker; started and stopped by Engine.

Data layout: ``<data_dir>/mail/`` is an LMDB environment of its own (every commit fsynced) holding the
outbox. Each mail is sealed under the data key of the account it is for (``storage.account_keys``), so
an account's erasure reaches its queued mail (:meth:`MailService.forget_account`); the one mail that
confirms an erasure has a key of its own in ``<keys>/mail/``, destroyed when it leaves the outbox (see
``storage.outbox``). The ``outbox`` store key of the key ring only opens mail queued by older versions.

Without ``[email] host`` (the embedded default) nothing reaches an account holder: each mail is only logged
and recorded ``not_delivered``. :meth:`MailService.warn_if_not_delivering` says so in one warning, and :meth:`stats` shows
``delivery: "not_configured"`` (``"smtp"`` otherwise), so an operator is not left to find out from a
lawful order's refused disclosure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.config import EmailSettings
from engine.mail.transport import Transport, transport_for
from engine.mail.worker import MailWorker
from storage.account_keys import AccountKeys
from storage.env import open_env
from storage.keys import KeyRing
from storage.outbox import Outbox

MAIL_MAP_SIZE = 256 << 20
#: What the mail of an engine without a mail server would have told its account holders
NOT_CONFIGURED_WARNING = (
    "no mail server is configured ([email] host): mail to account holders is not delivered, only "
    "logged - confirmation links, security alerts, price and policy notices, data-subject request "
    "and incident mails, lawful-order notices (disclosure under a lawful order is refused until its "
    "notice is delivered or recorded as not permitted)")
# the worker drops a cancelled send at its loop's next turn; this only bounds a worker stuck elsewhere
CANCEL_WAIT_SECONDS = 5.0
log = logging.getLogger(__name__)


class MailService:
    def __init__(self, data_dir: Path, settings: EmailSettings, keys: KeyRing,
                 account_keys: AccountKeys, mail_keys: AccountKeys, *,
                 transport: Transport | None = None, map_size: int = MAIL_MAP_SIZE,
                 clock: Callable[[], float] = time.time,
                 address_of: Callable[[str], str | None] | None = None) -> None:
        self.env = open_env(Path(data_dir) / "mail", map_size=map_size)
        self.outbox = Outbox(self.env, account_keys, mail_keys, max_mails=settings.max_outbox,
                             legacy=keys.store_sealer("outbox"))
        self.transport = transport or transport_for(settings)
        self.worker = MailWorker(self.outbox, self.transport, settings, clock=clock,
                                 address_of=address_of)

    @property
    def delivers(self) -> bool:
        """Whether mail reaches anyone: False without a mail server (``LogTransport``)."""
        return bool(getattr(self.transport, "delivers", True))

    def start(self) -> MailService:
        self.outbox.sweep_orphan_keys(time.time())  # keys a crash left without their mail
        self.worker.start()
        return self

    def warn_if_not_delivering(self) -> None:
        """One warning when no mail server is configured; the engine calls it once it has started (a
        start that fails says only why it failed)."""
        if not self.delivers:
            log.warning(NOT_CONFIGURED_WARNING)

    def stop(self) -> None:
        self.worker.stop()
        self.env.close()

    def forget_account(self, account_id: str) -> int:
        """Erasure: remove every mail queued for the account; how many. A send to the account under way
        is cancelled, not waited for (an SMTP server that hangs must not hold up the erasure's answer),
        so once this returns nothing more goes to the account."""
        with self.worker.sending:
            removed = self.outbox.forget_account(account_id)
            cancelled = self.worker.cancel_send_for(account_id)
        if cancelled is not None and not cancelled.wait(CANCEL_WAIT_SECONDS):
            log.warning("mail worker slow to drop the erased account's send")
        return removed

    def withdraw(self, mail_ids: list[str]) -> list[str]:
        """Call off these mails before they leave (a lawful order released: ``engine.lawful_notice``):
        those still queued are removed unsent, and a send of one under way is cancelled, not waited for
        (as an erasure's); the account of each mail removed. A mail the server had accepted already
        went out (as with an erasure, one accepted in that very instant may have too)."""
        with self.worker.sending:
            removed = self.outbox.withdraw(mail_ids)
            cancelled = self.worker.cancel_send_of(frozenset(mail_ids))
        if cancelled is not None and not cancelled.wait(CANCEL_WAIT_SECONDS):
            log.warning("mail worker slow to drop a withdrawn send")
        return removed

    @contextmanager
    def readdressing(self, account_id: str) -> Iterator[None]:
        """Rectification: change the account's address inside this block. The sender reads no address
        while it runs (so it never sees the new address's confirmation link beside the old address, and
        drops it as superseded); after it, a send to the old address under way is cancelled and tried
        again at once, to the new one. Waiting mail is addressed when it is sent."""
        with self.worker.sending:
            yield
            cancelled = self.worker.cancel_send_for(account_id, retry=True)
        if cancelled is not None and not cancelled.wait(CANCEL_WAIT_SECONDS):
            log.warning("mail worker slow to drop a send to a rectified address")

    def stats(self) -> dict[str, int | str]:
        """The outbox's size, the worker's counts, and ``delivery``: ``"smtp"``, or
        ``"not_configured"`` when mail is only logged."""
        return {"outbox": len(self.outbox), **self.worker.counts,
                "delivery": "smtp" if self.delivers else "not_configured"}
