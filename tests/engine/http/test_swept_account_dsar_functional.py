"""Data-subject requests and the 90-day sweep of a closed account's record (policy 6, 7.5), through the
engine's real customer and control ports.

The sweep shreds the account's data key; the ledger keeps the account's rows (and its ledger key) for 7
years. So a request the holder opened before the sweep is still answered after it — export and erasure
of what the ledger keeps.
"""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from engine import Engine
from tests.engine.http.conftest import Client, overrides

DAY = 86400


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    settings = overrides()
    settings["privacy"] = {"unverified_requests_per_hour": 50}
    engine = Engine.start(tmp_path_factory.mktemp("swept-dsar") / "data", http=True,
                          overrides=settings)
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def privacy(running):
    return Client(running.http.control_port,
                  running.http.ctx.tokens.create("dsar-officer", {"privacy"}))


def _account(running, wallet) -> str:
    account = running.create_account("holder@example.com")
    running.deposit(account.id, "5", "ethereum", f"tx-{account.id}", wallet.address)
    return account.id


def _sweep(running, account_id: str) -> None:
    """Close the account and let its record's retention (closure + 90 days) run out."""
    running.close_account(account_id)
    assert running.runtime.accounts.sweep(time.time() + 91 * DAY) >= 1


def _sign(wallet, message: str) -> str:
    return "0x" + bytes(wallet.sign_message(encode_defunct(text=message)).signature).hex()


def _customer_request(customer: Client, account_id: str, wallet, kind: str) -> str:
    status, _, issued = customer.request("POST", "/v1/privacy/challenges",
                                         {"account_id": account_id, "type": kind})
    assert status == 201, issued
    status, _, opened = customer.request("POST", "/v1/privacy/signed-requests", {
        "challenge_id": issued["challenge_id"], "scheme": "evm",
        "signature": _sign(wallet, issued["message"])})
    assert status == 201 and opened["status"] == "open", opened
    return opened["id"]


def test_a_request_open_when_its_account_is_swept_is_still_answered(running, privacy):
    wallet = Account.create()
    account_id = _account(running, wallet)
    customer = Client(running.http.customer_port)
    ids = {kind: _customer_request(customer, account_id, wallet, kind)
           for kind in ("access", "rectification", "erasure")}
    _sweep(running, account_id)
    assert privacy.request("GET", f"/v1/accounts/{account_id}")[0] == 404  # the record is gone

    status, _, listed = privacy.request("GET", f"/v1/dsar/{ids['access']}")
    assert status == 200 and listed["account_id"] == account_id  # still named: staff can act on it
    status, _, access = privacy.request("POST", f"/v1/dsar/{ids['access']}/fulfil", {})
    assert status == 200, access
    assert access["request"]["status"] == "completed"
    export = access["result"]
    assert export["account"] is None
    assert export["account_record"]["status"] == "deleted_after_retention"
    assert [e["from_address"] for e in export["ledger"] if e["kind"] == "deposit"] == [wallet.address]

    # the record (its e-mail address) is gone: nothing to rectify; staff refuse it, saying why
    status, _, err = privacy.request("POST", f"/v1/dsar/{ids['rectification']}/fulfil",
                                     {"email": "new@example.com"})
    assert status == 409 and err["error"]["code"] == "invalid_transition"
    assert "deleted" in err["error"]["message"]
    assert privacy.request("POST", f"/v1/dsar/{ids['rectification']}/refuse",
                           {"reason": "The account record was deleted after its retention."})[0] == 200

    status, _, erased = privacy.request("POST", f"/v1/dsar/{ids['erasure']}/fulfil", {})
    assert status == 200, erased
    assert erased["result"]["account_record"] == "deleted_after_retention"
    assert erased["result"]["ledger_entries_pseudonymised"] == 1
    assert privacy.request("GET", f"/v1/accounts/{account_id}/export")[0] == 404
    # erased: every request of the account names it by its pseudonym only
    pseudonym = running.runtime.pseudonyms.pseudonym(account_id)
    for request_id in ids.values():
        status, _, after = privacy.request("GET", f"/v1/dsar/{request_id}")
        assert (after["account_id"], after["subject"]) == ("", pseudonym)
        assert after["status"] in ("completed", "refused")
