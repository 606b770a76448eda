"""``[email]``: SMTP for customer mail (``engine.mail``: confirmation links, security alerts, price and
policy notices, data-subject requests, incident notices).

Without ``host`` (the embedded default) no mail is sent: each one is only logged as its template name and
the account's pseudonym, never the account id, address or text. The password comes from a file or an
environment variable and is never in the TOML (a ``password`` key is refused); ``tls`` defaults to
``starttls`` (TLS 1.2+ with certificate checks) and ``none`` is only accepted to a loopback host. An
unsendable mail is retried up to ``retry_cap_seconds`` apart, at most 3 days: it is dropped after the
outbox's retention row ``outbound_mail`` (``storage.retention``: 3 days).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from engine.config.bounds import PORT, TIMEOUT
from engine.config.hosts import is_loopback
from engine.errors import ConfigError
from engine.typed_tables import Range, typed_table


@dataclass(frozen=True)
class EmailSettings:
    """``[email]``: SMTP for customer mail (``engine.mail``). No ``host``: mail is only logged."""

    # empty: the embedded default sends nothing; it logs the template name and the account's
    # pseudonym, never the account id (engine.mail.worker)
    host: str = ""
    port: Annotated[int, PORT] = 587
    from_address: str = "smsroute <no-reply@localhost>"  # the TOML key is ``from``
    tls: str = "starttls"  # none | starttls | tls
    username: str = ""
    password_file: str = ""  # credentials come from a file or an environment variable, never the TOML
    password_env: str = ""
    timeout_seconds: Annotated[float, TIMEOUT] = 30.0
    require_confirmation: bool = False  # True: an unconfirmed account's submits are refused
    link_base: str = "http://127.0.0.1:8080"  # where the customer API is reached, for mailed links
    # mails waiting to be sent; beyond this new mail is refused (StoreFull)
    max_outbox: Annotated[int, Range(1, 10_000_000)] = 10000
    retry_base_seconds: Annotated[float, Range(0, 86400, open_low=True)] = 30.0
    # an unsendable mail is dropped after the retention row ``outbound_mail`` (storage.retention: 3 days)
    retry_cap_seconds: Annotated[float, Range(0, 3 * 86400, open_low=True)] = 3600.0


def email_from_table(table: Any) -> EmailSettings:
    """``[email]``, with ``from`` (a Python keyword) read into ``from_address``; credentials are never
    accepted in the TOML itself."""
    if not isinstance(table, dict):
        raise ConfigError("config: [email] must be a table")
    table = dict(table)
    for secret in ("password", "pass", "secret"):
        if secret in table:
            raise ConfigError(f"config: [email] {secret} is refused: credentials never go in the "
                              "TOML; set password_file or password_env")
    if "from" in table:
        table["from_address"] = table.pop("from")
    email = typed_table(EmailSettings, table, "email")
    if email.tls not in ("none", "starttls", "tls"):
        raise ConfigError("config: email.tls must be 'none', 'starttls' or 'tls'")
    if email.password_file and email.password_env:
        raise ConfigError("config: [email] password_file and password_env are alternatives")
    if email.host and email.tls == "none" and not is_loopback(email.host):
        raise ConfigError(f"config: email.host = {email.host!r} is beyond loopback: tls = 'none' is "
                          "refused there (use 'starttls' or 'tls': TLS 1.2+)")
    if (email.password_file or email.password_env) and not email.username:
        raise ConfigError("config: [email] a password needs a username")
    return email
