"""How a mail leaves the engine: over SMTP (``aiosmtplib``), or — without ``[email] host`` — into the log.

:class:`SmtpTransport` speaks SMTP with implicit TLS (``tls = "tls"``, usually port 465), STARTTLS
(``"starttls"``, the default, usually 587; the upgrade is required, never optional) or plain text
(``"none"``, refused by the config beyond loopback). TLS is 1.2 or newer with certificate checks. The password
is read from ``password_file`` or the environment variable ``password_env`` at each connection (so it can
be rotated without a restart) and is never logged or stored.

:class:`LogTransport` is the embedded default: nothing is sent; the worker logs the template name and
the account's pseudonym — no account id, no address, no subject, no text.

A send raises :class:`PermanentFailure` when the server refused the mail for good (a 5xx reply: retrying
cannot help) and any other exception for a failure worth retrying (connection refused, timeout, 4xx).
"""

from __future__ import annotations

import logging
import os
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import aiosmtplib

from engine.config import EmailSettings
from storage.outbox import OutboxMail

log = logging.getLogger(__name__)

__all__ = ["LogTransport", "PermanentFailure", "SmtpTransport", "Transport", "transport_for"]


class PermanentFailure(Exception):
    """The SMTP server refused the mail for good (5xx)."""


class Transport(Protocol):
    async def send(self, mail: OutboxMail) -> None: ...


class LogTransport:
    """No SMTP server configured: nothing leaves. The worker's one line for the mail says so
    (``delivers`` is false: "mail not sent (no [email] host configured)", with the template and the
    account's pseudonym) instead of "mail sent"; this transport logs nothing itself, so each mail is
    one line."""

    delivers = False

    def __init__(self) -> None:
        self.logged = 0

    async def send(self, mail: OutboxMail) -> None:
        self.logged += 1


class SmtpTransport:
    """One SMTP connection per mail (customer mail is rare; no pool to keep healthy)."""

    delivers = True

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self._tls = ssl.create_default_context()
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2

    def _password(self) -> str | None:
        s = self.settings
        if s.password_file:
            with open(s.password_file, encoding="utf-8") as fh:
                return fh.read().strip()
        if s.password_env:
            return os.environ.get(s.password_env)
        return None

    def message(self, mail: OutboxMail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.from_address
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        msg["Date"] = formatdate(mail.created_at, usegmt=True)
        msg["Message-ID"] = make_msgid(idstring=mail.mail_id[:16], domain="smsroute")
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(mail.text)
        return msg

    async def send(self, mail: OutboxMail) -> None:
        """One connection for one mail. A failure or a cancel (an erasure of the mail's account) closes
        the connection at once, without the ``QUIT`` round trip ``aiosmtplib.send`` makes even then: a
        cancelled send would otherwise wait on a hung server up to the timeout again."""
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host, port=s.port,
            username=s.username or None, password=self._password() if s.username else None,
            use_tls=s.tls == "tls", start_tls=s.tls == "starttls",
            tls_context=self._tls if s.tls != "none" else None, timeout=s.timeout_seconds)
        try:
            try:
                await client.connect()
                await client.send_message(self.message(mail))
            except BaseException:
                client.close()
                raise
            try:
                await client.quit()  # the mail is accepted; a server slow to say goodbye changes nothing
            except aiosmtplib.SMTPException:
                pass
            finally:
                client.close()
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise PermanentFailure("recipient refused") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600 and not isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                raise PermanentFailure(f"smtp {exc.code}") from exc
            raise


def transport_for(settings: EmailSettings) -> Transport:
    return SmtpTransport(settings) if settings.host else LogTransport()
