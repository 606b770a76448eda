"""The published OpenAPI documents say what the live servers answer (README: "Customer HTTP API",
"Control port"): every header a document promises on a success is in the live answer, every content
type a route answers with is documented for it, and the query parameters the README gives a route are
in its document. Clients are generated from these documents, so a promise the server does not keep (or
a parameter it reads but does not publish) breaks them. The answers an operator's automation parses
(deposits, adjustments, holds, tokens, carriers, routing, senders, ...) are documented with their fields,
and the live answer of each validates against its published schema."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from engine import Engine
from tests.engine.http.conftest import DE_NUMBER, Client, funded_account, overrides, wait_for
from tests.engine.http.jsonschema_values import inline, mismatches
from tests.mailbox import Mailbox, email_overrides, text_of


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    yield box
    box.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory, mailbox):
    """An engine whose mail goes to ``mailbox``: the confirmation and verification links the customer
    routes redeem are read from it, as a customer reads them."""
    engine = Engine.start(tmp_path_factory.mktemp("openapi") / "data", http=True,
                          overrides={**overrides(), "email": email_overrides(mailbox)})
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def world(running, mailbox):
    account = funded_account(running, email="openapi@example.com")
    token = running.http.ctx.tokens.create("openapi-live", {"viewer", "operator", "privacy"})
    customer = Client(running.http.customer_port, account.api_key)
    control = Client(running.http.control_port, token)
    docs = {name: client.request("GET", "/v1/openapi.json", token="")[2]
            for name, client in (("customer", customer), ("control", control))}
    return {"account": account, "customer": customer, "control": control, "docs": docs,
            "engine": running, "mailbox": mailbox}


def _link(mailbox: Mailbox, address: str, subject: str) -> str:
    """The path and query of the link in the newest mail to ``address`` about ``subject``."""
    mail = mailbox.wait(address, subject)[-1]
    url = urlsplit(re.search(r"https?://\S+", text_of(mail)).group(0))
    return f"{url.path}?{url.query}"


def _success(doc, path: str) -> dict:
    [(code, answer)] = [(c, r) for c, r in doc["paths"][path]["get"]["responses"].items()
                        if c.startswith("2")]
    return answer


@pytest.mark.parametrize(("app", "path"), [
    ("customer", "/v1/balance"), ("customer", "/v1/openapi.json"),
    ("control", "/v1/stats"), ("control", "/metrics"), ("control", "/healthz"),
])
def test_every_header_a_document_promises_on_a_success_is_in_the_live_answer(world, app, path):
    status, headers, _ = world[app].request("GET", path)
    assert status == 200
    promised = set(_success(world["docs"][app], path).get("headers", {}))
    assert promised <= set(headers), (app, path, promised - set(headers))


@pytest.mark.parametrize(("app", "path", "query"), [
    ("control", "/metrics", ""),
    ("customer", "/v1/usage", "?format=csv"),
    ("customer", "/v1/usage", ""),
    ("control", "/v1/accounts/{id}/usage", "?format=csv"),
])
def test_the_content_type_of_each_live_answer_is_documented_for_its_route(world, app, path, query):
    target = path.replace("{id}", world["account"].id) + query
    status, headers, _ = world[app].request("GET", target)
    assert status == 200
    sent = headers["Content-Type"].split(";")[0].strip()
    assert sent in _success(world["docs"][app], path)["content"], (path, sent)


def test_the_audit_query_parameters_the_readme_gives_are_published_and_served(world):
    """``GET /v1/audit?kind=&since=&until=&limit=&account=`` (or ``&subject=psn_…``), ``kind``
    repeatable or comma-separated."""
    params = {p["name"]: p for p in world["docs"]["control"]["paths"]["/v1/audit"]["get"]["parameters"]}
    assert {"kind", "since", "until", "limit", "account", "subject"} <= set(params)
    assert params["kind"]["schema"]["type"] == "array" and params["kind"].get("explode", True)
    account = world["account"].id
    assert world["control"].request("GET", f"/v1/accounts/{account}")[0] == 200  # one entry about it

    def about_it() -> list[dict]:
        status, _, page = world["control"].request(
            "GET", f"/v1/audit?kind=control,data_subject&kind=retention_exception&account={account}")
        assert status == 200
        return [e for e in page["entries"] if e["subject"]]

    wait_for(about_it, "an audit entry about the account")
    subject = about_it()[0]["subject"]
    status, _, again = world["control"].request("GET", f"/v1/audit?subject={subject}")
    assert status == 200 and again["entries"]


# (app, method, documented route, the request as sent) -> checked against that route's success schema
Call = tuple[str, str, str, str, Any]


def _answers(world: dict) -> dict[str, Callable[[], Call]]:
    account = world["account"].id
    key = f"adj-{time.time_ns()}"
    hold: dict[str, str] = {}

    def place_hold() -> Call:
        return ("control", "POST", "/v1/holds", "/v1/holds", {
            "kind": "lawful_order", "reason": "schema check", "reference": "REF-1",
            "until": time.time() + 3600, "account_id": account, "authority": "subpoena"})

    def release_hold() -> Call:
        status, _, placed = world["control"].request("POST", *place_hold()[3:])
        assert status == 201, placed
        hold["id"] = placed["holds"][0]["hold_id"]
        return ("control", "POST", "/v1/holds/{id}/release", f"/v1/holds/{hold['id']}/release",
                {"reason": "schema check done"})

    def put_routing() -> Call:
        status, _, table = world["control"].request("GET", "/v1/routing")
        assert status == 200
        return ("control", "PUT", "/v1/routing", "/v1/routing", table)

    def revoke_token() -> Call:  # one made here (each case builds its own calls, key included)
        status, _, made = world["control"].request("POST", "/v1/tokens", {
            "name": f"revoked-{key}", "roles": ["viewer"]})
        assert status == 201, made
        return ("control", "DELETE", "/v1/tokens/{name}", f"/v1/tokens/revoked-{key}", None)

    def revoke_control_key() -> Call:
        status, _, new = world["control"].request("POST", f"{ids}/keys")
        assert status == 201, new
        return ("control", "DELETE", "/v1/accounts/{id}/keys/{key_id}", f"{ids}/keys/{new['id']}",
                None)

    def revoke_customer_key() -> Call:
        status, _, new = world["customer"].request("POST", "/v1/keys")
        assert status == 201, new
        return ("customer", "DELETE", "/v1/keys/{id}", f"/v1/keys/{new['id']}", None)

    def erase() -> Call:
        doomed = funded_account(world["engine"], email="erased@example.com")
        return ("control", "POST", "/v1/accounts/{id}/erase", f"/v1/accounts/{doomed.id}/erase", None)

    def opened(path: str, body: dict) -> str:
        status, _, made = world["control"].request("POST", path, body)
        assert status == 201, made
        return made["id"]

    def dsar(step: str, body: dict | None) -> Callable[[], Call]:
        def call() -> Call:
            request_id = opened("/v1/dsar", {"account_id": account, "type": "access"})
            # the holder opened the mailed link (every step below is for an open request)
            world["engine"].privacy.requests.store.verify(request_id, "email_link")
            return ("control", "POST", f"/v1/dsar/{{id}}/{step}", f"/v1/dsar/{request_id}/{step}",
                    body)
        return call

    def incident(step: str, body: dict | None) -> Callable[[], Call]:
        def call() -> Call:
            incident_id = opened("/v1/incidents", {"summary": "schema check",
                                                   "detected_at": time.time() - 60,
                                                   "accounts": [account]})
            return ("control", "POST", f"/v1/incidents/{{id}}/{step}",
                    f"/v1/incidents/{incident_id}/{step}", body)
        return call

    def case(method: str, step: str, body: dict | None) -> Callable[[], Call]:
        def call() -> Call:
            case_id = opened("/v1/support/cases", {"subject": "schema check", "text": "hello",
                                                   "account_id": account})
            route, target = "/v1/support/cases/{id}", f"/v1/support/cases/{case_id}"
            return ("control", method, route + step, target + step, body)
        return call

    def one_dsar() -> Call:
        request_id = opened("/v1/dsar", {"account_id": account, "type": "objection"})
        return ("control", "GET", "/v1/dsar/{id}", f"/v1/dsar/{request_id}", None)

    def notice_again() -> Call:  # a lawful order whose notice the mail server refused for good
        mailbox = world["mailbox"]
        wait_for(lambda: len(world["engine"].mail.outbox) == 0, what="earlier mail sent")
        mailbox.reject_next = 1
        status, _, placed = world["control"].request("POST", *place_hold()[3:])
        assert status == 201, placed
        hold_id = placed["holds"][0]["hold_id"]

        def state() -> str:
            listed = world["control"].request("GET", "/v1/holds")[2]["holds"]
            return next(h for h in listed if h["hold_id"] == hold_id)["notice"]["state"]

        wait_for(lambda: state() == "unsent", what="the notice refused")
        return ("control", "POST", "/v1/holds/{id}/notice", f"/v1/holds/{hold_id}/notice",
                {"authority": "subpoena"})

    def analytics() -> Call:  # a corridor with enough messages from enough accounts to be shown
        for i in range(3):
            sender = funded_account(world["engine"], email=f"corridor{i}@example.com")
            api = Client(world["customer"].port, sender.api_key)
            for _ in range(2):
                status, _, sent = api.request("POST", "/v1/messages", {
                    "to": DE_NUMBER, "from": "ACME", "body": "schema check"})
                assert status == 202, sent
        wait_for(lambda: world["control"].request("GET", "/v1/analytics")[2]["corridors"],
                 what="a corridor shown")
        return ("control", "GET", "/v1/analytics", "/v1/analytics", None)

    def fresh_address(what: str) -> str:
        return f"{what}-{time.time_ns()}@example.com"

    def email_confirmed() -> Call:  # the link of a new account's confirmation mail
        address = fresh_address("confirm")
        status, _, new = world["control"].request("POST", "/v1/accounts", {"email": address})
        assert status == 201, new
        link = _link(world["mailbox"], address, "Confirm your smsroute e-mail address")
        return ("customer", "GET", "/v1/email/confirm", link, None)

    def request_verified() -> Call:  # the link of a data-subject request's verification mail
        address = fresh_address("dsar")
        funded_account(world["engine"], email=address)
        status, _, sent = world["customer"].request("POST", "/v1/privacy/requests",
                                                    {"type": "access", "email": address})
        assert status == 202, sent
        link = _link(world["mailbox"], address, "Confirm your data-subject request")
        return ("customer", "GET", "/v1/privacy/verify", link, None)

    def signed_request() -> Call:  # a wallet that deposited signs the challenge (EIP-191)
        wallet = Account.create()
        holder = world["engine"].create_account(fresh_address("wallet"))
        world["engine"].deposit(holder.id, "1", "ethereum", f"tx-{holder.id}", wallet.address)
        status, _, issued = world["customer"].request("POST", "/v1/privacy/challenges",
                                                      {"account_id": holder.id, "type": "access"})
        assert status == 201, issued
        signature = wallet.sign_message(encode_defunct(text=issued["message"])).signature
        return ("customer", "POST", "/v1/privacy/signed-requests", "/v1/privacy/signed-requests", {
            "challenge_id": issued["challenge_id"], "scheme": "evm",
            "signature": "0x" + bytes(signature).hex()})

    def wallet_holder() -> tuple[str, Any]:  # an account a wallet deposited to
        wallet = Account.create()
        holder = world["engine"].create_account(fresh_address("wallet"))
        world["engine"].deposit(holder.id, "1", "ethereum", f"tx-{holder.id}", wallet.address)
        return holder.id, wallet

    def staff_signed_request() -> Call:  # staff open it for a holder who wrote to privacy@
        holder, wallet = wallet_holder()
        status, _, issued = world["control"].request("POST", "/v1/dsar/challenges",
                                                     {"account_id": holder, "type": "erasure"})
        assert status == 201, issued
        signature = wallet.sign_message(encode_defunct(text=issued["message"])).signature
        return ("control", "POST", "/v1/dsar/signed-requests", "/v1/dsar/signed-requests", {
            "challenge_id": issued["challenge_id"], "scheme": "evm",
            "signature": "0x" + bytes(signature).hex()})

    ids = f"/v1/accounts/{account}"
    return {
        "dsar challenge": lambda: ("control", "POST", "/v1/dsar/challenges", "/v1/dsar/challenges",
                                   {"account_id": wallet_holder()[0], "type": "access"}),
        "dsar signed request": staff_signed_request,
        "hold notice given again": notice_again,
        "analytics": analytics,
        "retention": lambda: ("control", "GET", "/v1/retention", "/v1/retention", None),
        "control openapi": lambda: ("control", "GET", "/v1/openapi.json", "/v1/openapi.json", None),
        "customer openapi": lambda: ("customer", "GET", "/v1/openapi.json", "/v1/openapi.json",
                                     None),
        "email confirmed": email_confirmed,
        "confirmation mailed": lambda: ("customer", "POST", "/v1/email/confirmation",
                                        "/v1/email/confirmation", None),
        "privacy request by e-mail": lambda: ("customer", "POST", "/v1/privacy/requests",
                                              "/v1/privacy/requests", {
                                                  "type": "access",
                                                  "email": "openapi@example.com"}),
        "privacy request verified": request_verified,
        "signed privacy request": signed_request,
        "dsar opened": lambda: ("control", "POST", "/v1/dsar", "/v1/dsar",
                                {"account_id": account, "type": "portability"}),
        "dsars": lambda: ("control", "GET", "/v1/dsar", "/v1/dsar", None),
        "dsar": one_dsar,
        "dsar extended": dsar("extend", {"reason": "a complex request"}),
        "dsar refused": dsar("refuse", {"reason": "schema check"}),
        "dsar fulfilled": dsar("fulfil", {}),
        "incident opened": lambda: ("control", "POST", "/v1/incidents", "/v1/incidents", {
            "summary": "schema check", "detected_at": time.time() - 60, "accounts": [account]}),
        "incidents": lambda: ("control", "GET", "/v1/incidents", "/v1/incidents", None),
        "authority notified": incident("authority-notified", {"reference": "AUTH-1"}),
        "customers notified": incident("notify-customers", None),
        "incident closed": incident("close", None),
        "policy change": lambda: ("control", "POST", "/v1/policy-changes", "/v1/policy-changes", {
            "effective_at": time.time() + 31 * 86400, "summary": "schema check"}),
        "confirmation": lambda: ("control", "POST", "/v1/accounts/{id}/confirmation",
                                 f"{ids}/confirmation", None),
        "case opened": lambda: ("control", "POST", "/v1/support/cases", "/v1/support/cases", {
            "subject": "schema check", "text": "hello", "account_id": account}),
        "cases": lambda: ("control", "GET", "/v1/support/cases", "/v1/support/cases", None),
        "case": case("GET", "", None),
        "case message": case("POST", "/messages", {"direction": "out", "text": "thanks"}),
        "case resolved": case("POST", "/resolve", None),
        "healthz": lambda: ("control", "GET", "/healthz", "/healthz", None),
        "readyz": lambda: ("control", "GET", "/readyz", "/readyz", None),
        "account": lambda: ("control", "GET", "/v1/accounts/{id}", ids, None),
        "export": lambda: ("control", "GET", "/v1/accounts/{id}/export", f"{ids}/export", None),
        "rectify": lambda: ("control", "POST", "/v1/accounts/{id}/rectify", f"{ids}/rectify",
                            {"email": "openapi@example.com"}),  # the same address: stays confirmed
        "objection": lambda: ("control", "POST", "/v1/accounts/{id}/objections",
                              f"{ids}/objections", {"purpose": "analytics", "objected": False}),
        "erase": erase,
        "control key revoked": revoke_control_key,
        "customer key revoked": revoke_customer_key,
        "audit": lambda: ("control", "GET", "/v1/audit", "/v1/audit?limit=20", None),
        "reconciliation": lambda: ("control", "GET", "/v1/ledger/reconciliation",
                                   "/v1/ledger/reconciliation", None),
        "debug window opened": lambda: ("customer", "POST", "/v1/debug-window", "/v1/debug-window",
                                        {"hours": 1}),
        "debug window closed": lambda: ("customer", "DELETE", "/v1/debug-window", "/v1/debug-window",
                                        None),
        "deposit": lambda: ("control", "POST", "/v1/accounts/{id}/deposits", f"{ids}/deposits", {
            "usd": "1.00", "chain": "tron", "tx_hash": f"0x{key}", "from_address": "TXYZ"}),
        "adjustment": lambda: ("control", "POST", "/v1/accounts/{id}/adjustments",
                               f"{ids}/adjustments", {"usd": "-0.50", "reason": "schema check",
                                                      "idempotency_key": key}),
        "control sender": lambda: ("control", "POST", "/v1/accounts/{id}/senders", f"{ids}/senders",
                                   {"sender": "OPSCHECK"}),
        "control sender removed": lambda: ("control", "DELETE", "/v1/accounts/{id}/senders/{sender}",
                                           f"{ids}/senders/OPSCHECK", None),
        "restrict": lambda: ("control", "POST", "/v1/accounts/{id}/restrict", f"{ids}/restrict",
                             {"restricted": False}),
        "carriers": lambda: ("control", "GET", "/v1/carriers", "/v1/carriers", None),
        "suspend": lambda: ("control", "POST", "/v1/carriers/{name}/suspend",
                            "/v1/carriers/fra-vodafone/suspend", None),
        "resume": lambda: ("control", "POST", "/v1/carriers/{name}/resume",
                           "/v1/carriers/fra-vodafone/resume", None),
        "routing": lambda: ("control", "GET", "/v1/routing", "/v1/routing", None),
        "routing replaced": put_routing,
        "stats": lambda: ("control", "GET", "/v1/stats", "/v1/stats", None),
        "token created": lambda: ("control", "POST", "/v1/tokens", "/v1/tokens",
                                  {"name": f"schema-{key}", "roles": ["viewer"]}),
        "tokens": lambda: ("control", "GET", "/v1/tokens", "/v1/tokens", None),
        "token revoked": revoke_token,
        "hold placed": place_hold,
        "holds": lambda: ("control", "GET", "/v1/holds", "/v1/holds", None),
        "hold released": release_hold,
        "customer sender": lambda: ("customer", "POST", "/v1/senders", "/v1/senders",
                                    {"sender": "MINE"}),
        "customer sender removed": lambda: ("customer", "DELETE", "/v1/senders/{sender}",
                                            "/v1/senders/MINE", None),
    }


ANSWERED = ["deposit", "adjustment", "control sender", "control sender removed", "restrict", "carriers", "suspend", "resume",
            "routing", "routing replaced", "stats", "token created", "tokens", "token revoked",
            "hold placed", "holds", "hold released", "customer sender", "customer sender removed",
            "healthz", "readyz", "account", "export", "rectify", "objection", "erase",
            "control key revoked", "customer key revoked", "audit", "reconciliation",
            "debug window opened", "debug window closed", "dsar opened", "dsars", "dsar",
            "dsar extended", "dsar refused", "dsar fulfilled", "incident opened", "incidents",
            "authority notified", "customers notified", "incident closed", "policy change",
            "confirmation", "case opened", "cases", "case", "case message", "case resolved",
            "hold notice given again", "analytics", "retention", "control openapi",
            "customer openapi", "email confirmed", "confirmation mailed", "privacy request by e-mail",
            "privacy request verified", "signed privacy request", "dsar challenge",
            "dsar signed request"]


@pytest.mark.parametrize("case", ANSWERED)
def test_each_answer_automation_parses_is_documented_and_the_live_answer_meets_it(world, case):
    """The route's success answer is documented with its fields (not a bare ``{"type": "object"}``),
    and what the running server answers validates against that schema."""
    app, method, route, target, body = _answers(world)[case]()
    status, _, answer = world[app].request(method, target, body)
    assert 200 <= status < 300, (case, status, answer)  # the success answer is what is checked
    doc = world["docs"][app]
    documented = doc["paths"][route][method.lower()]["responses"]
    assert str(status) in documented, (case, status, answer)
    schema = inline(documented[str(status)]["content"]["application/json"]["schema"],
                    doc["components"]["schemas"])
    assert schema.get("properties"), f"{method} {route} answers {answer!r:.200} but documents {schema}"
    assert mismatches(schema, answer) == [], (case, answer)
