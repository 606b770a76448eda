"""The SMPP connector against the simulated SMSC on loopback: volume, receipts, early receipts, binds."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict

import pytest

from bench.smsc import SmscConfig
from engine.smpp import pdu as p
from engine.smpp.submit import decode_part
from tests.engine.smpp.harness import Harness

pytestmark = pytest.mark.functional

STATES = {"DELIVRD": 0.7, "UNDELIV": 0.1, "EXPIRED": 0.1, "REJECTD": 0.1}


def _bodies(n: int, seed: int = 3) -> list[tuple[str, str, str, str]]:
    rng = random.Random(seed)
    kinds = [
        lambda i: f"Your code is {i}",
        lambda i: f"{i} " + "long gsm {text} with € " * 12,
        lambda i: f"{i} Привет, как дела?",
        lambda i: f"{i} " + "юникод 😀 " * 20,
    ]
    return [(f"m{i}", f"+49151{i:07d}", rng.choice(["ACME", "+447700900123"]),
             rng.choice(kinds)(i)) for i in range(n)]


def _reassembled(smsc) -> dict[str, str]:
    """destination -> text, reassembling concatenated parts by their UDH sequence number."""
    groups = defaultdict(list)
    for part in smsc.parts:
        udh, text = decode_part(part.params, part.tlvs)
        groups[part.params["destination_addr"]].append((udh[2] if udh else 1, text))
    return {dest: "".join(t for _, t in sorted(parts)) for dest, parts in groups.items()}


def _until_every_receipt(config: SmscConfig, messages: int) -> tuple[Harness, int]:
    """Submit ``messages`` bodies through one bind and wait for a receipt per part: (harness, parts)."""
    async def run():
        async with Harness(config) as h:
            total = h.submit(_bodies(messages))
            await h.until(lambda: len(h.receipts) == total)
            return h, total

    return asyncio.run(run())


def test_two_thousand_messages_short_and_multipart_get_one_answer_per_part_and_their_receipts():
    config = SmscConfig(seed=11, receipt_states=STATES, receipt_delay=(0.0, 0.02),
                        latency=(0.0, 0.002), id_format="hex", receipt_id_format="padded_decimal",
                        error_rates={p.ESME_RINVDSTADR: 0.01, p.ESME_RMSGQFUL: 0.01})
    messages = _bodies(2000)

    async def run():
        async with Harness(config, binds=2, window=20) as h:
            total = h.submit(messages)
            await h.until(lambda: len(h.responses) == total)
            ok = [r for r in h.responses if r.outcome == "ok"]
            await h.until(lambda: len(h.receipts) == len(ok))
            return h, total

    h, total = asyncio.run(run())
    by_part = h.by_part()
    assert len(by_part) == total and all(len(v) == 1 for v in by_part.values())
    outcomes = Counter(r.outcome for r in h.responses)
    assert {"ok", "reject", "throttled"} <= set(outcomes) <= {"ok", "reject", "throttled",
                                                               "withdrawn"}  # 0x0B, 0x14
    assert len(h.smsc.parts) == total - outcomes["withdrawn"]  # nothing sent twice, nothing lost
    failed = {r.ref for r in h.responses if r.outcome in ("reject", "throttled")}
    assert {r.ref for r in h.responses if r.outcome == "withdrawn"} <= failed  # only their rest
    id_of = {(r.ref, r.part): r.carrier_message_id for r in h.responses if r.outcome == "ok"}
    assert sorted((r.ref, r.part) for r in h.receipts) == sorted(id_of)
    for receipt in h.receipts:
        assert h.smsc.receipt_log[id_of[(receipt.ref, receipt.part)]] == receipt.state
    assert {r.state for r in h.receipts} == set(STATES)
    sent = {to[1:]: body for _, to, _, body in messages}
    fully_ok = {ref for ref, _ in by_part} - {r.ref for r in h.responses if r.outcome != "ok"}
    texts = _reassembled(h.smsc)
    for ref in fully_ok:
        dest = f"49151{int(ref[1:]):07d}"
        assert texts[dest] == sent[dest]
    assert h.connector.stats()["errors"].get("receipt_unmatched", 0) == 0


def test_message_ids_longer_than_smpp_allows_are_kept_bounded_and_their_receipts_still_match():
    """An SMSC that sends 150-character message ids (SMPP 3.4: at most 65 octets): each part keeps a
    bounded id (a digest of it), never the whole id, and every receipt, which quotes the long id, is
    matched to its part."""
    config = SmscConfig(seed=9, id_format="long", receipt_delay=(0.0, 0.01))

    h, total = _until_every_receipt(config, 100)
    assert all(len(part.message_id) > 140 for part in h.smsc.parts)  # what the SMSC sent
    ids = [r.carrier_message_id for r in h.responses]
    assert len(ids) == total and all(len(i) <= 64 for i in ids) and len(set(ids)) == total
    assert sorted((r.ref, r.part) for r in h.receipts) == sorted(h.by_part())
    assert h.connector.stats()["errors"].get("receipt_unmatched", 0) == 0


def test_receipts_that_arrive_before_their_resp_are_held_and_matched():
    config = SmscConfig(seed=5, receipts_before_resp=True, latency=(0.005, 0.02),
                        receipt_tlvs=True)

    h, total = _until_every_receipt(config, 200)
    stats = h.connector.stats()
    assert stats["errors"]["receipt_held"] == total
    assert stats["receipts_held"] == 0 and stats["errors"].get("receipt_unmatched", 0) == 0
    assert sorted((r.ref, r.part) for r in h.receipts) == sorted(h.by_part())


def test_transmitter_and_receiver_binds_carry_submits_and_receipts():
    async def run():
        async with Harness(SmscConfig(seed=2), bind_mode="transmitter_receiver", binds=2) as h:
            await h.until(lambda: h.connector.stats()["connected_binds"] == 4)
            total = h.submit(_bodies(100))
            await h.until(lambda: len(h.receipts) == total)
            return h

    h = asyncio.run(run())
    assert h.smsc.counters["bind_transmitter"] == 2 and h.smsc.counters["bind_receiver"] == 2
    assert all(r.outcome == "ok" for r in h.responses)


def test_packed_gsm7_and_message_payload_reach_the_smsc_intact():
    async def run(**kw):
        async with Harness(SmscConfig(seed=2, receipts=False), **kw) as h:
            total = h.submit([("a", "+491510000001", "ACME", "packed text " * 30)])
            await h.until(lambda: len(h.responses) == total)
            return h

    packed = asyncio.run(run(gsm7_packed=True))
    texts = defaultdict(list)
    for part in packed.smsc.parts:
        udh, text = decode_part(part.params, part.tlvs, packed=True)
        texts[0].append((udh[2], text))
    assert "".join(t for _, t in sorted(texts[0])) == "packed text " * 30
    payload = asyncio.run(run(use_message_payload=True))
    assert len(payload.smsc.parts) == 1
    assert decode_part(payload.smsc.parts[0].params, payload.smsc.parts[0].tlvs)[1] == (
        "packed text " * 30)


def test_a_graceful_stop_unbinds_every_bind():
    async def run():
        h = Harness(SmscConfig(seed=2), binds=3)
        async with h:
            await h.until(lambda: h.connector.stats()["connected_binds"] == 3)
        return h

    h = asyncio.run(run())
    assert h.smsc.counters["unbind"] == 3
    assert h.states[0] == (True, "bound")


def test_submits_while_no_bind_is_up_wait_for_the_rebind_and_are_sent():
    async def run():
        async with Harness(SmscConfig(seed=2), reconnect_min_seconds=0.3,
                           reconnect_max_seconds=0.3) as h:
            h.smsc.close_connections()
            await h.until(lambda: not h.connector.available)
            total = h.submit(_bodies(3))
            assert len(h.connector.queue) == total and not h.responses  # waiting, not refused
            await h.until(lambda: len(h.responses) == total)
            return h, total

    h, total = asyncio.run(run())
    assert {(r.outcome, r.error) for r in h.responses} == {("ok", "")}
    assert len(h.smsc.parts) == total


def test_submits_with_no_bind_up_within_the_bind_wait_are_answered_offline_not_bound():
    async def run():
        async with Harness(SmscConfig(seed=2), bind_wait_seconds=0.3) as h:
            await h.smsc.stop()  # gone: every reconnect fails
            await h.until(lambda: not h.connector.available)
            total = h.submit(_bodies(3))
            loop = asyncio.get_running_loop()
            started = loop.time()
            await h.until(lambda: len(h.responses) == total)
            return h, loop.time() - started

    h, waited = asyncio.run(run())
    assert {(r.outcome, r.error) for r in h.responses} == {("offline", "not_bound")}
    assert 0.25 <= waited < 5.0  # answered after the bind wait, not at once and not never


@pytest.mark.parametrize("receipt_tlvs", [False, True])
def test_receipts_sent_as_data_sm_are_answered_and_handled_exactly_like_deliver_sm(receipt_tlvs):
    """Some SMSCs deliver receipts in a ``data_sm`` (the text in message_payload, and/or the
    receipted_message_id / message_state TLVs). They were nacked as an unknown command and lost. The
    same traffic (same seed: same ids, states, early and duplicate receipts) must give the same receipt
    items and the same counters whichever command carries the receipts."""
    messages = _bodies(60)

    async def run(command):
        config = SmscConfig(seed=9, receipt_command=command, receipt_tlvs=receipt_tlvs,
                            receipt_states=STATES, id_format="hex",
                            receipt_id_format="padded_decimal", early_receipt_rate=0.3,
                            duplicate_receipt_rate=0.3)  # latency and receipt delay 0: deterministic
        async with Harness(config, window=5) as h:
            total = h.submit(messages)
            await h.until(lambda: len(h.responses) == total)  # every receipt has been sent by now
            acked = ("deliver_sm_resp", "data_sm_resp", "generic_nack")
            await h.until(lambda: sum(h.smsc.counters[k] for k in acked)
                          == h.smsc.counters["receipts_sent"])
            return h

    by_deliver_sm, by_data_sm = asyncio.run(run("deliver_sm")), asyncio.run(run("data_sm"))
    smsc = by_data_sm.smsc.counters
    assert smsc["data_sm_resp"] == smsc["receipts_sent"] and smsc["generic_nack"] == 0
    assert by_deliver_sm.smsc.counters["deliver_sm_resp"] == smsc["receipts_sent"]

    def items(h):
        return sorted((r.ref, r.part, r.state, r.error) for r in h.receipts)

    assert items(by_data_sm) == items(by_deliver_sm)
    ok = {(r.ref, r.part) for r in by_data_sm.responses if r.outcome == "ok"}
    assert {(ref, part) for ref, part, _, _ in items(by_data_sm)} == ok
    assert smsc["receipts_sent"] > len(ok)  # duplicates were sent: handled as with deliver_sm
    for h in (by_data_sm, by_deliver_sm):  # each one matched (again: harmless) or held for its id
        assert len(h.receipts) + h.connector.stats()["receipts_held"] == h.smsc.counters["receipts_sent"]
    assert by_data_sm.connector.stats()["receipts_held"] \
        == by_deliver_sm.connector.stats()["receipts_held"]
    assert {r.state for r in by_data_sm.receipts} == set(STATES)
    assert by_data_sm.connector.stats()["errors"] == by_deliver_sm.connector.stats()["errors"]
    assert by_data_sm.connector.receipts == by_deliver_sm.connector.receipts


def test_a_data_sm_receipt_with_only_the_receipt_tlvs_is_matched():
    async def run():
        async with Harness(SmscConfig(seed=1, receipts=False)) as h:
            h.submit([("a", "+491510000001", "ACME", "hi")])
            await h.until(lambda: h.responses)
            mid = h.responses[0].carrier_message_id.encode()
            h.smsc.send_receipt_text(b"", {p.TLV_RECEIPTED_MESSAGE_ID: mid + b"\x00",
                                           p.TLV_MESSAGE_STATE: bytes([5])}, command="data_sm")
            await h.until(lambda: h.smsc.counters["data_sm_resp"] + h.smsc.counters["generic_nack"])
            await h.until(lambda: h.receipts or h.connector.stats()["errors"].get("bad_receipt"))
            return h

    h = asyncio.run(run())
    assert [(r.ref, r.part, r.state) for r in h.receipts] == [("a", 0, "UNDELIV")]


@pytest.mark.parametrize("command", ["deliver_sm", "data_sm"])
def test_a_mobile_originated_message_is_answered_and_dropped_with_a_log_line(command, caplog):
    caplog.set_level("INFO", logger="engine.smpp.client")

    async def run():
        async with Harness(SmscConfig(seed=1, receipts=False)) as h:
            h.smsc.send_receipt_text(b"id:1 stat:DELIVRD my secret words", command=command,
                                     esm_class=0x00)
            await h.until(lambda: h.smsc.counters[f"{command}_resp"]
                          + h.smsc.counters["generic_nack"])
            h.submit([("a", "+491510000001", "ACME", "hi")])
            await h.until(lambda: h.responses)
            return h

    h = asyncio.run(run())
    assert h.smsc.counters[f"{command}_resp"] == 1 and h.smsc.counters["generic_nack"] == 0
    assert h.receipts == [] and h.connector.stats()["errors"] == {"mo_ignored": 1}
    assert [(r.ref, r.outcome) for r in h.responses] == [("a", "ok")]
    assert h.smsc.counters["connections"] == 1 and h.connector.reconnects == 0
    [line] = [r.getMessage() for r in caplog.records if "smpp_mo_ignored" in r.getMessage()]
    assert f"command={command}" in line
    assert not [r for r in caplog.records if "secret" in r.getMessage()]
