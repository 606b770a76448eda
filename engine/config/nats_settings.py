"""``[nats]``: how every process of a cluster reaches a NATS deployment given with ``--nats URL``
(``engine.cluster.nats_security``).

Everything is empty by default: ``smsroute run --workers N`` without ``--nats`` starts its own loopback
server with a token of its own and needs none of this. Secrets come from files, never the TOML (a
``password``, ``token``, ``seed`` or ``nkey`` key is refused), and one way to authenticate at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError
from engine.typed_tables import typed_table


@dataclass(frozen=True)
class NatsSettings:
    """``[nats]``: how every process of a cluster reaches a NATS deployment given with ``--nats URL``
    (``engine.cluster.nats_security``). A ``tls://`` URL is TLS 1.2+ with the server's certificate
    verified; a ``nats://`` URL beyond loopback is refused. Secrets come from files, never the TOML.
    ``smsroute run --workers N`` without ``--nats`` starts its own loopback server with a token of its
    own and needs none of this."""

    ca_file: str = ""  # CA bundle the servers' certificates are verified with ("": the system's)
    cert_file: str = ""  # a client certificate (mutual TLS), with key_file
    key_file: str = ""
    token_file: str = ""  # a file whose first line is the server's authorization token, or
    user: str = ""  # a user name, with password_file
    password_file: str = ""


def nats_from_table(table: Any) -> NatsSettings:
    """``[nats]``: a client certificate needs its key; one way to authenticate at most."""
    if isinstance(table, dict):
        for secret in ("password", "token", "seed", "nkey"):
            if secret in table:
                raise ConfigError(f"config: [nats] {secret} is refused: credentials never go in the "
                                  f"TOML; set {'password' if secret == 'password' else 'token'}_file")
    nats = typed_table(NatsSettings, table, "nats")
    if bool(nats.cert_file) != bool(nats.key_file):
        raise ConfigError("config: [nats] cert_file and key_file go together")
    if bool(nats.user) != bool(nats.password_file):
        raise ConfigError("config: [nats] user and password_file go together")
    if nats.token_file and nats.user:
        raise ConfigError("config: [nats] token_file and user are alternatives: one way to authenticate")
    return nats
