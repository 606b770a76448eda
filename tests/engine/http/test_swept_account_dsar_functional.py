"""Data-subject requests and the 90-day sweep of a closed account's record (policy 6, 7.5), through the
engine's real customer and control ports.

The sweep shreds the account's data key; the ledger keeps the account's rows (and its ledger key) for 7
years. So (1) a request the holder opened before the sweep is still answered after it — export and
erasure of what the ledger keeps — and (2) a former holder, who has no address of record left, opens one
through staff: staff get a single-use challenge, the holder signs it with a wallet that deposited to the
account, and the engine checks the signature against the ledger's deposit addresses.
"""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from engine import Engine
from storage.dsar import DsarRecord
from storage.outbox import Outbox
from storage.records_base import SealedRecords
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


def test_a_former_holder_opens_a_request_through_staff_with_a_depositing_wallets_signature(
        running, privacy):
    wallet = Account.create()
    account_id = _account(running, wallet)
    _sweep(running, account_id)
    customer = Client(running.http.customer_port)

    # no address of record to mail a link to: the route says what to do instead
    status, _, err = privacy.request("POST", "/v1/dsar", {"account_id": account_id, "type": "access"})
    assert status == 409 and "/v1/dsar/challenges" in err["error"]["message"]
    # the unauthenticated customer route stays closed to a former account
    assert customer.request("POST", "/v1/privacy/challenges",
                            {"account_id": account_id, "type": "access"})[0] == 404

    status, _, issued = privacy.request("POST", "/v1/dsar/challenges",
                                        {"account_id": account_id, "type": "access"})
    assert status == 201, issued
    assert account_id in issued["message"] and "nonce:" in issued["message"]
    signature = _sign(wallet, issued["message"])
    # a staff challenge is not answered on the customer route (and is used up trying)
    status, _, err = customer.request("POST", "/v1/privacy/signed-requests", {
        "challenge_id": issued["challenge_id"], "scheme": "evm", "signature": signature})
    assert status == 401 and err["error"]["code"] == "challenge_invalid"

    status, _, issued = privacy.request("POST", "/v1/dsar/challenges",
                                        {"account_id": account_id, "type": "access"})
    before = time.time()
    status, _, opened = privacy.request("POST", "/v1/dsar/signed-requests", {
        "challenge_id": issued["challenge_id"], "scheme": "evm",
        "signature": _sign(wallet, issued["message"])})
    assert status == 201, opened
    assert (opened["account_id"], opened["status"], opened["verification"], opened["opened_by"]) == (
        account_id, "open", "wallet:evm", "dsar-officer")
    assert opened["deadline"] >= before + 30 * DAY
    replay = privacy.request("POST", "/v1/dsar/signed-requests", {
        "challenge_id": issued["challenge_id"], "scheme": "evm",
        "signature": _sign(wallet, issued["message"])})
    assert replay[0] == 401 and replay[2]["error"]["code"] == "challenge_invalid"

    status, _, access = privacy.request("POST", f"/v1/dsar/{opened['id']}/fulfil", {})
    assert status == 200 and access["result"]["account"] is None
    assert [e["from_address"] for e in access["result"]["ledger"]] == [wallet.address]
    actions = {(e.actor, e.action) for e in running.runtime.audit_entries()}
    assert ("dsar-officer", "dsar_open_wallet") in actions


def test_a_former_holders_request_is_refused_for_a_wallet_that_never_deposited(running, privacy):
    wallet = Account.create()
    account_id = _account(running, wallet)
    _sweep(running, account_id)
    status, _, issued = privacy.request("POST", "/v1/dsar/challenges",
                                        {"account_id": account_id, "type": "erasure"})
    assert status == 201
    before = len(list(running.privacy.requests.store.all()))
    status, _, err = privacy.request("POST", "/v1/dsar/signed-requests", {
        "challenge_id": issued["challenge_id"], "scheme": "evm",
        "signature": _sign(Account.create(), issued["message"])})
    assert status == 401 and err["error"]["code"] == "wallet_not_recognised"
    assert len(list(running.privacy.requests.store.all())) == before  # nothing opened


def test_a_challenge_for_an_id_nothing_names_is_404(running, privacy):
    wallet = Account.create()
    erased = _account(running, wallet)
    running.erase_account(erased)
    for account_id in (erased, "acc_" + "0" * 16):
        status, _, err = privacy.request("POST", "/v1/dsar/challenges",
                                         {"account_id": account_id, "type": "access"})
        assert status == 404 and err["error"]["code"] == "unknown_account"


def _opened(running, account_id: str, kind: str) -> str:
    """A verified request, as the e-mail link leaves it."""
    return running.privacy.requests.store.create(account_id, kind, channel="email",
                                                 verified_by="email_link", opened_by="customer").id


