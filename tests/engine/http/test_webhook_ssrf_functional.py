"""The SSRF guard at the customer API: internal destinations are refused with 422 when they are given,
not accepted and silently dropped later (an engine with the default ``webhook_allow_private_networks``)."""

from __future__ import annotations

import pytest

from engine.errors import DestinationNotAllowed, InvalidUrl
from tests.engine.http.conftest import DE_NUMBER, Client, funded_account, start_engine

MSG = {"to": DE_NUMBER, "from": "ACME", "body": "hello"}
INTERNAL = [
    "http://127.0.0.1:8081/v1/accounts", "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/",
    "http://2130706433/", "http://0x7f.0.0.1/", "http://0177.0.0.1/", "http://127.1/",
    "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.8/hook",
    "http://localhost:8081/", "http://hooks.example.com./hook", "http://internal.example/hook",
]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    engine = start_engine(tmp_path_factory.mktemp("ssrf"), webhook_allow_private_networks=False)

    async def resolve(host):  # the DNS of this test: one name points into the private network
        if host == "internal.example":
            return ["10.1.2.3"]
        return ["93.184.216.34"]

    engine.http.ctx.destinations.resolve = resolve
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def api(guarded):
    return Client(guarded.http.customer_port, funded_account(guarded).api_key)


@pytest.mark.parametrize("url", INTERNAL)
def test_a_webhook_url_leading_to_an_internal_address_is_refused_with_422(api, url):
    status, _, body = api.request("PUT", "/v1/webhook", {"url": url})
    assert status == 422, body
    assert body["error"]["code"] in ("destination_not_allowed", "invalid_url")


@pytest.mark.parametrize("url", INTERNAL)
def test_a_message_callback_url_leading_to_an_internal_address_is_refused_with_422(api, url):
    status, _, body = api.request("POST", "/v1/messages", {**MSG, "callback_url": url})
    assert status == 422, body
    assert body["error"]["code"] in ("destination_not_allowed", "invalid_url")


def test_a_public_webhook_url_is_accepted(api):
    status, _, body = api.request("PUT", "/v1/webhook", {"url": "https://hooks.example.com/in"})
    assert status == 200 and body["url"] == "https://hooks.example.com/in"
    status, _, _ = api.request("POST", "/v1/messages",
                               {**MSG, "callback_url": "https://hooks.example.com/in"})
    assert status == 202


def test_the_embedding_api_refuses_internal_destinations_too(guarded):
    account = funded_account(guarded, "embed@example.com")
    with pytest.raises(DestinationNotAllowed):
        guarded.set_webhook(account.id, "http://[::1]:8081/")
    with pytest.raises(DestinationNotAllowed):
        guarded.submit(account.api_key, DE_NUMBER, "ACME", "hi", callback_url="http://127.1/")


@pytest.mark.parametrize("url", ["https://user:secret@hooks.example.com/in", "https://user@hooks.example.com/in",
                                 "https://:secret@hooks.example.com/in"])
def test_a_url_with_credentials_is_refused_since_they_would_never_be_sent(api, guarded, url):
    """The webhook client never sends user:password@ (webhooks are authenticated by their signature):
    a URL carrying them is refused when it is given, not kept and shown with its password."""
    for method, path, body in (("PUT", "/v1/webhook", {"url": url}),
                               ("POST", "/v1/messages", {**MSG, "callback_url": url})):
        status, _, answer = api.request(method, path, body)
        assert status == 422 and answer["error"]["code"] == "invalid_url", answer
        assert "secret" not in answer["error"]["message"]
    account = funded_account(guarded, "creds@example.com")
    with pytest.raises(InvalidUrl):
        guarded.set_webhook(account.id, url)


def test_an_at_sign_after_the_host_is_no_credential(api):
    url = "https://hooks.example.com/in?contact=ops@example.com"
    status, _, body = api.request("PUT", "/v1/webhook", {"url": url})
    assert status == 200 and body["url"] == url


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/batch"])
def test_a_replay_gets_the_stored_answer_though_the_callback_host_now_resolves_privately(
        api, guarded, path):
    """Idempotency means the same request gets the same answer: the body (with its callback URL's DNS
    check) was validated before the Idempotency-Key was looked up, so a replay whose callback host had
    since moved to a private address got 422 instead of the stored 202."""
    import time

    destinations = guarded.http.ctx.destinations
    host = f"moving-{path.count('/')}.example"
    first_resolve = destinations.resolve
    moved = {"now": False}

    async def resolve(name):
        if name == host and moved["now"]:
            return ["10.9.8.7"]
        return await first_resolve(name)

    destinations.resolve = resolve
    try:
        msg = {**MSG, "callback_url": f"https://{host}/hook"}
        body = msg if path == "/v1/messages" else {"messages": [msg]}
        headers = {"Idempotency-Key": f"moving-{time.time_ns()}"}
        first = api.request("POST", path, body, headers=headers)
        assert first[0] in (200, 202), first
        moved["now"] = True
        destinations._verdicts.clear()  # the verdict cache's minute has passed
        fresh = api.request("POST", path, body)  # a new request is judged by the DNS of now
        refused = fresh[2] if path == "/v1/messages" else fresh[2]["results"][0]
        assert refused["error"]["code"] == "destination_not_allowed", fresh
        again = api.request("POST", path, body, headers=headers)
        assert (again[0], again[2]) == (first[0], first[2])
        assert again[1].get("Idempotent-Replayed") == "true"
    finally:
        destinations.resolve = first_resolve
