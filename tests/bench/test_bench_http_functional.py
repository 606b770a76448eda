"""The bench's http path end to end: the customer API over loopback and signed webhooks back."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
import pytest

from bench import modes
from bench.harness import Bench, RunOptions
from bench.scenario import load_scenario

pytestmark = pytest.mark.functional


def _tiny_http():
    return replace(load_scenario("tiny"), path="http").with_load(duration_s=0.25)


@pytest.mark.parametrize("options", [
    RunOptions(engine_process=True), RunOptions(engine_process=False), RunOptions(workers=1),
], ids=["engine-process", "in-process", "cluster"])
def test_the_tiny_scenario_over_http_gets_every_final_status_by_webhook(options):
    with Bench(_tiny_http(), options) as bench:
        result = modes.run_open(bench)
        bad = bench._http.bad_signatures
    step = result.headline
    assert step.sent == 100
    assert step.finals == 100 and step.unfinished == 0 and step.errors == 0
    assert bad == 0
    for c in step.corridors.values():
        assert c.accepted.count == c.final.count == c.finals
        assert c.carrier_ack.count == c.finals  # forwarded from the engine (process) too
    assert step.cpu_s > 0 and step.peak_rss_mb > 0


def test_a_webhook_with_a_bad_signature_is_refused_and_counted():
    with Bench(_tiny_http(), RunOptions(engine_process=False)) as bench:
        target = bench._http
        url = f"http://127.0.0.1:{target.hook_port}/hook"
        body = (
            b'{"data": {"id": "x", "status": "delivered", "pop": "fra", "country": "DE"}}'
        )

        async def post() -> int:
            async with aiohttp.ClientSession() as s:
                headers = {"Smsroute-Signature": "t=1,v1=00"}
                async with s.post(url, data=body, headers=headers) as resp:
                    return resp.status

        assert asyncio.run(post()) == 401
        assert target.bad_signatures == 1
