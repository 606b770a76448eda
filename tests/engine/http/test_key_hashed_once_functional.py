"""The customer API hashes a request's API key once (issue 13): the account lookup, the rate limiter's key
and the engine's submit share one digest (``engine.apikeys.PresentedKey``). Before, a submit hashed the
key three times (the middleware's lookup, the limiter's key, the engine's ``_session_for_key``), ~8,500
instructions each. The embedding API still takes the key itself, and never a bare digest."""

from __future__ import annotations

import threading

import pytest

from engine import apikeys
from engine.errors import AuthError, InputError
from tests.engine.http.conftest import DE_NUMBER, Client, funded_account


@pytest.fixture
def hashes(monkeypatch):
    """The API keys hashed while the test runs (a lock: the HTTP thread and the engine's may hash)."""
    seen: list[str] = []
    lock = threading.Lock()
    real = apikeys.digest

    def counting(api_key: str) -> bytes:
        with lock:
            seen.append(api_key)
        return real(api_key)

    monkeypatch.setattr(apikeys, "digest", counting)
    return seen


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/v1/messages", {"to": DE_NUMBER, "from": "ACME", "body": "hashed once"}),
    ("POST", "/v1/messages/batch",
     {"messages": [{"to": DE_NUMBER, "from": "ACME", "body": f"batch {n}"} for n in range(3)]}),
    ("GET", "/v1/balance", None),
])
def test_a_customer_request_hashes_its_api_key_once(running, hashes, method, path, body):
    account = funded_account(running, email=f"once-{path.replace('/', '-')}@example.com")
    api = Client(running.http.customer_port, account.api_key)
    hashes.clear()
    status, _, answer = api.request(method, path, body)
    assert status in (200, 202), answer
    assert hashes == [account.api_key]


def test_an_unknown_key_is_still_refused_and_still_hashed_once(running, hashes):
    status, headers, answer = Client(running.http.customer_port, "sk_live_" + "x" * 43).request(
        "POST", "/v1/messages", {"to": DE_NUMBER, "from": "ACME", "body": "who"})
    assert status == 401 and answer["error"]["code"] == "unauthorized", answer
    assert "RateLimit-Limit" in headers
    assert len(hashes) == 1


def test_the_embedding_api_takes_the_key_or_a_presented_key_but_not_a_digest(running):
    account = funded_account(running, email="embedding-key@example.com")
    assert running.submit(account.api_key, DE_NUMBER, "ACME", "as a string").message_id
    presented = apikeys.PresentedKey(account.api_key)
    assert running.submit(presented, DE_NUMBER, "ACME", "presented").message_id
    assert running.account_id_for_key(presented) == running.account_id_for_key(account.api_key)
    with pytest.raises(InputError):
        running.submit(apikeys.digest(account.api_key), DE_NUMBER, "ACME", "a bare digest")
    with pytest.raises(AuthError):
        running.submit(apikeys.PresentedKey(account.api_key + "x"), DE_NUMBER, "ACME", "wrong")
