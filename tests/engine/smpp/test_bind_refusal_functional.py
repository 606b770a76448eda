"""A bind the SMSC refuses for a reason that will not fix itself (credentials, system type, already
bound...) backs off to ``auth_retry_max_seconds`` with one log line per step; a transient refusal or a
dropped connection keeps the fast reconnect. End to end against the simulated SMSC over loopback, with
tiny backoff values (the delays are read from the log lines and checked against their timestamps)."""

from __future__ import annotations

import asyncio
import logging
import random
import re

import pytest

from bench.smsc import SimulatedSmsc, SmscConfig
from engine.smpp import pdu as p
from engine.smpp import smsc_carrier_settings
from engine.smpp.bind import Backoff, refused_for_good
from engine.smpp.client import SmppConnector
from tests.engine.smpp.harness import Harness

pytestmark = pytest.mark.functional
PASSWORD = "Zq81xk7p"  # SMPP allows 8 octets
_REFUSED = re.compile(r"smpp_bind_refused carrier=c1 bind=(\d+) status=(\S+) attempt=(\d+) "
                      r"retry_in_seconds=([\d.]+)")


async def _connector(smsc: SimulatedSmsc, **overrides) -> SmppConnector:
    settings = smsc_carrier_settings("127.0.0.1", smsc.port, password=PASSWORD, **{
        "reconnect_min_seconds": 0.01, "reconnect_max_seconds": 0.02, **overrides})
    c = SmppConnector("c1", settings, lambda _r: None, lambda _r: None, lambda _up, _why: None)
    await c.start()
    return c


def _refusals(caplog) -> list[tuple[float, int, str, int, float]]:
    """(time, bind, status, attempt, retry delay) of each smpp_bind_refused log line."""
    out = []
    for rec in caplog.records:
        match = _REFUSED.search(rec.getMessage())
        if match:
            out.append((rec.created, int(match[1]), match[2], int(match[3]), float(match[4])))
    return out


def test_a_bind_refused_for_bad_credentials_backs_off_to_the_cap_with_one_log_line_a_step(caplog):
    caplog.set_level(logging.INFO, logger="engine.smpp")

    async def run():
        smsc = SimulatedSmsc(SmscConfig(seed=1, password="another"))
        await smsc.start()
        c = await _connector(smsc, auth_retry_min_seconds=0.04, auth_retry_max_seconds=0.16)
        h = Harness()
        # waiting after a refusal, the bind has read every refusal the SMSC sent (the SMSC counts one
        # as it sends it: waiting on its count alone caught the bind still connecting, 2% of runs)
        await h.until(lambda: smsc.counters["binds_refused"] >= 6 and c.binds[0].state == "refused",
                      timeout=10)
        stats = c.stats()
        await c.stop(timeout=0.1)
        refused = smsc.counters["binds_refused"]  # the stop made no further attempt
        await smsc.stop()
        return stats, refused

    stats, refused = asyncio.run(run())
    lines = _refusals(caplog)
    assert [(b, status) for _t, b, status, _a, _d in lines] == [(0, "ESME_RINVPASWD")] * len(lines)
    assert [a for _t, _b, _s, a, _d in lines] == list(range(1, len(lines) + 1))
    assert len(lines) == refused  # one line per refusal
    for i, (_t, _b, _s, _a, delay) in enumerate(lines):
        nominal = min(0.04 * 2 ** i, 0.16)  # exponential, then capped
        assert 0.75 * nominal - 1e-3 <= delay <= nominal + 1e-3, (i, delay)
    for (t0, *_rest, delay), (t1, *_) in zip(lines, lines[1:], strict=False):
        assert t1 - t0 >= delay * 0.9  # the bind really waited that long before trying again
    assert not any(PASSWORD in rec.getMessage() for rec in caplog.records)
    bind = stats["binds"][0]
    assert (bind["state"], bind["last_error"]) == ("refused", "ESME_RINVPASWD")
    assert stats["bind_refusals"] == {"ESME_RINVPASWD": refused}
    assert not stats["available"]


def test_each_refusal_status_is_classified_transient_ones_keep_the_fast_reconnect(caplog):
    """0x08 (system error) is transient: no long backoff even with a 30 s auth backoff configured."""
    caplog.set_level(logging.INFO, logger="engine.smpp")

    async def run():
        smsc = SimulatedSmsc(SmscConfig(seed=1, bind_status=p.ESME_RSYSERR))
        await smsc.start()
        c = await _connector(smsc, auth_retry_min_seconds=30.0, auth_retry_max_seconds=60.0)
        await Harness().until(lambda: smsc.counters["binds_refused"] >= 8, timeout=5)
        stats = c.stats()
        await c.stop(timeout=0.1)
        await smsc.stop()
        return stats

    stats = asyncio.run(run())
    bind = stats["binds"][0]
    assert bind["state"] in ("reconnecting", "connecting") and bind["last_error"] == "ESME_RSYSERR"
    assert stats["bind_refusals"]["ESME_RSYSERR"] >= 8
    assert _refusals(caplog) == []  # not a refusal for good
    transient = [r for r in caplog.records if "smpp_bind_failed" in r.getMessage()]
    assert 1 <= len(transient) <= 4  # the 1st, 2nd, 4th, 8th... only


