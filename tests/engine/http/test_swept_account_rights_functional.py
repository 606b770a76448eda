"""Access and erasure of an account whose record was swept 90 days after closure (policy 6 and 7).

The ledger keeps the account's rows for 7 years (its id, deposits' transaction hashes and wallets, under
the account's ledger key); the rights of section 7 apply to what is kept, so the control port must not
answer 404 for an account the engine still holds data about.
"""

from __future__ import annotations

import time

import pytest

from engine.ids import new_account_id
from tests.engine.http.conftest import DE_NUMBER, Client, wait_for
from tests.engine.http.jsonschema_values import inline, mismatches

DAY = 86400


@pytest.fixture(scope="module")
def tokens(running):
    store = running.http.ctx.tokens
    return {role: store.create(f"swept-{role}", {role}) for role in ("operator", "privacy")}


def _swept_account(running, tokens) -> tuple[str, str, str, str]:
    """An account with a deposit, a delivered message, a support case and a data-subject request,
    closed and swept."""
    ops = Client(running.http.control_port, tokens["operator"])
    status, _, new = ops.request("POST", "/v1/accounts", {"email": "former@example.com"})
    assert status == 201
    acc = new["id"]
    assert ops.request("POST", f"/v1/accounts/{acc}/deposits", {
        "usd": "5", "chain": "tron", "tx_hash": f"0xswept{acc}", "from_address": "TFormerWallet"})[0] == 201
    assert ops.request("POST", f"/v1/accounts/{acc}/senders", {"sender": "FORMER"})[0] == 201
    customer = Client(running.http.customer_port, new["api_key"])
    status, _, sent = customer.request("POST", "/v1/messages",
                                       {"to": DE_NUMBER, "from": "FORMER", "body": "hello"})
    assert status == 202
    wait_for(lambda: running.status(sent["id"]).status == "delivered", what="delivery")
    status, _, case = ops.request("POST", "/v1/support/cases", {
        "subject": "Invoice question", "text": "Please explain my last top-up.", "account_id": acc})
    assert status == 201
    privacy = Client(running.http.control_port, tokens["privacy"])
    status, _, dsar = privacy.request("POST", "/v1/dsar", {"account_id": acc, "type": "access"})
    assert status == 201
    assert ops.request("POST", f"/v1/accounts/{acc}/close", {})[0] == 200
    # the record's retention (closure + 90 days) has run out: the sweep deletes it, the ledger keeps
    # the account's rows (7 years)
    assert running.runtime.accounts.sweep(time.time() + 91 * DAY) >= 1
    assert ops.request("GET", f"/v1/accounts/{acc}")[0] == 404
    return acc, sent["id"], case["id"], dsar["id"]


def _published_mismatches(client: Client, path: str, method: str, answer: dict) -> list[str]:
    """Where ``answer`` differs from the 200 schema the control port publishes for ``path``."""
    status, _, doc = client.request("GET", "/v1/openapi.json")
    assert status == 200
    schema = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    return mismatches(inline(schema, doc["components"]["schemas"]), answer)


def test_a_swept_account_is_exported_with_what_the_ledger_still_keeps(running, tokens):
    acc, mid, case_id, dsar_id = _swept_account(running, tokens)
    privacy = Client(running.http.control_port, tokens["privacy"])

    status, _, export = privacy.request("GET", f"/v1/accounts/{acc}/export")
    assert status == 200, export
    assert export["account"] is None
    assert export["account_record"]["status"] == "deleted_after_retention"
    ledger = {e["kind"]: e for e in export["ledger"]}
    assert set(ledger) == {"deposit", "debit"}
    assert ledger["deposit"]["reference"] == f"0xswept{acc}"
    assert ledger["deposit"]["from_address"] == "TFormerWallet"
    assert ledger["deposit"]["account_id"] == acc
    assert ledger["debit"]["reference"] == mid
    assert export["balance_micro_usd"] == 5_000_000 + ledger["debit"]["amount_micro_usd"]
    assert export["messages"] == [] and export["api_keys"] == []  # gone with the record
    assert [c["id"] for c in export["support_cases"]] == [case_id]
    assert [r["id"] for r in export["privacy_requests"]] == [dsar_id]
    assert export["pseudonym"] == running.runtime.pseudonyms.pseudonym(acc)
    assert _published_mismatches(privacy, "/v1/accounts/{id}/export", "get", export) == []


def test_erasing_a_swept_account_says_what_it_did_and_then_nothing_names_it(running, tokens):
    acc, *_ = _swept_account(running, tokens)
    privacy = Client(running.http.control_port, tokens["privacy"])

    status, _, erased = privacy.request("POST", f"/v1/accounts/{acc}/erase", {})
    assert status == 200, erased
    assert erased["account_record"] == "deleted_after_retention"  # nothing left of it to erase
    assert erased["ledger_entries_pseudonymised"] == 2  # the deposit and the debit, kept 7 years
    assert _published_mismatches(privacy, "/v1/accounts/{id}/erase", "post", erased) == []
    assert erased["ledger_token"] == running.runtime.pseudonyms.pseudonym(acc)
    kept = running.runtime.ledger_store.entries(erased["ledger_token"])
    assert sorted(e.kind for e in kept) == ["debit", "deposit"]
    assert all(e.reference == "" and e.from_address == "" for e in kept)
    # erased: the id leads nowhere any more
    assert privacy.request("GET", f"/v1/accounts/{acc}/export")[0] == 404
    assert privacy.request("POST", f"/v1/accounts/{acc}/erase", {})[0] == 404


def test_an_id_the_engine_never_knew_is_still_404(running, tokens):
    privacy = Client(running.http.control_port, tokens["privacy"])
    stranger = new_account_id()
    assert privacy.request("GET", f"/v1/accounts/{stranger}/export")[0] == 404
    assert privacy.request("POST", f"/v1/accounts/{stranger}/erase", {})[0] == 404
