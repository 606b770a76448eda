"""A debugging window on an account keeps covering it after a worker restarts: the worker reloads the
hold with its account, so the account's new bodies are still kept, ``GET /v1/holds`` still names the
account, and the customer's ``DELETE /v1/debug-window`` ends it there too.

Before, a worker that had no data key of the account when the window was placed (the account had sent
nothing through it yet; the other worker never has one) sealed the hold's account id under no key: once
restarted it read the hold back without its account, so it kept none of the account's new bodies, showed
``account_id: null``, and the customer's close (and an erasure) left it open. Real nats-server, two
worker processes, the core's real ports.
"""

from __future__ import annotations

import pytest

from engine.cluster.placement import Placement
from tests.engine.cluster.support import Cluster, worker_down
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import DE_NUMBER, Client
from tests.waiting import wait_for

pytestmark = pytest.mark.functional


def test_a_window_placed_before_the_accounts_first_message_survives_its_workers_restart(tmp_path):
    c = Cluster(tmp_path, 2, overrides=webhook_engine_overrides(), http=True)
    try:
        engine = c.engine
        privacy = Client(engine.http.control_port,
                         engine.http.ctx.tokens.create("aud-privacy", {"privacy"}))
        account = c.accounts(1)[0]  # funded, nothing sent yet: no worker has a data key of it
        customer = Client(engine.http.customer_port, account.api_key)
        status, _, opened = customer.request("POST", "/v1/debug-window", {"hours": 1, "reason": "t7"})
        assert status == 201 and len(opened["hold_ids"]) == 2 * 3
        node = Placement(workers=("w0", "w1")).worker_of(account.id)
        with worker_down(c, int(node[1:])):  # the account's worker restarts
            pass

        status, _, listed = privacy.request("GET", "/v1/holds")
        assert status == 200 and listed["holds_missing"] == {}
        window = [h for h in listed["holds"] if h["hold_id"] in opened["hold_ids"]]
        assert sorted(h["account_id"] or "" for h in window) == [account.id] * 6

        status, _, sent = customer.request("POST", "/v1/messages",
                                           {"to": DE_NUMBER, "from": "ACME", "body": "debug me"})
        assert status == 202
        wait_for(lambda: c.final_in_store(sent["id"]) is not None, what="the message stored")
        pop = f"{node}/{engine.status(sent['id']).pop}"
        hold = next(h["hold_id"] for h in window if h["pop"] == pop)
        status, _, read = privacy.request("POST", f"/v1/holds/{hold}/disclosures",
                                          {"message_id": sent["id"]})
        assert (status, read.get("body")) == (200, "debug me")  # still kept by the window

        status, _, closed = customer.request("DELETE", "/v1/debug-window")
        assert status == 200 and closed["closed"] == 2 * 3
        assert not [h for h in privacy.request("GET", "/v1/holds")[2]["holds"]
                    if h["hold_id"] in opened["hold_ids"]]
    finally:
        c.stop()
