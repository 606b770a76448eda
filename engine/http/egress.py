"""Where webhooks may go: a guard against server-side request forgery (SSRF).

Webhook URLs are chosen by customers, so without a guard a customer could make the engine POST to the
operator's own network: the control port on loopback, cloud metadata at 169.254.169.254, databases on
private ranges. By default every destination address must be a public unicast address; loopback, private
(RFC 1918, ULA), shared (CGNAT), link-local, multicast, reserved and unspecified addresses are refused,
also when they hide inside an IPv6 address (IPv4-mapped, 6to4, Teredo, NAT64).

The guard works in two layers, and the second is the one that holds:

1. **When a URL is given** (``PUT /v1/webhook``, ``POST /v1/messages``): :func:`judge_url` parses it with
   the HTTP client's own parser (yarl) and judges the host exactly as the client will connect to it. A host
   must be written in plain ASCII (a host with full-width digits or ideographic full stops is normalised by
   the client to an IP literal, so such spellings are refused outright; internationalised names are given
   in their ``xn--`` form); an IP literal must be public and in standard notation (the decimal, octal, hex
   and shortened IPv4 forms the system resolver also accepts are refused); ``localhost`` and names with a
   trailing dot are refused. :class:`DestinationGuard` then resolves a name and refuses it if any address
   it has *now* is not public.
2. **At connect time** (``engine.http.webhook_client``): every socket of the webhook client comes from
   :func:`guarded_socket`, which refuses to create one for any peer address that is not public, whatever
   produced that address — a name resolved at send time
   (DNS rebinding between the check and the connect), an IP literal the client did not resolve, a notation
   the first layer missed. :class:`GuardedResolver` also drops non-public answers so that a name with a
   public and a private address is tried on the public one only. Redirects are never followed.

Operators who run receivers on their own network (or on loopback, to try the engine out) set
``[http] webhook_allow_private_networks = true``: then only the URL's shape is checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from engine.errors import DestinationNotAllowed, InvalidUrl

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_S = 2.0
VERDICT_CACHE_SECONDS = 60.0
VERDICT_CACHE_SIZE = 10_000
NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
REFUSED = "destination is not a public address"  # one text for every refusal (see guarded_socket)


class EgressRefused(OSError):
    """A connection to a non-public address was refused (raised at connect time)."""


# --- addresses --------------------------------------------------------------------------------------


def address_allowed(address: str) -> bool:
    """True for a public unicast address; False for anything internal or special (or not an address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return all(_public(candidate) for candidate in _embedded(ip))


def _embedded(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list:
    """The address and every IPv4 address an IPv6 address carries (a relay would deliver to those)."""
    out: list = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            out.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            out.append(ip.sixtofour)
        if ip.teredo is not None:
            out.extend(ip.teredo)
        if any(ip in net for net in NAT64_PREFIXES):
            out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped is not None
                                                  or any(ip in n for n in NAT64_PREFIXES)):
        return True  # judged by the IPv4 address it carries
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local
                                 or ip.is_multicast or ip.is_reserved or ip.is_unspecified)


# --- layer 1: the URL as given ----------------------------------------------------------------------


def parse_url(url: str, field: str = "url", *, given: bool = False) -> URL:
    """The URL as the HTTP client will read it; ``InvalidUrl`` unless it is an absolute http(s) URL of
    sane length whose host is written in plain ASCII. ``given``: the URL is being set (not delivered
    to), so credentials in it are refused too: the webhook client never sends them (webhooks are
    authenticated by their signature), and a password there would be kept and shown like any setting.
    """
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(f"{field} must be an absolute http(s) URL of at most {MAX_URL_LENGTH} characters")
    scheme, sep, rest = url.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if not sep or scheme.lower() not in ("http", "https"):
        raise InvalidUrl(f"{field} must be an absolute http(s) URL")
    if not authority.isascii():
        raise InvalidUrl(f"{field}: write the host in plain ASCII (internationalised names in their "
                         "xn-- form)")
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise InvalidUrl(f"{field} is not a valid URL") from None
    if not parsed.absolute or parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise InvalidUrl(f"{field} must be an absolute http(s) URL")
    if given and (parsed.raw_user is not None or parsed.raw_password is not None):
        raise InvalidUrl(f"{field}: leave out user:password@ (it is never sent; check the webhook's "
                         "signature instead)")
    return parsed