def test_a_request_of_an_account_swept_with_no_ledger_rows_is_answered_that_nothing_is_held(
        running, privacy, monkeypatch):
    """Never deposited: the sweep shreds both keys, so nothing names the account any more (the request
    reads account_id ""); access, portability and erasure complete saying so, the others are refused."""
    account_id = running.create_account("never.paid@example.com").id
    case = running.privacy.support.open("my invoice", "Where is my invoice?", opened_by="support:ann",
                                        account_id=account_id)
    ids = {kind: _opened(running, account_id, kind)
           for kind in ("access", "portability", "erasure", "rectification")}
    pseudonym = running.runtime.pseudonyms.pseudonym(account_id)
    _sweep(running, account_id)
    status, _, listed = privacy.request("GET", f"/v1/dsar/{ids['access']}")
    assert status == 200 and (listed["account_id"], listed["subject"]) == ("", pseudonym)
    queued = []
    enqueue = Outbox.enqueue
    monkeypatch.setattr(Outbox, "enqueue", lambda outbox, mails: queued.extend(mails) or enqueue(
        outbox, mails))

    for kind in ("access", "portability"):
        status, _, answer = privacy.request("POST", f"/v1/dsar/{ids[kind]}/fulfil", {})
        assert status == 200, answer
        assert answer["request"]["status"] == "completed"
        export = answer["result"]
        assert export["account"] is None and export["pseudonym"] == pseudonym
        assert export["account_record"]["status"] == "not_held"
        assert "Nothing is held about you any more" in export["account_record"]["note"]
        assert export["ledger"] == [] and export["messages"] == [] and export["api_keys"] == []
        assert set(ids.values()) == {r["id"] for r in export["privacy_requests"]}  # what remains
        assert all(r["account_id"] == "" for r in export["privacy_requests"])
        [kept] = export["support_cases"]  # its times; the texts were under the shredded key
        assert (kept["id"], kept["subject"], kept["account_id"]) == (case.id, "", "")
        assert [m[3] for m in kept["messages"]] == [""]

    status, _, erased = privacy.request("POST", f"/v1/dsar/{ids['erasure']}/fulfil", {})
    assert status == 200 and erased["request"]["status"] == "completed", erased
    assert erased["result"]["account_record"] == "not_held"
    assert erased["result"]["ledger_token"] == pseudonym
    assert erased["result"]["ledger_entries_pseudonymised"] == 0
    assert "Nothing was left to erase" in erased["result"]["note"]

    status, _, err = privacy.request("POST", f"/v1/dsar/{ids['rectification']}/fulfil",
                                     {"email": "new@example.com"})
    assert status == 409 and err["error"]["code"] == "invalid_transition"
    assert "nothing the engine holds names the account" in err["error"]["message"]
    assert privacy.request("POST", f"/v1/dsar/{ids['rectification']}/refuse",
                           {"reason": "We hold nothing about you any more."})[0] == 200

    assert queued == []  # no address to mail: staff answer the holder
    status, _, trail = privacy.request("GET", f"/v1/audit?kind=data_subject&subject={pseudonym}")
    assert status == 200
    answered = [(e["actor"], e["action"], e["detail"].get("request")) for e in trail["entries"]
                if e["action"] in ("export_account", "erase_account")]
    assert answered == [("dsar-officer", "export_account", ids["access"]),
                        ("dsar-officer", "export_account", ids["portability"]),
                        ("dsar-officer", "erase_account", ids["erasure"])]


def test_a_request_still_open_when_its_account_was_erased_is_answered_with_the_pseudonymous_rows(
        running, privacy):
    wallet = Account.create()
    account_id = _account(running, wallet)
    access, erasure = _opened(running, account_id, "access"), _opened(running, account_id, "erasure")
    assert privacy.request("POST", f"/v1/dsar/{erasure}/fulfil", {})[0] == 200
    status, _, answer = privacy.request("POST", f"/v1/dsar/{access}/fulfil", {})
    assert status == 200, answer
    export = answer["result"]
    assert export["account_record"]["status"] == "not_held"
    [deposit] = export["ledger"]  # kept 7 years, its identifiers shredded
    assert (deposit["kind"], deposit["amount_micro_usd"]) == ("deposit", 5_000_000)
    assert (deposit["account_id"], deposit["reference"], deposit["from_address"]) == (
        export["pseudonym"], "", "")
    assert export["balance_micro_usd"] == 5_000_000


def test_an_older_versions_request_of_a_swept_account_is_answered_from_the_ledger_that_names_it(
        running, privacy):
    """Written before the ledger copy existed and swept under an older version: the request no longer
    names the account, but the ledger's rows still do — it is not told that nothing is held."""
    wallet = Account.create()
    account_id = _account(running, wallet)
    store = running.privacy.requests.store
    request_id = _opened(running, account_id, "access")

    def older_format(record: DsarRecord, key: bytes) -> dict:
        doc = store._encode(record, key)
        del doc["ledger_sealed_account"]
        return doc

    SealedRecords(running.privacy.env, running.runtime.keys.store_sealer("dsar"), b"dsar", DsarRecord,
                  "request", encode=older_format).put(store.get(request_id))
    _sweep(running, account_id)
    assert store.get(request_id).account_id == ""
    status, _, answer = privacy.request("POST", f"/v1/dsar/{request_id}/fulfil", {})
    assert status == 200, answer
    assert answer["result"]["account_record"]["status"] == "deleted_after_retention"
    assert [e["from_address"] for e in answer["result"]["ledger"]] == [wallet.address]
