"""Webhook guards: only public addresses unless allowed (SSRF), and never an unsigned delivery."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from engine.http.egress import (
    EgressRefused,
    GuardedResolver,
    address_allowed,
    literal_host_allowed,
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


def test_ip_literal_urls_are_checked_and_host_names_left_to_the_resolver():
    assert not literal_host_allowed("http://127.0.0.1:8081/v1/accounts")
    assert not literal_host_allowed("http://[::1]/hook")
    assert literal_host_allowed("https://93.184.216.34/hook")
    assert literal_host_allowed("https://hooks.example.com/hook")


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


async def _deliver_once(allow: bool, secrets: list[str]) -> tuple[dict, list]:
    """One delivery to a receiver on loopback; the dispatcher's counts and what the receiver got."""
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
    port = site._server.sockets[0].getsockname()[1]
    d = WebhookDispatcher(lambda a: secrets, lambda d: None, allow_private_networks=allow,
                          policy=RetryPolicy(base_s=0.01, cap_s=0.02, window_s=2))
    await d.start()
    try:
        d.submit(Delivery(url=f"http://127.0.0.1:{port}/hook", body=b"{}", account_id="acc",
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
