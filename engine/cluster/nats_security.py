"""How a process of a cluster reaches NATS: TLS where it leaves the host, authentication, no downgrade.

The frames between a cluster's processes carry what the engine protects everywhere else: destination
numbers, sender IDs, message bodies, account ids. So:

* **On one host** ``smsroute run --workers N`` starts its own ``nats-server`` on loopback with a random
  authorization token of that run (``engine.cluster.nats_server``): another local user can neither read
  the traffic nor inject frames. The token is in a file only the engine's user can read
  (``<data>/nats/client.token``); processes are told its path, never the token.
* **Across hosts** (``--nats URL``): a ``nats://`` URL beyond loopback is refused - use ``tls://``, which
  is TLS 1.2+ with the server's certificate and host name verified (against ``[nats] ca_file``, else the
  system's CAs), optionally with a client certificate (mutual TLS). Authentication: ``[nats] token_file``,
  or ``user`` with ``password_file``; secrets are read from files, never the TOML.
* **No downgrade.** nats-py (2.16) starts TLS only when the server's first, plaintext INFO line asks for
  it: given a ``tls://`` URL, a server - or anyone on the path - that leaves ``tls_required`` out gets a
  plaintext connection and the credentials in the CONNECT line. :class:`SecureClient` checks, just before
  CONNECT is written (at every connect and reconnect), that the connection is TLS whenever TLS is wanted,
  and refuses it otherwise; ``tests/engine/cluster/test_nats_security.py`` proves it against a server
  that never asks for TLS.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from nats.aio.client import Client
from nats.errors import Error as NatsError

from engine.config import NatsSettings, _is_loopback
from engine.errors import ConfigError


class InsecureConnectionRefused(NatsError):
    """A connection that should be TLS is not: refused before anything secret is written to it."""


class SecureClient(Client):
    """nats-py's client, refusing to send CONNECT (credentials, then traffic) over plaintext when TLS
    is wanted (see the module's docstring)."""

    wants_tls = False

    def _connect_command(self) -> bytes:
        if self.wants_tls and not _is_tls(self._transport):
            raise InsecureConnectionRefused(
                "nats: the server did not start TLS on a tls:// connection; refused before CONNECT")
        return super()._connect_command()


def _is_tls(transport: Any) -> bool:
    writer = getattr(transport, "_io_writer", None)
    return writer is not None and writer.get_extra_info("ssl_object") is not None


@dataclass(frozen=True)
class NatsSecurity:
    """The TLS context and credentials one process connects with (``connect_options``)."""

    wants_tls: bool = False
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    token_file: str = ""
    user: str = ""
    password_file: str = field(default="", repr=False)

    @classmethod
    def for_servers(cls, servers: list[str] | tuple[str, ...], settings: NatsSettings,
                    token_file: str = "") -> NatsSecurity:
        """What connecting to ``servers`` takes under ``settings``; ``token_file`` (a local cluster's
        own server) replaces the configured authentication. Raises ``ConfigError`` for a plaintext URL
        beyond loopback, TLS options without a ``tls://`` URL, or an unreadable file."""
        schemes = set()
        for url in servers:
            parsed = urlparse(url if "://" in url else f"nats://{url}")
            schemes.add(parsed.scheme)
            if parsed.scheme not in ("nats", "tls"):
                raise ConfigError(f"--nats {url}: the scheme must be nats:// (loopback) or tls://")
            if parsed.username or parsed.password:
                raise ConfigError(f"--nats {parsed.hostname}: credentials do not go in the URL (a "
                                  "command line is readable by every local user); use [nats] "
                                  "token_file or user and password_file")
            if parsed.scheme == "nats" and not _is_loopback(parsed.hostname or ""):
                raise ConfigError(f"--nats {url}: a NATS server beyond loopback is reached over TLS "
                                  "only: use tls://host:port ([nats] ca_file verifies its certificate)")
        wants_tls = "tls" in schemes
        if (settings.ca_file or settings.cert_file) and not wants_tls:
            raise ConfigError("config: [nats] ca_file/cert_file are for tls:// servers; --nats gives none")
        if wants_tls and "nats" in schemes:
            raise ConfigError("--nats: mixing nats:// and tls:// servers; the cluster's connections are "
                              "all TLS or all loopback")
        for name in ("ca_file", "cert_file", "key_file", "password_file", "token_file"):
            path = token_file if name == "token_file" and token_file else getattr(settings, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"config: [nats] {name} = {path!r} is not a readable file")
        auth_token = token_file or settings.token_file
        return cls(wants_tls=wants_tls, tls=_tls_context(settings) if wants_tls else None,
                   token_file=auth_token, user="" if token_file else settings.user,
                   password_file="" if token_file else settings.password_file)

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``SecureClient.connect``; secrets are read now (a rotated file is
        picked up at the next connect of this process)."""
        options: dict[str, Any] = {}
        if self.tls is not None:
            options["tls"] = self.tls
        if self.token_file:
            options["token"] = _first_line(self.token_file, "token_file")
        elif self.user:
            options["user"] = self.user
            options["password"] = _first_line(self.password_file, "password_file")
        return options

    def client(self) -> SecureClient:
        nc = SecureClient()
        nc.wants_tls = self.wants_tls
        return nc


def _tls_context(settings: NatsSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"config: [nats] TLS files: {type(exc).__name__}: {exc}") from exc
    return context


def _first_line(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            secret = fh.readline().strip()
    except OSError as exc:
        raise ConfigError(f"config: [nats] {what} {path}: {exc.strerror}") from exc
    if not secret:
        raise ConfigError(f"config: [nats] {what} {path}: its first line is empty")
    return secret
