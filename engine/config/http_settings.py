"""``[http]``: the customer API and control port — their binds, body sizes, the per-key rate limit, webhook
delivery, connection bounds and timeouts, and the customer API's door.

Both ports bind 127.0.0.1 by default: TLS 1.2+ wherever a port is exposed beyond loopback (policy 9), so a
bind beyond loopback without ``tls_cert`` and ``tls_key`` is refused here. A body is at most 64 KiB
(2 MiB for ``POST /v1/messages/batch``, up to 1,000 messages); larger ones are refused with 413 before they
are read. Overload is refused at the door: 503 when ``max_pending_requests`` (64) are being served or the
HTTP loop runs more than ``queue_delay_target_ms`` (25) behind with 4 or more in progress, since queueing would only add latency and
memory. A rotated-out webhook secret still signs for at most 7 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from engine.config.bounds import MIB, TIMEOUT
from engine.config.hosts import is_loopback
from engine.errors import ConfigError
from engine.typed_tables import Range, typed_table

MAX_SECRET_OVERLAP_SECONDS = 7 * 86400
PORT_OR_ANY = Range(0, 65535)  # 0: any free port (printed at start-up)
CONNECTIONS = Range(1, 10_000_000)


@dataclass(frozen=True)
class HttpSettings:
    customer_host: str = "127.0.0.1"
    customer_port: Annotated[int, PORT_OR_ANY] = 8080
    control_host: str = "127.0.0.1"
    control_port: Annotated[int, PORT_OR_ANY] = 8081
    max_body_bytes: Annotated[int, Range(1024, 64 * MIB)] = 65536
    # POST /v1/messages/batch: up to 1,000 messages
    max_batch_body_bytes: Annotated[int, Range(1024, 256 * MIB)] = 2_097_152
    tls_cert: str | None = None
    tls_key: str | None = None
    # GCRA per API key (engine.http.ratelimit)
    rate_limit_per_second: Annotated[float, Range(0, 1e9, open_low=True)] = 1000.0
    rate_limit_burst: Annotated[int, Range(1, 1_000_000_000)] = 2000
    # webhook deliveries in flight at once
    webhook_concurrency: Annotated[int, Range(1, 10_000)] = 32
    # queued + waiting for retry; beyond this events are dropped
    webhook_max_backlog: Annotated[int, Range(1, 100_000_000)] = 100000
    # retries stop this long after the first attempt
    webhook_retry_window_seconds: Annotated[float, Range(0, 7 * 86400)] = 86400.0
    webhook_allow_private_networks: bool = False  # True lets webhooks reach loopback/private addresses
    # a rotated-out secret still signs this long
    webhook_secret_overlap_seconds: Annotated[float, Range(0, MAX_SECRET_OVERLAP_SECONDS)] = 86400.0
    # a request head must arrive within this (else 408, closed)
    header_timeout_seconds: Annotated[float, TIMEOUT] = 10.0
    # a request body must arrive within this (else 408, closed)
    body_timeout_seconds: Annotated[float, TIMEOUT] = 30.0
    # an idle keep-alive connection is closed after this
    keepalive_timeout_seconds: Annotated[float, TIMEOUT] = 30.0
    max_connections: Annotated[int, CONNECTIONS] = 1000  # open connections on the customer port
    # ... from one source address (IPv6: one /64)
    max_connections_per_address: Annotated[int, CONNECTIONS] = 100
    # the same bounds for the control port
    control_max_connections: Annotated[int, CONNECTIONS] = 100
    control_max_connections_per_address: Annotated[int, CONNECTIONS] = 20
    # failed control-port logins per source address
    control_auth_failures_per_minute: Annotated[int, Range(1, 1_000_000)] = 10
    # customer requests being served at once; beyond: 503 at the door
    max_pending_requests: Annotated[int, Range(1, 1_000_000_000)] = 64
    # the HTTP loop's lag beyond which requests are refused (503) while 4 or more are being served
    queue_delay_target_ms: Annotated[float, Range(0, 1e9, open_low=True)] = 25.0


def http_from_table(table: Any) -> HttpSettings:
    """``[http]``, typed, with no plaintext bind beyond loopback."""
    http = typed_table(HttpSettings, table, "http")
    _check_tls(http)
    return http


def _check_tls(http: HttpSettings) -> None:
    """TLS 1.2+ wherever a port is exposed beyond loopback (policy 9): refuse a plaintext public bind."""
    if bool(http.tls_cert) != bool(http.tls_key):
        raise ConfigError("config: [http] tls_cert and tls_key go together")
    if http.tls_cert:
        return
    for name in ("customer_host", "control_host"):
        host = getattr(http, name)
        if not is_loopback(host):
            raise ConfigError(f"config: [http] {name} = {host!r} is beyond loopback: set tls_cert and "
                              "tls_key (TLS 1.2+) or bind 127.0.0.1")
