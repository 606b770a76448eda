"""The embedded Engine with every carrier an SMPP bind to the simulated SMSC on loopback (issue 5).

Messages go host -> session -> POP -> SmppCarrierActor -> TCP -> ``bench.smsc.SimulatedSmsc`` and
back as ``submit_sm_resp`` and ``deliver_sm`` receipts. The SMSC records every ``submit_sm`` it
received, so the tests check the engine's final statuses against what really crossed the wire: a
delivered message must have been received whole (every part, reassembling to the body) and
receipted DELIVRD for every part. Destinations are unique per message so SMSC parts can be told
apart. Tests wait on conditions with a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import wait

import pytest

from bench.smsc import SmscConfig, SmscThread
from engine import Engine
from engine import messages as m
from engine.cli import smsc_overrides
from engine.config import load_settings
from engine.segments import decode_gsm7, decode_ucs2, parse_udh
from engine.smpp import pdu as p
from engine.status import DELIVERED, EXPIRED, FAILED, FINAL, REJECTED
from storage.ledger import DEBIT, REFUND

pytestmark = pytest.mark.functional

DEADLINE = 45.0  # an upper bound for a condition to become true, not an expected duration
BINDS = 2  # per carrier
ENGINE = {"tick_ms": 50, "default_validity_seconds": 20, "expiry_grace_seconds": 1,
          "resp_timeout_seconds": 4, "retry_base_ms": 5, "retry_cap_ms": 100}
CARRIER = {"binds": BINDS, "window": 20, "resp_timeout_seconds": 3.0,
           "reconnect_min_seconds": 0.05, "reconnect_max_seconds": 0.3}
DESTINATION = ("+49151{:08d}", "+659{:07d}", "+55119{:08d}")  # fra, sin, gru; unique per message


def engine_overrides(port: int) -> dict:
    """``smsroute run --smsc`` overrides, plus fast engine limits and fast-reconnecting binds."""
    doc = smsc_overrides(load_settings().raw, f"127.0.0.1:{port}", "smsroute", "secret")
    for table in doc["carriers"].values():
        assert table["kind"] == "smpp" and table["port"] == port
        table.update(CARRIER)
    return {**doc, "engine": ENGINE}


def body_for(i: int) -> str:
    """Short and multipart, GSM-7 (with extension characters) and UCS-2 (with surrogate pairs)."""
    kind, k = i % 4, i % 3
    if kind == 0:
        return f"Code {i:05d} {{ok}}"
    if kind == 1:
        return f"Msg {i} costs 5€ [x] ^|~\\ " + "lorem ipsum dolor sit amet, " * (6 + 5 * k)
    if kind == 2:
        return f"Привет {i} — ёжик"
    return f"{i} 😀 " + "日本語のテキストです。" * (8 + 6 * k)


def destination_for(i: int) -> str:
    return DESTINATION[i % 3].format(i)


class Finals:
    """The ``on_status`` callback: every status event per message; waits for all to be final."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: dict[str, list[m.StatusItem]] = defaultdict(list)
        self.final: dict[str, list[str]] = defaultdict(list)

    def __call__(self, item: m.StatusItem) -> None:
        with self.cond:
            self.events[item.message_id].append(item)
            if item.status in FINAL:
                self.final[item.message_id].append(item.status)
                self.cond.notify_all()

    def wait_all(self, ids: set[str], timeout: float = DEADLINE) -> None:
        with self.cond:
            done = self.cond.wait_for(lambda: ids <= self.final.keys(), timeout)
            assert done, f"{len(ids - self.final.keys())} of {len(ids)} messages never became final"


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll a condition another thread makes true, until a deadline."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.01)


def start_engine(tmp_path, port: int) -> tuple[Engine, Finals]:
    finals = Finals()
    engine = Engine.start(tmp_path / "data", overrides=engine_overrides(port), on_status=finals)
    assert {c.kind for c in engine.settings.carriers.values()} == {"smpp"}
    wait_until(lambda: all(c.get("connected_binds") == BINDS for c in engine.carriers()),
               "every carrier's binds")
    return engine, finals


def customer(engine: Engine):
    acct = engine.create_account(email="smpp-e2e@example.com")
    engine.register_sender(acct.id, "ACME")
    engine.deposit(acct.id, usd="10000", chain="tron", tx_hash=f"0x{acct.id}", from_address="TAddr")
    return acct


