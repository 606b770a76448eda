"""Webhook guards: only public addresses unless allowed (SSRF), and never an unsigned delivery."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from engine.errors import DestinationNotAllowed, InvalidUrl
from engine.http.egress import (
    DestinationGuard,
    EgressRefused,
    GuardedResolver,
    address_allowed,
    guarded_socket,
    judge_url,
)
from engine.http.webhooks import Delivery, RetryPolicy, WebhookDispatcher


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
    "224.0.0.1", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "100.64.0.1", "not-an-ip",
])
def test_internal_and_special_addresses_are_refused(address):
    assert not address_allowed(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_unicast_addresses_are_allowed(address):
    assert address_allowed(address)


@pytest.mark.parametrize("address", [
    "::ffff:10.0.0.1", "2002:7f00:1::1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2001:0:4136:e378::1",
])
def test_internal_addresses_hidden_inside_ipv6_addresses_are_refused(address):
    assert not address_allowed(address)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8081/v1/accounts", "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook", "http://169.254.169.254/latest/meta-data",
    "http://2130706433/", "http://0x7f000001/", "http://0x7f.1/", "http://0177.0.0.1/", "http://127.1/",
    "http://017700000001/", "http://1.1.1.1.:8080/",  # decimal, hex, octal, shortened forms too
    "http://localhost/hook", "http://LOCALHOST:8081/", "http://api.localhost/", "http://localhost./",
    "https://hooks.example.com./hook", "http://[fe80::1%25eth0]/", "http://0.0.0.0/",
    "http://[64:ff9b::7f00:1]/",
])
def test_urls_that_lead_to_internal_addresses_in_any_notation_are_refused(url):
    with pytest.raises(DestinationNotAllowed):
        judge_url(url)


@pytest.mark.parametrize("url", [
    "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/hook",  # full-width 127.0.0.1
    "http://127\u30020\u30020\u30021/hook",  # ideographic full stops
    "http://\u2460\u2461\u2466.0.0.1/",  # circled digits
    "http://b\u00fccher.example/",  # any non-ASCII host: the xn-- form is the one accepted
    "ftp://93.184.216.34/", "/relative/hook", "http:///nohost", "hooks.example.com/hook",
    "http://exa mple.com/", "http://" + "a" * 2100 + ".com/", "http://-bad-.example/",
    "http://example.123/",
])
def test_urls_that_are_not_plain_ascii_http_urls_are_refused(url):
    with pytest.raises(InvalidUrl):
        judge_url(url)


@pytest.mark.parametrize("url", [
    "https://93.184.216.34/hook", "https://hooks.example.com/hook", "http://hooks.example.com:8443/x?y=1",
    "https://[2606:4700:4700::1111]/hook", "https://xn--bcher-kva.example/hook",
])
def test_public_destinations_are_accepted(url):
    judge_url(url)


class _FakeResolver:
    def __init__(self, answers):
        self.answers = answers

    async def resolve(self, host, port=0, family=0):
        return [{"hostname": host, "host": a, "port": port, "family": family, "proto": 0,
                 "flags": 0} for a in self.answers]

    async def close(self):
        pass


def test_a_name_resolving_to_internal_addresses_is_refused_and_mixed_answers_are_filtered():
    async def scenario():
        with pytest.raises(EgressRefused):
            await GuardedResolver(_FakeResolver(["10.0.0.5", "127.0.0.1"])).resolve("evil.example")
        mixed = await GuardedResolver(_FakeResolver(["10.0.0.5", "93.184.216.34"])).resolve("x")
        assert [a["host"] for a in mixed] == ["93.184.216.34"]

    asyncio.run(scenario())


def test_a_name_is_refused_when_it_resolves_to_an_internal_address_now():
    async def resolve_to(addresses):
        async def resolve(host):
            return addresses
        return resolve

    async def scenario():
        guard = DestinationGuard(resolve=await resolve_to(["93.184.216.34", "10.0.0.7"]))
        with pytest.raises(DestinationNotAllowed):
            await guard.check("https://rebind.example/hook")
        assert await DestinationGuard(resolve=await resolve_to(["93.184.216.34"])).check(
            "https://public.example/hook") == "https://public.example/hook"
        allowed = DestinationGuard(allow_private_networks=True,
                                   resolve=await resolve_to(["10.0.0.7"]))
        assert await allowed.check("http://127.0.0.1:9/hook")

    asyncio.run(scenario())


def test_a_name_that_does_not_resolve_now_is_left_to_the_connect_time_guard():
    async def fail(host):
        raise OSError("no DNS")

    async def scenario():
        return await DestinationGuard(resolve=fail).check("https://later.example/hook")

    assert asyncio.run(scenario()) == "https://later.example/hook"


async def _receiver() -> tuple[web.AppRunner, int, list]:
    hits = []

    async def hook(request):
        hits.append((request.headers.get("Smsroute-Signature"), await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1], hits


def test_the_client_refuses_a_non_public_peer_at_connect_time_whatever_dns_said():
    """Layer 2: a name whose DNS answer is loopback (rebinding) and an IP literal the client never
    resolves are both refused by the webhook client, whose every socket comes from the guard."""
    from engine.http.webhook_client import WebhookClient

    async def scenario():
        runner, port, hits = await _receiver()
        client = WebhookClient(timeout_s=5, resolver=_FakeResolver(["127.0.0.1"]))
        try:
            for url in (f"http://rebind.example:{port}/hook", f"http://127.0.0.1:{port}/hook"):
                with pytest.raises(EgressRefused):
                    await client.post(url, b"{}", {})
        finally:
            await client.close()
            await runner.cleanup()
        return hits

    assert asyncio.run(scenario()) == []


def test_the_socket_factory_alone_refuses_a_non_public_peer():
    with pytest.raises(EgressRefused):
        guarded_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    with pytest.raises(EgressRefused):
        guarded_socket((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:10.0.0.1", 80, 0, 0)))
    guarded_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))).close()


async def _deliver_once(allow: bool, secrets: list[str], url_for=None) -> tuple[dict, list]:
    """One delivery to a receiver on loopback; the dispatcher's counts and what the receiver got."""
    runner, port, hits = await _receiver()
    d = WebhookDispatcher(lambda a: secrets, lambda d: None, allow_private_networks=allow,
                          policy=RetryPolicy(base_s=0.01, cap_s=0.02, window_s=2))
    await d.start()
    try:
        url = url_for(port) if url_for else f"http://127.0.0.1:{port}/hook"
        d.submit(Delivery(url=url, body=b"{}", account_id="acc",
                          event_id="evt_1"))
        async with asyncio.timeout(10):
            while d.backlog:
                await asyncio.sleep(0.01)
    finally:
        await d.stop()
        await runner.cleanup()
    return d.counts, hits


def test_the_dispatcher_refuses_a_loopback_receiver_without_retrying_unless_allowed():
    counts, hits = asyncio.run(_deliver_once(False, ["s"]))
    assert counts["blocked"] == 1 and counts["retried"] == 0 and hits == []
    counts, hits = asyncio.run(_deliver_once(True, ["s"]))
    assert counts["delivered"] == 1 and len(hits) == 1 and hits[0][0].startswith("t=")


def test_a_delivery_without_a_signing_secret_is_dropped_never_sent_unsigned():
    counts, hits = asyncio.run(_deliver_once(True, []))
    assert hits == [] and counts["unsigned_dropped"] == 1 and counts["retried"] == 0


def test_a_full_width_spelling_of_loopback_never_reaches_the_receiver():
    """Regression: the host passed the old guard as a "name" and the client normalised it to 127.0.0.1."""
    counts, hits = asyncio.run(_deliver_once(
        False, ["s"], lambda port: f"http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11:{port}/hook"))
    assert hits == [] and counts["blocked"] == 1 and counts["retried"] == 0
