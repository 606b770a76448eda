"""Policy 2.3(b) from the customer's side: opt in to a bounded debugging window, read-only to operators
through the exception's own path, audit-logged, and ended by the customer."""

from __future__ import annotations

import pytest

from engine.errors import HoldEnded
from tests.engine.http.conftest import DE_NUMBER, Client, funded_account, wait_for


@pytest.fixture(scope="module")
def account(running):
    return funded_account(running, email="debug@example.com")


@pytest.fixture
def api(running, account):
    return Client(running.http.customer_port, account.api_key)


def test_a_customer_opts_in_and_out_of_a_debugging_window_for_their_own_bodies(running, api, account):
    status, _, opened = api.request("POST", "/v1/debug-window", {"hours": 2, "reason": "ticket 7"})
    assert status == 201 and len(opened["hold_ids"]) == 3  # one per POP

    status, _, sent = api.request("POST", "/v1/messages",
                                  {"to": DE_NUMBER, "from": "ACME", "body": "debug me"})
    assert status == 202
    wait_for(lambda: running.status(sent["id"]).status == "delivered", what="delivery")
    holds = [h for h in running.active_holds() if h["account_id"] == account.id]
    assert {h["actor"] for h in holds} == {f"customer:{account.id}"}
    fra_hold = next(h["hold_id"] for h in holds if h["pop"] == "fra")
    assert running.read_held_body(fra_hold, sent["id"], actor="ops:support") == "debug me"

    status, _, closed = api.request("DELETE", "/v1/debug-window")
    assert status == 200 and closed["closed"] == 3
    with pytest.raises(HoldEnded):
        running.read_held_body(fra_hold, sent["id"], actor="ops:support")


@pytest.mark.parametrize("hours", [0, -1, 169, "2"])
def test_a_window_longer_than_7_days_or_not_a_number_is_refused(api, hours):
    status, _, err = api.request("POST", "/v1/debug-window", {"hours": hours})
    assert status in (400, 422) and err["error"]["code"]


def test_opening_a_window_needs_an_api_key(running):
    status, _, _ = Client(running.http.customer_port).request("POST", "/v1/debug-window",
                                                              {"hours": 1})
    assert status == 401


def test_staff_cannot_open_a_debugging_window_on_a_customers_account(running, account):
    """Policy 2.3(b) is the customer's explicit opt-in: the control port places legal holds and lawful
    orders (exceptions a and c), never a debugging window in the customer's name."""
    import time

    privacy = Client(running.http.control_port,
                     running.http.ctx.tokens.create("debug-window-staff", {"privacy"}))
    before = [h for h in running.active_holds() if h["account_id"] == account.id]
    status, _, err = privacy.request("POST", "/v1/holds", {
        "kind": "debug_window", "reason": "support wants the bodies", "reference": "T-1",
        "until": time.time() + 3600, "account_id": account.id})
    assert status == 403 and err["error"]["code"] == "forbidden"
    assert [h for h in running.active_holds() if h["account_id"] == account.id] == before
