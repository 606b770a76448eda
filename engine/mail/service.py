"""MailService: opens the mail store, picks the transport, runs the worker; started and stopped by Engine.

Data layout: ``<data_dir>/mail/`` is an LMDB environment of its own (every commit fsynced) holding the
outbox; its data key is the ``outbox`` store key of the engine's key ring (outside LMDB).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from engine.config import EmailSettings
from engine.mail.transport import Transport, transport_for
from engine.mail.worker import MailWorker
from storage.env import open_env
from storage.keys import KeyRing
from storage.outbox import Outbox

MAIL_MAP_SIZE = 256 << 20


class MailService:
    def __init__(self, data_dir: Path, settings: EmailSettings, keys: KeyRing, *,
                 transport: Transport | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.env = open_env(Path(data_dir) / "mail", map_size=MAIL_MAP_SIZE)
        self.outbox = Outbox(self.env, keys.store_sealer("outbox"), max_mails=settings.max_outbox)
        self.transport = transport or transport_for(settings)
        self.worker = MailWorker(self.outbox, self.transport, settings, clock=clock)

    def start(self) -> MailService:
        self.worker.start()
        return self

    def stop(self) -> None:
        self.worker.stop()
        self.env.close()

    def stats(self) -> dict[str, int]:
        return {"outbox": len(self.outbox), **self.worker.counts}
