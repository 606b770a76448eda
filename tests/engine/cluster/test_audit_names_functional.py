"""``GET /v1/audit?account=acc_…`` in a cluster finds the workers' retention-exception entries about the
account, named as one process names them: by the core's pseudonym (``subject``, the one an erasure's
``ledger_token`` gives) and, while the account exists, its id (``account_id``, and ``customer:acc_…`` as
the actor of the customer's own window); after the erasure by that pseudonym alone, found by the id or
by the ``ledger_token``.

Before, each worker named an account by its own pseudonym (its key ring's secret) with ``account_id``
``""``: two accounts were four pseudonyms across two workers, none the core's, and the filter found none
of their entries. Real nats-server, two worker processes, the core's real control and customer ports
(``engine.core_names``).
"""

from __future__ import annotations

import time

import pytest

from engine.cluster.placement import Placement
from tests.engine.cluster.support import Cluster
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import DE_NUMBER, Client
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

TRAIL = "/v1/audit?kind=retention_exception"


def _trail(privacy: Client, query: str = "") -> list[dict]:
    status, _, page = privacy.request("GET", f"{TRAIL}{query}")
    assert status == 200 and page["workers_missing"] == {} and page["next_since"] is None, page
    return page["entries"]


def test_the_account_filter_finds_every_workers_hold_entries_named_as_in_one_process(tmp_path):
    c = Cluster(tmp_path, 2, overrides=webhook_engine_overrides(), http=True)
    try:
        engine = c.engine
        privacy = Client(engine.http.control_port,
                         engine.http.ctx.tokens.create("aud-privacy", {"privacy"}))
        one, other = c.accounts(2)[:2]
        windows = {}
        for account in (one, other):  # the customer's own window: a hold at every POP of each worker
            customer = Client(engine.http.customer_port, account.api_key)
            status, _, opened = customer.request("POST", "/v1/debug-window",
                                                 {"hours": 1, "reason": "ticket 7"})
            assert status == 201 and len(opened["hold_ids"]) == 2 * 3
            windows[account.id] = opened["hold_ids"]
        status, _, order = privacy.request("POST", "/v1/holds", {  # placed through the control port
            "kind": "lawful_order", "reason": "court order", "reference": "ORD-9", "account_id": one.id,
            "until": time.time() + 3600, "authority": "court_order",
            "notice_not_permitted": {"reason": "gag order", "reference": "ORD-9 s.4"}})
        assert status == 201 and len(order["holds"]) == 2 * 3
        psn = engine.account_pseudonym(one.id)
        status, _, listed = privacy.request("GET", "/v1/holds")  # the holds too, as one process names them
        assert status == 200 and listed["holds_missing"] == {}
        assert {(h["subject"], h["account_id"]) for h in listed["holds"] + order["holds"]
                if h["hold_id"] in set(windows[one.id]) | {o["hold_id"] for o in order["holds"]}} == {
            (psn, one.id)}
        sent = Client(engine.http.customer_port, one.api_key).request(
            "POST", "/v1/messages", {"to": DE_NUMBER, "from": "ACME", "body": "debug me"})[2]
        wait_for(lambda: c.final_in_store(sent["id"]) is not None, what="the message stored")
        pop = f"{Placement(workers=('w0', 'w1')).worker_of(one.id)}/{engine.status(sent['id']).pop}"
        window = next(h["hold_id"] for h in engine.active_holds()
                      if h["hold_id"] in windows[one.id] and h["pop"] == pop)
        status, _, read = privacy.request("POST", f"/v1/holds/{window}/disclosures",
                                          {"message_id": sent["id"]})
        assert status == 200 and read["body"] == "debug me"  # a held body read: audited there
        assert Client(engine.http.customer_port, one.api_key).request(
            "DELETE", "/v1/debug-window")[2]["closed"] == 2 * 3

        mine = _trail(privacy, f"&account={one.id}")
        held = set(windows[one.id]) | {h["hold_id"] for h in order["holds"]}
        assert {e["target"].partition("/")[0] for e in mine} == held  # every worker's, every POP's
        assert all(e["subject"] == psn and e["account_id"] == one.id for e in mine)
        assert sorted((e["action"], e["actor"]) for e in mine) == sorted(
            [("place_debug_window", f"customer:{one.id}")] * 6
            + [("release_debug_window", f"customer:{one.id}")] * 6
            + [("place_lawful_order", "aud-privacy")] * 6 + [("read_held_body", "aud-privacy")])
        assert _trail(privacy, f"&subject={psn}") == mine
        assert {e["subject"] for e in _trail(privacy)} == {psn, engine.account_pseudonym(other.id)}
        assert {e["target"] for e in _trail(privacy, f"&account={other.id}")} == set(windows[other.id])

        status, _, erased = privacy.request("POST", f"/v1/accounts/{one.id}/erase", {})
        assert status == 200 and erased["ledger_token"] == psn
        after = _trail(privacy, f"&account={one.id}")
        assert after == _trail(privacy, f"&subject={psn}")  # followed by the erasure's ledger_token
        assert [(e["ts"], e["action"], e["target"]) for e in after] == [
            (e["ts"], e["action"], e["target"]) for e in mine]  # nothing lost, nothing added
        assert all(e["subject"] == psn and e["account_id"] == "" for e in after)
        assert {e["actor"] for e in after} == {f"customer:{psn}", "aud-privacy"}
        assert one.id not in str(after)
    finally:
        c.stop()
