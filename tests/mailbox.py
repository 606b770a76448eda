"""A real SMTP server on loopback (aiosmtpd) for tests: records every mail it accepts.

``Mailbox()`` listens on 127.0.0.1 (a free port, ``.port``) in a thread of its own and stops with
``close()``. ``refuse_next`` makes it answer the next N mails with a temporary failure (451), to test
retries; ``reject_next`` with a permanent one (550), which the sender does not retry. ``hold()`` makes it stall every mail at its recipient (no answer to ``RCPT TO``, so no mail
content has been sent) until ``release()``; ``stalled`` counts the sends held so. Mails are parsed with the
standard library, as a receiving client would.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP

from tests.waiting import wait_for


class Mailbox:
    def __init__(self) -> None:
        self.mails: list[tuple[list[str], EmailMessage]] = []
        self.refuse_next = 0
        self.reject_next = 0
        self.stalled = 0
        self._held: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(self._loop.create_server(
            lambda: SMTP(self, hostname="mailbox.test"), "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def hold(self) -> None:
        """Stall every send at ``RCPT TO`` from now until :meth:`release` (a server that hangs)."""
        self._held = asyncio.Event()

    def release(self) -> None:
        held = self._held
        if held is not None:
            self._loop.call_soon_threadsafe(held.set)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        held = self._held
        if held is not None and not held.is_set():
            with self._lock:
                self.stalled += 1
            await held.wait()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                return "451 try again later"
            if self.reject_next > 0:
                self.reject_next -= 1
                return "550 mailbox unavailable"
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.mails.append((list(envelope.rcpt_tos), msg))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for rcpt, m in self.mails if address in rcpt]

    def wait(self, address: str, subject_part: str = "", count: int = 1,
             timeout: float = 15.0) -> list[EmailMessage]:
        """The mails to ``address`` whose subject contains ``subject_part``, once there are ``count``."""
        def found() -> list[EmailMessage] | None:
            got = [m for m in self.to(address) if subject_part in m["Subject"]]
            return got if len(got) >= count else None

        return wait_for(found, what=f"{count} mail(s) '{subject_part}' to {address}", timeout=timeout)

    def close(self) -> None:
        def stop() -> None:
            self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(10)


def text_of(msg: EmailMessage) -> str:
    return msg.get_content()


def email_overrides(mailbox: Mailbox, **extra: Any) -> dict[str, Any]:
    """``[email]`` settings that send to ``mailbox`` (plain SMTP is allowed on loopback only)."""
    return {"host": "127.0.0.1", "port": mailbox.port, "tls": "none",
            "retry_base_seconds": 0.01, "retry_cap_seconds": 0.05, **extra}