def test_system_type_and_already_bound_refusals_back_off_like_bad_credentials(caplog):
    caplog.set_level(logging.INFO, logger="engine.smpp")
    for status in (p.ESME_RINVSYSTYP, p.ESME_RALYBND, p.ESME_RBINDFAIL, p.ESME_RINVSYSID):
        caplog.clear()

        async def run(status=status):
            smsc = SimulatedSmsc(SmscConfig(seed=1, bind_status=status))
            await smsc.start()
            c = await _connector(smsc, auth_retry_min_seconds=30.0, auth_retry_max_seconds=60.0)
            await Harness().until(lambda: c.binds[0].state == "refused", timeout=5)
            stats = c.stats()
            await c.stop(timeout=0.1)
            await smsc.stop()
            return stats, smsc.counters["binds_refused"]

        stats, refused = asyncio.run(run())
        assert refused == 1  # no second try within 30 s
        assert stats["binds"][0]["last_error"] == p.status_name(status)
        assert [(s, d > 20) for _t, _b, s, _a, d in _refusals(caplog)] == [(p.status_name(status), True)]


def test_a_successful_bind_resets_the_refusal_backoff(caplog):
    caplog.set_level(logging.INFO, logger="engine.smpp")

    async def run():
        smsc = SimulatedSmsc(SmscConfig(seed=1, password=PASSWORD, bind_status=p.ESME_RINVPASWD))
        await smsc.start()
        c = await _connector(smsc, auth_retry_min_seconds=0.03, auth_retry_max_seconds=0.12)
        h = Harness()
        await h.until(lambda: len(_refusals(caplog)) >= 4, timeout=10)
        smsc.config.bind_status = 0  # fixed on the SMSC side: the next retry binds
        await h.until(lambda: c.available, timeout=5)
        assert c.binds[0].state == "bound" and c.binds[0].last_error == "ESME_RINVPASWD"
        seen = len(_refusals(caplog))
        smsc.config.bind_status = p.ESME_RINVPASWD
        smsc.close_connections()  # dropped, then refused again: the backoff starts over
        await h.until(lambda: len(_refusals(caplog)) > seen, timeout=5)
        await c.stop(timeout=0.1)
        await smsc.stop()
        return seen

    seen = asyncio.run(run())
    lines = _refusals(caplog)
    assert lines[seen - 1][4] > 0.06 and lines[seen - 1][3] == seen  # it had backed off
    assert lines[seen][3] == 1 and lines[seen][4] <= 0.03 + 1e-3  # and starts over after a bind


def test_the_backoff_doubles_from_its_first_delay_up_to_its_cap_with_bounded_jitter():
    rng = random.Random(5)
    b = Backoff(5.0, 300.0, jitter=(0.75, 1.0), rng=rng)
    delays = [b.next() for _ in range(10)]
    nominal = [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]
    assert all(0.75 * n <= d <= n for d, n in zip(delays, nominal, strict=True))
    assert b.steps == 10
    b.reset()
    assert b.steps == 0 and b.next() <= 5.0


def test_which_bind_refusals_back_off_and_which_reconnect_fast():
    for status in (p.ESME_RINVPASWD, p.ESME_RINVSYSID, p.ESME_RINVSYSTYP, p.ESME_RBINDFAIL,
                   p.ESME_RALYBND, p.ESME_RINVCMDID, 0x0400):  # a vendor code: not retried fast
        assert refused_for_good(status), p.status_name(status)
    for status in (p.ESME_RSYSERR, p.ESME_RTHROTTLED, p.ESME_RMSGQFUL, p.ESME_RX_T_APPN):
        assert not refused_for_good(status), p.status_name(status)


def test_a_stop_arriving_as_the_smsc_refuses_the_bind_ends_the_bind_without_another_attempt(
        monkeypatch):
    """The operator's stop (SIGTERM) reaches the connector in the very loop iteration in which the SMSC's
    refusal is read. Python 3.11's ``asyncio.wait_for`` then returned the read and dropped the
    cancellation: the bind went on refusing and backing off for ever and ``stop()`` never returned. Here
    the stop is started from inside that read, so the race is hit every time."""
    import engine.smpp.bind as bind_module

    real_read_pdu = bind_module.read_pdu
    connector: list[SmppConnector] = []
    stopping: list[asyncio.Task] = []

    async def read_then_stop(reader):
        pdu = await real_read_pdu(reader)
        if pdu is not None and pdu.command_id & p.RESP and pdu.status and connector and not stopping:
            stopping.append(asyncio.get_running_loop().create_task(connector[0].stop(timeout=0.1)))
        return pdu

    monkeypatch.setattr(bind_module, "read_pdu", read_then_stop)

    async def run():
        smsc = SimulatedSmsc(SmscConfig(seed=1, password="another"))
        await smsc.start()
        try:
            connector.append(await _connector(smsc, auth_retry_min_seconds=0.01,
                                              auth_retry_max_seconds=0.02))
            await Harness().until(lambda: stopping, timeout=10)
            refused_at_stop = smsc.counters["binds_refused"]
            done, _ = await asyncio.wait(stopping, timeout=3)
            return bool(done), refused_at_stop, smsc.counters["binds_refused"], connector[0]
        finally:
            await smsc.stop()

    stopped, refused_at_stop, refused, c = asyncio.run(run())
    assert stopped, "stop() did not return within 3 s"
    assert refused == refused_at_stop == 1  # no bind attempt after the stop
    assert [b.state for b in c.binds] == ["closed"]
