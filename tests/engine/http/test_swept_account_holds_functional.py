"""Policy 2.3 against policy 6: evidence under a legal hold or a lawful order is kept while the hold
lasts, even when the covered account's record is swept (90 days after closure) meanwhile.

Through the real control port: an account sends a message under a lawful order (the account), a legal
hold is placed on that message, the account is closed and its record swept with a clock past 90 days;
the holds are still listed and their held bodies still disclosed. The held copies are sealed under each
hold's own key, not the account's, so the sweep shredding the account's data key must not touch them.
"""

from __future__ import annotations

import time

import pytest

from tests.engine.http.conftest import DE_NUMBER, Client, funded_account, wait_for

DAY = 86400
BODY = "the evidence SWEPTHOLDMARK"


@pytest.fixture(scope="module")
def privacy(running):
    return Client(running.http.control_port,
                  running.http.ctx.tokens.create("swept-hold-officer", {"privacy", "operator"}))


def _held_after_sweep(running, privacy) -> tuple[str, str, dict, dict]:
    """A message kept by a lawful order on its account, a legal hold placed on it too (after delivery:
    it copies nothing, but stays an open hold), the account closed and its record swept."""
    account = funded_account(running, email="swept-held@example.com")
    api = Client(running.http.customer_port, account.api_key)
    order = {"kind": "lawful_order", "reason": "court order", "reference": "ORDER-SWEPT-1",
             "authority": "court_order", "until": time.time() + 30 * DAY, "account_id": account.id,
             "notice_not_permitted": {"reason": "gag order", "reference": "NDO-SWEPT-1"}}
    status, _, ordered = privacy.request("POST", "/v1/holds", order)
    assert status == 201, ordered
    status, _, sent = api.request("POST", "/v1/messages",
                                  {"to": DE_NUMBER, "from": "ACME", "body": BODY})
    assert status == 202, sent
    wait_for(lambda: running.status(sent["id"]).status == "delivered", what="delivery")
    status, _, held = privacy.request("POST", "/v1/holds", {
        "kind": "legal_hold", "reason": "carrier complaint", "reference": "CC-SWEPT-1",
        "until": time.time() + 60 * DAY, "message_ids": [sent["id"]]})
    assert status == 201, held
    pop = running.status(sent["id"]).pop
    assert privacy.request("POST", f"/v1/accounts/{account.id}/close", {})[0] == 200
    assert running.runtime.accounts.sweep(time.time() + 91 * DAY) >= 1
    assert privacy.request("GET", f"/v1/accounts/{account.id}")[0] == 404  # the record is gone
    return sent["id"], pop, ordered, held


def test_holds_on_a_swept_account_are_listed_and_disclosed_while_they_last(running, privacy):
    mid, pop, ordered, held = _held_after_sweep(running, privacy)
    listed = {h["hold_id"]: h for h in privacy.request("GET", "/v1/holds")[2]["holds"]}
    [legal] = held["holds"]
    assert legal["hold_id"] in listed
    assert {h["hold_id"] for h in ordered["holds"]} <= set(listed)

    [kept] = [h["hold_id"] for h in ordered["holds"] if h["pop"] == pop]  # one hold per POP shard
    status, _, answer = privacy.request("POST", f"/v1/holds/{kept}/disclosures", {"message_id": mid})
    assert status == 200, answer
    assert answer["body"] == BODY