def judge_url(url: str, field: str = "url", *, given: bool = False) -> str:
    """Refuse (``DestinationNotAllowed``) a URL whose host is not a public destination, judged without
    DNS; return the host the client will connect to (an IP literal or a name still to be resolved).
    ``given`` as for :func:`parse_url`."""
    host = parse_url(url, field, given=given).raw_host or ""
    literal = _ip_literal(host, field)
    if literal is not None:
        if not address_allowed(literal):
            raise DestinationNotAllowed(f"{field}: {REFUSED}")
        return literal
    if host.endswith("."):
        raise DestinationNotAllowed(f"{field}: write the host name without a trailing dot")
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise InvalidUrl(f"{field}: the host is not a valid DNS name")
    if labels[-1] == "localhost":
        raise DestinationNotAllowed(f"{field}: {REFUSED}")
    return host


def _ip_literal(host: str, field: str) -> str | None:
    """The address if ``host`` is an IP literal; ``DestinationNotAllowed`` for an IPv4 address written
    in a notation other than dotted decimal (the resolver would accept it); None for a name."""
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        pass
    if _NUMERIC_LABEL.match(host.split(".")[-1]):
        try:
            socket.inet_aton(host)
        except OSError:
            raise InvalidUrl(f"{field}: the host is not a valid DNS name or IP address") from None
        raise DestinationNotAllowed(f"{field}: write IPv4 addresses in dotted-decimal form")
    return None


Resolve = Callable[[str], Awaitable[list[str]]]


async def system_resolve(host: str) -> list[str]:
    """Every address the system resolver has for ``host`` now."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


class DestinationGuard:
    """Layer 1 with DNS: :func:`judge_url`, then every address a name resolves to must be public.

    A name that does not resolve (or not within ``timeout_s``) is accepted: the connect-time guard
    judges it again when a webhook is sent. Verdicts are cached per host for a minute (bounded), so a
    callback URL on every message costs one lookup a minute, not one per message. One instance belongs
    to one asyncio loop.
    """

    def __init__(self, allow_private_networks: bool = False, resolve: Resolve = system_resolve, *,
                 timeout_s: float = RESOLVE_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.allow_private = allow_private_networks
        self.resolve = resolve
        self._timeout_s = timeout_s
        self._clock = clock
        self._verdicts: OrderedDict[str, tuple[float, bool]] = OrderedDict()

    async def check(self, url: str, field: str = "url") -> str:
        """Return ``url`` if webhooks may be sent there; raise ``InvalidUrl`` /
        ``DestinationNotAllowed`` otherwise."""
        if self.allow_private:
            parse_url(url, field, given=True)
            return url
        host = judge_url(url, field, given=True)
        if not await self._name_allowed(host):
            raise DestinationNotAllowed(f"{field}: the host resolves to an address that is not public")
        return url

    async def _name_allowed(self, host: str) -> bool:
        try:
            ipaddress.ip_address(host)
            return True  # a literal, judged by judge_url
        except ValueError:
            pass
        now = self._clock()
        cached = self._verdicts.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            async with asyncio.timeout(self._timeout_s):
                addresses = await self.resolve(host)
        except (OSError, TimeoutError, UnicodeError):
            return True  # unknown now: the connect-time guard decides
        allowed = all(address_allowed(a) for a in addresses)
        self._verdicts[host] = (now + VERDICT_CACHE_SECONDS, allowed)
        self._verdicts.move_to_end(host)
        while len(self._verdicts) > VERDICT_CACHE_SIZE:
            self._verdicts.popitem(last=False)
        return allowed


# --- layer 2: at connect time -----------------------------------------------------------------------


def guarded_socket(addr_info: tuple) -> socket.socket:
    """The connector's socket factory: a socket only for a public peer address (``EgressRefused``
    otherwise). Every refusal has the same text, so a name with several refused addresses still fails
    with ``EgressRefused`` rather than a combined error."""
    family, type_, proto, _, sockaddr = addr_info
    if not address_allowed(str(sockaddr[0])):
        raise EgressRefused(REFUSED)
    return socket.socket(family=family, type=type_, proto=proto)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver with every non-public address removed from the answer."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if address_allowed(a["host"])]
        if not allowed:
            raise EgressRefused(REFUSED)
        return allowed

    async def close(self) -> None:
        await self._inner.close()