def submit_all(engine: Engine, acct, indices) -> dict[str, tuple[int, object]]:
    """Submit message ``i`` for each index; ``{message_id: (i, Accepted)}`` once all are durable."""
    futures = {i: engine.submit_future(acct.api_key, to=destination_for(i), sender="ACME",
                                       body=body_for(i)) for i in indices}
    _, pending = wait(futures.values(), timeout=DEADLINE)
    assert not pending, f"{len(pending)} submits never accepted"
    return {f.result().message_id: (i, f.result()) for i, f in futures.items()}


def assert_billed_once(engine: Engine, acct, accepted: dict) -> None:
    """One debit per message, one refund per message no carrier acknowledged, and the balance is the
    deposit minus exactly the prices of the others."""
    barrier = engine.deposit(acct.id, usd="1", chain="sync", tx_hash="barrier",
                             from_address="TSync")  # the ledger handles it after every debit
    entries = list(engine.runtime.ledger_store.entries(acct.id))
    assert Counter(e.reference for e in entries if e.kind == DEBIT) == Counter(accepted.keys())
    refunded = {mid: engine.status(mid).refunded_micro_usd for mid in accepted}
    refunded = {mid: amount for mid, amount in refunded.items() if amount}
    assert Counter(e.reference for e in entries if e.kind == REFUND) == Counter(refunded.keys())
    assert all(engine.status(mid).status in (FAILED, REJECTED) for mid in refunded)
    prices = sum(a.price_micro_usd for _, a in accepted.values())
    assert barrier - 1_000_000 == 10_000 * 1_000_000 - prices + sum(refunded.values())


class WireLog:
    """What SMSC instances received, per destination: parts, their resp status and receipt state."""

    def __init__(self, *smscs: SmscThread) -> None:
        self.by_dest: dict[str, list[tuple[int, str | None, tuple | None, bytes, int]]] = \
            defaultdict(list)
        for thread in smscs:
            smsc = thread.smsc
            for part in smsc.parts:
                receipt = smsc.receipt_log.get(part.message_id) if part.message_id else None
                data = bytes(part.params["short_message"])
                udh = None
                if part.params.get("esm_class", 0) & 0x40:
                    udh = parse_udh(data)
                    data = data[data[0] + 1:]
                self.by_dest["+" + part.params["destination_addr"]].append(
                    (part.status, receipt, udh, data, part.params.get("data_coding", 0)))

    def delivered_whole(self, dest: str, body: str) -> bool:
        """Some attempt reached the SMSC whole: every part accepted, receipted DELIVRD, = body."""
        groups: dict[tuple, dict[int, str]] = defaultdict(dict)
        for status, receipt, udh, data, coding in self.by_dest[dest]:
            if status != p.ESME_ROK or receipt != "DELIVRD":
                continue
            text = decode_ucs2(data) if coding == 0x08 else decode_gsm7(data)
            if udh is None:
                if text == body:
                    return True
                continue
            ref, total, seq = udh
            groups[(ref, total)][seq] = text
        return any(len(g) == total and "".join(g[s] for s in range(1, total + 1)) == body
                   for (_, total), g in groups.items())

    def explains(self, dest: str, status: str) -> bool:
        """The wire shows a reason for a non-delivered final status."""
        seen = {(s, r) for s, r, *_ in self.by_dest[dest]}
        reasons = {
            REJECTED: {(p.ESME_RINVDSTADR, None), (p.ESME_ROK, "REJECTD")},
            EXPIRED: {(p.ESME_ROK, "EXPIRED")},
            FAILED: {(p.ESME_ROK, "UNDELIV"), (p.ESME_RMSGQFUL, None), (p.ESME_RTHROTTLED, None)},
        }[status]
        return bool(seen & reasons)


def carrier_totals(engine: Engine, key: str) -> Counter:
    total: Counter = Counter()
    for c in engine.carriers():
        total.update(c.get(key, {}))
    return total


