"""The SMPP connector under faults: a killed SMSC, silence, generic_nack, malformed PDUs, throttling."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bench.smsc import SimulatedSmsc, SmscConfig
from engine.smpp import pdu as p
from engine.smpp.bind import THROTTLE_PAUSE_MIN
from tests.engine.smpp.harness import Harness
from tests.engine.smpp.test_client_functional import _bodies

pytestmark = pytest.mark.functional


def test_an_smsc_killed_mid_window_resolves_every_part_and_a_restarted_one_gets_them_all():
    """Acting as the POP: resubmit whatever does not come back ``ok`` until every part is ``ok``."""
    messages = _bodies(400)

    async def run():
        h = Harness(SmscConfig(seed=4, latency=(0.005, 0.02), receipts=False),
                    binds=2, window=10, bind_wait_seconds=0.3)
        async with h:
            port = h.smsc.port
            total = h.submit(messages)
            await h.until(lambda: h.connector.submitted >= 100)
            assert h.connector.stats()["window_in_use"] > 0  # really mid-window
            first_smsc = h.smsc
            await first_smsc.stop()
            await h.until(lambda: len(h.responses) == total)  # all resolved, one way or another
            # in flight: offline; their queued rest: withdrawn; the queue: not_bound after the wait
            assert {"ok", "offline"} <= {r.outcome for r in h.responses} <= {"ok", "offline",
                                                                             "withdrawn"}
            assert ("offline", "not_bound") in {(r.outcome, r.error) for r in h.responses}
            h.smsc = SimulatedSmsc(SmscConfig(seed=5, receipts=False))
            await h.smsc.start(port=port)
            await h.until(lambda: h.connector.available)
            done = {(r.ref, r.part) for r in h.responses if r.outcome == "ok"}
            for _round in range(20):
                retry = [r for r in h.responses if r.outcome != "ok"]
                h.responses.clear()
                if not retry:
                    break
                want = {(r.ref, r.part) for r in retry}
                parts = [part for m in messages for part in h.builder.build(*m)
                         if (part.ref, part.part) in want]
                h.connector.submit(parts)
                n = len(parts)
                await h.until(lambda n=n: len(h.responses) == n)
                done |= {(r.ref, r.part) for r in h.responses if r.outcome == "ok"}
            return h, first_smsc, total, done

    h, first_smsc, total, done = asyncio.run(run())
    assert len(done) == total  # every part delivered to one SMSC or the other
    assert len(first_smsc.parts) + len(h.smsc.parts) >= total
    stats = h.connector.stats()
    assert stats["reconnects"] >= 2 and stats["connected_binds"] == 0  # stopped at exit


def test_an_smsc_that_never_answers_times_out_each_submit_as_retry_and_the_bind_reconnects():
    async def run():
        async with Harness(SmscConfig(seed=1, answer=False), resp_timeout_seconds=0.2,
                           enquire_link_seconds=0.5, window=50) as h:  # every part on the wire
            total = h.submit(_bodies(5))
            await h.until(lambda: len(h.responses) == total)
            await h.until(lambda: h.connector.stats()["errors"].get("enquire_link_timeout"))
            return h, total

    h, total = asyncio.run(run())
    assert {(r.outcome, r.error) for r in h.responses} == {("retry", "resp_timeout")}
    assert h.connector.stats()["errors"]["resp_timeout"] == total


def test_a_generic_nack_to_a_submit_is_a_retry():
    async def run():
        async with Harness(SmscConfig(seed=1, nack_rate=1.0)) as h:
            h.submit([("a", "+491510000001", "ACME", "hi")])
            await h.until(lambda: h.responses)
            return h

    h = asyncio.run(run())
    [resp] = h.responses
    assert (resp.outcome, resp.error) == ("retry", "generic_nack:ESME_RSYSERR")


@pytest.mark.parametrize("status", [p.ESME_RTHROTTLED, p.ESME_RMSGQFUL])
def test_a_generic_nack_that_says_throttled_or_queue_full_is_throttled_not_a_retry(status):
    """SMSCs push back with a generic_nack carrying 0x58/0x14 too (Kannel handles it as throttling).
    As a ``retry`` it used up the message's attempts (it could end ``failed``) and never paused the
    bind."""

    async def run():
        async with Harness(SmscConfig(seed=1, nack_rate=1.0, nack_status=status)) as h:
            h.submit([("a", "+491510000001", "ACME", "hi")])
            await h.until(lambda: h.responses)
            return h

    h = asyncio.run(run())
    [resp] = h.responses
    assert (resp.outcome, resp.error) == ("throttled", f"generic_nack:{p.status_name(status)}")
    assert h.connector.throttle_pauses == (1 if status == p.ESME_RTHROTTLED else 0)


def test_an_enquire_link_answered_by_generic_nack_proves_the_link_alive():
    """An SMSC that does not implement enquire_link nacks it; that answer is still an answer. Taking
    it for silence closed an idle bind every resp_timeout and counted enquire_link_timeout."""

    async def run():
        config = SmscConfig(seed=1, nack_enquire_link=True)
        async with Harness(config, enquire_link_seconds=0.1, resp_timeout_seconds=0.3) as h:
            await h.until(lambda: h.smsc.counters["enquire_link"] >= 4)
            return h

    h = asyncio.run(run())
    assert h.smsc.counters["connections"] == 1 and h.connector.reconnects == 0
    assert "enquire_link_timeout" not in h.connector.stats()["errors"]


def test_a_pdu_whose_length_cannot_be_trusted_closes_the_bind_which_reconnects(caplog):
    caplog.set_level(logging.WARNING, logger="engine.smpp.bind")

    async def run():
        async with Harness(SmscConfig(seed=1, latency=(0.5, 0.5))) as h:
            total = h.submit(_bodies(3))
            await h.until(lambda: h.connector.submitted == total)
            h.smsc.send_malformed("oversized")
            await h.until(lambda: len(h.responses) == total)
            await h.until(lambda: h.connector.available and h.smsc.counters["connections"] == 2)
            return h

    h = asyncio.run(run())
    assert {r.outcome for r in h.responses} == {"offline"}  # in flight when the bind closed
    assert h.connector.stats()["errors"]["pdu_oversized"] == 1
    assert h.smsc.counters["generic_nack"] == 1  # the connector told the SMSC before closing
    assert [r.getMessage() for r in caplog.records if "smpp_bind_pdu_error" in r.getMessage()] == [
        "smpp_bind_pdu_error carrier=c1 bind=0 kind=oversized failures=1"]  # said once, not silent


def test_a_deliver_sm_with_a_truncated_body_is_nacked_and_the_parts_in_flight_are_kept():
    """Its command_length was right, so the stream is still framed: closing the bind would answer
    every part in flight ``offline`` - parts the SMSC accepts - and get them sent twice (again after
    each reconnect, when the SMSC resends the receipt it had no deliver_sm_resp for)."""

    async def run():
        async with Harness(SmscConfig(seed=1, latency=(0.3, 0.3), receipts=False)) as h:
            total = h.submit(_bodies(3))
            await h.until(lambda: h.connector.submitted == total)
            h.smsc.send_malformed("truncated")
            await h.until(lambda: len(h.responses) == total)
            return h, total

    h, total = asyncio.run(run())
    assert {r.outcome for r in h.responses} == {"ok"}
    assert len(h.smsc.parts) == total  # nothing sent twice
    assert h.smsc.counters["connections"] == 1 and h.connector.reconnects == 0
    assert h.smsc.counters["generic_nack"] == 1
    assert h.connector.stats()["errors"]["pdu_truncated"] == 1


def test_a_submit_sm_resp_whose_message_id_lacks_its_nul_is_ok_without_an_id():
    """The header says the SMSC accepted the part (status 0); sending it again would duplicate it.
    Only its receipt cannot be matched."""

    async def run():
        config = SmscConfig(seed=1, receipts=False, part_script={1: ["unterminated"]})
        async with Harness(config) as h:
            h.submit([("a", "+491510000001", "ACME", "hi")])
            await h.until(lambda: h.responses)
            h.submit([("b", "+491510000002", "ACME", "hi")])
            await h.until(lambda: len(h.responses) == 2)
            return h

    h = asyncio.run(run())
    assert [(r.ref, r.outcome) for r in h.responses] == [("a", "ok"), ("b", "ok")]
    assert h.responses[0].carrier_message_id == "" and h.responses[1].carrier_message_id
    assert len(h.smsc.parts) == 2 and h.smsc.counters["generic_nack"] == 0
    assert h.smsc.counters["connections"] == 1 and h.connector.reconnects == 0
    assert h.connector.stats()["errors"]["pdu_truncated"] == 1


def test_an_unknown_command_from_the_smsc_is_nacked_and_the_bind_stays_up():
    async def run():
        async with Harness(SmscConfig(seed=1)) as h:
            h.smsc.send_malformed("unknown")
            await h.until(lambda: h.smsc.counters["generic_nack"] == 1)
            total = h.submit(_bodies(3))
            await h.until(lambda: len(h.responses) == total)
            return h

    h = asyncio.run(run())
    assert {r.outcome for r in h.responses} == {"ok"}
    assert h.smsc.counters["connections"] == 1 and h.connector.reconnects == 0


def test_throttled_answers_pause_the_whole_bind():
    async def run():
        async with Harness(SmscConfig(seed=1, throttle=20, receipts=False), window=10) as h:
            total = h.submit([(f"t{i}", f"+4915100{i:05d}", "ACME", "x") for i in range(60)])
            await h.until(lambda: len(h.responses) == total)
            return h

    h = asyncio.run(run())
    throttled = [r for r in h.responses if r.outcome == "throttled"]
    assert throttled and all(r.error == "ESME_RTHROTTLED" for r in throttled)
    assert h.connector.throttle_pauses >= 1
    arrivals = sorted(part.at for part in h.smsc.parts)
    first_throttled = min(part.at for part in h.smsc.parts if part.status == p.ESME_RTHROTTLED)
    later = [t for t in arrivals if t > first_throttled]
    gaps = [b - a for a, b in zip([first_throttled, *later], later, strict=False)]
    assert max(gaps) >= THROTTLE_PAUSE_MIN * 0.9  # nothing was sent while the bind was paused


def test_wrong_credentials_keep_the_carrier_unavailable_and_count_refusals():
    async def run():
        h = Harness(SmscConfig(seed=1, password="other"))
        await h.smsc.start()
        from engine.smpp import smsc_carrier_settings
        from engine.smpp.client import SmppConnector

        settings = smsc_carrier_settings("127.0.0.1", h.smsc.port, reconnect_min_seconds=0.02,
                                         reconnect_max_seconds=0.05)
        c = SmppConnector("c1", settings, h.responses.extend, h.receipts.extend,
                          lambda up, why: h.states.append(up))
        await c.start()
        await h.until(lambda: c.stats()["errors"].get("bind_refused", 0) >= 2)
        await c.stop(timeout=0.1)
        await h.smsc.stop()
        return c, h

    c, h = asyncio.run(run())
    assert not c.available and h.states == []


def test_submit_sm_resps_that_carry_optional_tlvs_are_read_and_the_bind_stays_up():
    """SMSCs speaking SMPP 5.0 (and some 3.4 vendors) append TLVs such as additional_status_info_text
    (0x001D) to ``submit_sm_resp``; the answer must still count - not close the bind and get the
    accepted parts resubmitted."""
    config = SmscConfig(seed=1, resp_tlvs={0x001D: b"queued\x00"}, part_script={1: [0x0B]})

    async def run():
        async with Harness(config) as h:
            total = h.submit([(f"t{i}", f"+4915100{i:05d}", "ACME", "x") for i in range(5)])
            await h.until(lambda: len(h.responses) == total)
            ok = [r for r in h.responses if r.outcome == "ok"]
            await h.until(lambda: len(h.receipts) == len(ok))
            return h, total

    h, total = asyncio.run(run())
    outcomes = sorted((r.outcome, r.error) for r in h.responses)
    assert outcomes == [("ok", "")] * (total - 1) + [("reject", "ESME_RINVDSTADR")]
    assert all(r.carrier_message_id for r in h.responses if r.outcome == "ok")
    assert len(h.smsc.parts) == total  # nothing sent twice
    assert h.smsc.counters["connections"] == 1 and h.connector.reconnects == 0


@pytest.mark.parametrize("field", ["id", "stat"])
def test_a_receipt_with_a_superscript_digit_is_refused_or_held_and_the_bind_keeps_working(field):
    """``"²".isdigit()`` is true but ``int("²")`` raises: a latin-1 0xB2 in a receipt's id or state
    must not escape as a ValueError (it ended the bind's task for good: the carrier never came back)."""
    text = {"id": b"id:1\xb2 stat:DELIVRD err:000", "stat": b"id:77 stat:\xb2 err:000"}[field]

    async def run():
        async with Harness(SmscConfig(seed=1, receipts=False), bind_wait_seconds=0.5) as h:
            h.submit([("a", "+491510000001", "ACME", "hi")])  # a receipt awaited: ids are looked up
            await h.until(lambda: h.responses)
            h.smsc.send_receipt_text(text)
            await h.until(lambda: h.smsc.counters["deliver_sm_resp"] == 1)
            h.submit([("b", "+491510000002", "ACME", "hi")])
            await h.until(lambda: len(h.responses) == 2)
            return h

    h = asyncio.run(run())
    assert [(r.ref, r.outcome) for r in h.responses] == [("a", "ok"), ("b", "ok")]
    assert h.receipts == []  # matched to nothing
    assert h.smsc.counters["connections"] == 1 and h.connector.reconnects == 0


def test_an_unexpected_exception_in_a_bind_is_logged_and_the_bind_reconnects(caplog):
    """Defence in depth for bugs like the one above: whatever escapes the reader must cost one
    reconnect, not the bind's task (and a carrier with one bind) for good."""

    async def run():
        async with Harness(SmscConfig(seed=1, receipts=False), bind_wait_seconds=2.0) as h:
            real, calls = h.connector.on_deliver, []

            def on_deliver_with_a_bug(pdu, answer):
                calls.append(pdu)
                if len(calls) == 1:
                    raise RuntimeError("id:secret-looking text")
                real(pdu, answer)

            h.connector.on_deliver = on_deliver_with_a_bug
            h.smsc.send_receipt_text(b"id:1 stat:DELIVRD err:000")
            await h.until(lambda: h.connector.reconnects == 1 and h.connector.available)
            h.submit([("a", "+491510000001", "ACME", "hi")])
            await h.until(lambda: h.responses)
            return h

    h = asyncio.run(run())
    assert [(r.ref, r.outcome) for r in h.responses] == [("a", "ok")]
    assert h.connector.stats()["errors"]["internal_error"] == 1
    [line] = [r.getMessage() for r in caplog.records if "smpp_bind_internal_error" in r.getMessage()]
    assert "error=RuntimeError" in line and "secret" not in line


def test_a_receipt_with_an_empty_id_is_counted_bad_not_held_under_the_next_fields_text():
    """``id: sub:001 ...`` was read as the id ``sub:001`` and held as an early receipt (then counted
    unmatched); the id is empty, so the receipt is unusable and says so at once."""

    async def run():
        async with Harness(SmscConfig(seed=1, receipts=False)) as h:
            h.smsc.send_receipt_text(b"id: sub:001 dlvrd:001 submit date:2311271230 "
                                     b"done date:2311271231 stat:DELIVRD err:000 text:")
            await h.until(lambda: h.smsc.counters["deliver_sm_resp"] == 1)
            return h

    h = asyncio.run(run())
    errors = h.connector.stats()["errors"]
    assert errors.get("bad_receipt") == 1 and "receipt_held" not in errors
    assert h.connector.stats()["receipts_held"] == 0 and h.receipts == []


def test_a_receipt_whose_receipted_message_id_tlv_is_only_a_nul_is_matched_by_its_text():
    async def run():
        async with Harness(SmscConfig(seed=1, receipts=False)) as h:
            h.submit([("a", "+491510000001", "ACME", "hi")])
            await h.until(lambda: h.responses)
            mid = h.responses[0].carrier_message_id
            text = f"id:{mid} sub:001 dlvrd:001 stat:DELIVRD err:000".encode()
            h.smsc.send_receipt_text(text, tlvs={p.TLV_RECEIPTED_MESSAGE_ID: b"\x00"})
            await h.until(lambda: h.receipts or h.connector.stats()["errors"].get("bad_receipt"))
            return h

    h = asyncio.run(run())
    assert [(r.ref, r.part, r.state) for r in h.receipts] == [("a", 0, "DELIVRD")]
    assert "bad_receipt" not in h.connector.stats()["errors"]


@pytest.mark.parametrize("body", ["tlvs", "none", "message_id"])
def test_an_error_submit_sm_resp_without_a_message_id_is_read_whole_with_or_without_tlvs(body):
    """SMPP 3.4 sends an error resp without a body; SMPP 5.0 sends an empty message_id and TLVs; some
    SMSCs send the TLVs alone. Read as a message_id, such a TLV's leading 0x00 was taken for the NUL
    and the rest misparsed (counted and logged as a bad PDU)."""
    config = SmscConfig(seed=1, receipts=False, resp_tlvs={0x001D: b"no route\x00", 0x0425: b"\x01"},
                        error_resp_body=body, part_script={1: [p.ESME_RINVDSTADR]})

    async def run():
        async with Harness(config) as h:
            total = h.submit([(f"t{i}", f"+4915100{i:05d}", "ACME", "x") for i in range(3)])
            await h.until(lambda: len(h.responses) == total)
            return h, total

    h, total = asyncio.run(run())
    outcomes = sorted((r.outcome, r.error) for r in h.responses)
    assert outcomes == [("ok", "")] * (total - 1) + [("reject", "ESME_RINVDSTADR")]
    assert not [k for k in h.connector.stats()["errors"] if k.startswith("pdu_")]
    assert len(h.smsc.parts) == total and h.smsc.counters["generic_nack"] == 0
    assert h.smsc.counters["connections"] == 1 and h.connector.reconnects == 0
