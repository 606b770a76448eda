"""The published OpenAPI documents say what the live servers answer (README: "Customer HTTP API",
"Control port"): every header a document promises on a success is in the live answer, every content
type a route answers with is documented for it, and the query parameters the README gives a route are
in its document. Clients are generated from these documents, so a promise the server does not keep (or
a parameter it reads but does not publish) breaks them."""

from __future__ import annotations

import pytest

from tests.engine.http.conftest import Client, funded_account, wait_for


@pytest.fixture(scope="module")
def world(running):
    account = funded_account(running, email="openapi@example.com")
    token = running.http.ctx.tokens.create("openapi-live", {"viewer", "operator", "privacy"})
    customer = Client(running.http.customer_port, account.api_key)
    control = Client(running.http.control_port, token)
    docs = {name: client.request("GET", "/v1/openapi.json", token="")[2]
            for name, client in (("customer", customer), ("control", control))}
    return {"account": account, "customer": customer, "control": control, "docs": docs}


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