def test_thousands_of_messages_over_smpp_each_reach_one_final_status_matching_the_wire(tmp_path):
    config = SmscConfig(
        seed=11, latency=(0.0, 0.01), receipt_delay=(0.0, 0.02), receipt_tlvs=True,
        receipt_states={"DELIVRD": 0.7, "UNDELIV": 0.1, "EXPIRED": 0.1, "REJECTD": 0.1},
        error_rates={p.ESME_RTHROTTLED: 0.01, p.ESME_RMSGQFUL: 0.02, p.ESME_RINVDSTADR: 0.01})
    with SmscThread(config) as smsc:
        engine, finals = start_engine(tmp_path, smsc.port)
        try:
            acct = customer(engine)
            accepted = submit_all(engine, acct, range(2000))
            assert {a.pop for _, a in accepted.values()} == {"fra", "sin", "gru"}
            assert {a.encoding for _, a in accepted.values()} == {"GSM-7", "UCS-2"}
            assert {a.segments for _, a in accepted.values()} >= {1, 2, 3}
            finals.wait_all(set(accepted))

            assert {mid: len(s) for mid, s in finals.final.items()} == dict.fromkeys(accepted, 1)
            statuses = {mid: s[0] for mid, s in finals.final.items()}
            assert set(statuses.values()) == {DELIVERED, FAILED, EXPIRED, REJECTED}
            for mid in accepted:
                assert [e.status for e in finals.events[mid]][0] == "accepted"
                assert engine.status(mid).status == statuses[mid]

            wire = WireLog(smsc)
            assert set(wire.by_dest) == {destination_for(i) for i, _ in accepted.values()}
            parts_needed = sum(a.segments for _, a in accepted.values())
            assert len(smsc.smsc.parts) >= parts_needed
            for mid, (i, _) in accepted.items():
                dest, status = destination_for(i), statuses[mid]
                if status == DELIVERED:
                    assert wire.delivered_whole(dest, body_for(i)), f"message {i} not on the wire"
                else:
                    assert wire.explains(dest, status), f"message {i}: {status} without a reason"

            errors = carrier_totals(engine, "errors")
            assert errors["receipt_held"] > 0  # some receipts arrived before their resp
            assert sum(c["throttle_pauses"] for c in engine.carriers()) > 0  # 0x58 slowed binds
            assert carrier_totals(engine, "outcomes")["throttled"] > 0  # 0x14, 0x58 were retried
            assert_billed_once(engine, acct, accepted)
        finally:
            engine.stop(drain_seconds=0)
        assert smsc.smsc.counters["unbind"] == BINDS * len(engine.settings.carriers)


def test_an_smsc_killed_mid_window_and_restarted_leaves_every_message_final_and_delivered_whole(
        tmp_path):
    slow = SmscConfig(seed=1, latency=(0.2, 0.4), receipts_before_resp=True)
    first = SmscThread(slow).start()
    port, second = first.port, None
    engine, finals = start_engine(tmp_path, port)
    try:
        acct = customer(engine)
        accepted = submit_all(engine, acct, range(600))
        wait_until(lambda: len(finals.final) >= 50, "the first messages to be delivered")
        first.stop()  # mid-window: resps of everything in flight are never sent
        wait_until(lambda: all(c.get("connected_binds") == 0 for c in engine.carriers()),
                   "the engine to notice the SMSC is gone")
        assert len(finals.final) < len(accepted)

        second = SmscThread(SmscConfig(seed=900, latency=(0.0, 0.01), receipt_delay=(0.0, 0.02)),
                            port=port).start()
        finals.wait_all(set(accepted))
        assert {mid: len(s) for mid, s in finals.final.items()} == dict.fromkeys(accepted, 1)

        wire, before, after = WireLog(first, second), WireLog(first), WireLog(second)
        for mid, (i, a) in accepted.items():
            # every message is delivered, multipart ones cut by the kill too (resent whole)
            rec = engine.status(mid)
            assert finals.final[mid] == [DELIVERED], \
                f"message {i} ({a.segments} parts): {rec.status} {rec.error!r}"
            assert wire.delivered_whole(destination_for(i), body_for(i)), f"message {i} not on the wire"
        assert any(before.delivered_whole(destination_for(i), body_for(i))
                   for i, _ in accepted.values())
        resent = [i for i, _ in accepted.values() if destination_for(i) in before.by_dest
                  and after.delivered_whole(destination_for(i), body_for(i))]
        assert resent  # parts in flight at the kill went again to the restarted SMSC
        wait_until(lambda: all(c.get("connected_binds") == BINDS for c in engine.carriers()),
                   "every bind to come back")
        assert second.smsc.bound_sessions == BINDS * len(engine.settings.carriers)
        assert all(c["reconnects"] >= 1 for c in engine.carriers())
        assert carrier_totals(engine, "outcomes")["offline"] > 0  # in-flight parts were resolved
        assert_billed_once(engine, acct, accepted)
    finally:
        engine.stop(drain_seconds=0)
        first.stop()
        if second is not None:
            second.stop()
