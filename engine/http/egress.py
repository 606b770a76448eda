"""Where webhooks may go: a guard against server-side request forgery (SSRF).

Webhook URLs are chosen by customers, so without a guard a customer could make the engine POST to the
operator's own network: the control port on loopback, cloud metadata at 169.254.169.254, databases on
private ranges. By default every destination address must be a public unicast address; loopback, private
(RFC 1918, ULA), link-local, multicast, reserved and unspecified addresses are refused, including IPv4
addresses mapped into IPv6.

The check is made on the addresses the connection will actually use: :class:`GuardedResolver` filters what
DNS returns (so a name that resolves to an internal address is refused at connect time, which also defeats
DNS rebinding between a check and the connect), and :func:`literal_host_allowed` covers URLs that name an IP
address directly (aiohttp does not consult the resolver for those).

Operators who run receivers on their own network (or on loopback, to try the engine out) set
``[http] webhook_allow_private_networks = true``.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class EgressRefused(OSError):
    """The destination resolves only to addresses webhooks may not reach."""


def address_allowed(address: str) -> bool:
    """True for a public unicast address; False for anything internal or special."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                or ip.is_reserved or ip.is_unspecified or not ip.is_global)


def literal_host_allowed(url: str) -> bool:
    """For a URL whose host is an IP literal, whether it may be reached; True for host names (the
    resolver decides those)."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return True
    return address_allowed(host)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver with every non-public address removed from the answer."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if address_allowed(a["host"])]
        if not allowed:
            raise EgressRefused(f"webhook host {host} resolves only to non-public addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
