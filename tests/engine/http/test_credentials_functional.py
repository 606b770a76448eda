"""Credential lifecycle over real sockets: API keys (create, list, revoke) on the customer API and the
control port, closed and restricted accounts, the webhook secret at account creation and after rotation,
operator tokens (unique names, list, revoke), failed-login limits and group-committed audit writes."""

from __future__ import annotations

import threading
import time

import pytest

from engine import Engine, apikeys
from engine.errors import AuthError, UnknownApiKey
from engine.http.webhooks import SIGNATURE_HEADER
from tests.engine.http.conftest import (
    DE_NUMBER,
    Client,
    Receiver,
    funded_account,
    overrides,
    start_engine,
    wait_for,
)

MSG = {"to": DE_NUMBER, "from": "ACME", "body": "hello"}
SETTINGS = {"webhook_secret_overlap_seconds": 0, "control_auth_failures_per_minute": 5}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    engine = start_engine(tmp_path_factory.mktemp("cred"), **SETTINGS)
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def tokens(engine):
    store = engine.http.ctx.tokens
    return {"operator": store.create("ops", {"operator"}),
            "privacy": store.create("dpo", {"privacy"}),
            "all": store.create("root", {"viewer", "operator", "privacy"})}


@pytest.fixture(scope="module")
def control(engine, tokens):
    return Client(engine.http.control_port, tokens["operator"])


def _customer(engine, account) -> Client:
    return Client(engine.http.customer_port, account.api_key)


# --- API keys on the customer API --------------------------------------------------------------------


def test_a_customer_creates_lists_and_revokes_keys_and_a_revoked_key_is_refused_at_once(engine):
    account = funded_account(engine, "keys@example.com")
    api = _customer(engine, account)
    status, _, new = api.request("POST", "/v1/keys")
    assert status == 201 and set(new) == {"id", "api_key", "hint"}
    assert new["api_key"].startswith("sk_live_") and new["hint"].endswith(new["api_key"][-4:])
    second = Client(engine.http.customer_port, new["api_key"])
    assert second.request("POST", "/v1/messages", MSG)[0] == 202
    _, _, listed = api.request("GET", "/v1/keys")
    assert [k["id"] for k in listed["keys"]][1] == new["id"] and len(listed["keys"]) == 2
    assert all(set(k) == {"id", "hint", "created_at", "last_used_at", "revoked_at"}
               for k in listed["keys"])
    assert new["api_key"] not in str(listed)

    status, _, revoked = api.request("DELETE", f"/v1/keys/{new['id']}")
    assert status == 200 and revoked["revoked_at"] is not None
    assert second.request("GET", "/v1/balance")[0] == 401
    assert second.request("POST", "/v1/messages", MSG)[0] == 401
    with pytest.raises(AuthError):
        engine.submit(new["api_key"], DE_NUMBER, "ACME", "hi")
    _, _, listed = api.request("GET", "/v1/keys")
    assert [(k["id"], k["revoked_at"] is not None) for k in listed["keys"]] == [
        (listed["keys"][0]["id"], False), (new["id"], True)]


def test_the_last_key_cannot_be_revoked_by_the_customer_and_unknown_or_malformed_ids_are_404(engine):
    account = funded_account(engine, "last@example.com")
    api = _customer(engine, account)
    (only,) = api.request("GET", "/v1/keys")[2]["keys"]
    status, _, body = api.request("DELETE", f"/v1/keys/{only['id']}")
    assert status == 409 and body["error"]["code"] == "last_api_key"
    assert api.request("DELETE", "/v1/keys/key_" + "0" * 24)[2]["error"]["code"] == "unknown_api_key"
    for bad in ("x", "key_" + "0" * 500, "key_ZZZ", "%20"):
        assert api.request("DELETE", f"/v1/keys/{bad}")[0] == 404
    assert api.request("GET", "/v1/balance")[0] == 200


def test_a_key_shows_when_it_was_last_used(engine):
    account = funded_account(engine, "used@example.com")
    api = _customer(engine, account)
    before = time.time()
    api.request("GET", "/v1/balance")

    def used():
        (key,) = api.request("GET", "/v1/keys")[2]["keys"]
        return key["last_used_at"] is not None and key["last_used_at"] >= before - 1 and key

    key = wait_for(used, "last_used_at")
    assert key["created_at"] <= key["last_used_at"]


def test_operators_manage_an_accounts_keys_on_the_control_port_and_may_revoke_the_last(engine,
                                                                                       control):
    account = funded_account(engine, "opkeys@example.com")
    status, _, new = control.request("POST", f"/v1/accounts/{account.id}/keys")
    assert status == 201 and new["api_key"].startswith("sk_live_")
    _, _, listed = control.request("GET", f"/v1/accounts/{account.id}/keys")
    assert {k["id"] for k in listed["keys"]} >= {new["id"]} and len(listed["keys"]) == 2
    for key in listed["keys"]:
        assert control.request("DELETE", f"/v1/accounts/{account.id}/keys/{key['id']}")[0] == 200
    assert _customer(engine, account).request("GET", "/v1/balance")[0] == 401
    assert control.request("GET", "/v1/accounts/acc_0000000000000000/keys")[0] == 404
    assert control.request("DELETE", f"/v1/accounts/{account.id}/keys/bogus")[0] == 404


def test_the_embedding_api_creates_lists_and_revokes_keys(engine):
    account = funded_account(engine, "embedkeys@example.com")
    new = engine.create_api_key(account.id)
    assert engine.submit(new.api_key, DE_NUMBER, "ACME", "hi").message_id
    assert [k["id"] for k in engine.api_keys(account.id)][-1] == new.id
    engine.revoke_api_key(account.id, new.id)
    with pytest.raises(AuthError):
        engine.submit(new.api_key, DE_NUMBER, "ACME", "hi")
    with pytest.raises(UnknownApiKey):
        engine.revoke_api_key(account.id, new.id)


def test_a_revoked_key_names_its_account_for_alerts_while_kept_and_survives_a_restart(tmp_path):
    running = start_engine(tmp_path, **SETTINGS)
    try:
        account = funded_account(running, "leaked@example.com")
        new = running.create_api_key(account.id)
        digest = apikeys.digest(new.api_key)
        assert running.credentials.revoked_owner(digest) is None  # an active key is not "revoked"
        running.revoke_api_key(account.id, new.id)
        assert running.credentials.revoked_owner(digest) == account.id
        assert running.credentials.revoked_owner(apikeys.digest(apikeys.new_api_key())) is None
    finally:
        running.stop()
    again = start_engine(tmp_path, **SETTINGS)  # rebuilt from the key store at start
    try:
        assert again.credentials.revoked_owner(digest) == account.id
        # kept as long as the key's metadata (90 days after revocation), then it names no one
        assert again.credentials.revoked_owner(digest, now=time.time() + 91 * 86400) is None
    finally:
        again.stop()


# --- closed and restricted accounts ------------------------------------------------------------------


def test_a_closed_accounts_keys_are_refused_everywhere(engine, control):
    account = funded_account(engine, "closed@example.com")
    api = _customer(engine, account)
    _, _, accepted = api.request("POST", "/v1/messages", MSG)
    assert control.request("POST", f"/v1/accounts/{account.id}/close", {})[0] == 200
    for method, path, body in (("GET", "/v1/balance", None),
                               ("GET", f"/v1/messages/{accepted['id']}", None),
                               ("GET", "/v1/keys", None),
                               ("PUT", "/v1/webhook", {"url": "https://hooks.example.com/x"}),
                               ("POST", "/v1/webhook/secret", None),
                               ("POST", "/v1/debug-window", {"hours": 1}),
                               ("POST", "/v1/messages", MSG)):
        status, _, answer = api.request(method, path, body)
        assert status == 401 and answer["error"]["code"] == "unauthorized", (path, answer)


def test_a_closed_accounts_keys_stay_refused_after_a_restart(tmp_path):
    engine = Engine.start(tmp_path / "data", overrides=overrides())
    try:
        account = funded_account(engine, "gone@example.com")
        engine.close_account(account.id)
    finally:
        engine.stop()
    engine = Engine.start(tmp_path / "data", overrides=overrides())
    try:
        with pytest.raises(AuthError):
            engine.account_id_for_key(account.api_key)
        with pytest.raises(AuthError):
            engine.submit(account.api_key, DE_NUMBER, "ACME", "hi")
    finally:
        engine.stop()


def test_a_restricted_account_can_read_but_not_send_or_change_settings(engine, control, tokens):
    account = funded_account(engine, "restricted@example.com")
    api = _customer(engine, account)
    _, _, accepted = api.request("POST", "/v1/messages", MSG)
    _, _, extra = api.request("POST", "/v1/keys")
    privacy = Client(engine.http.control_port, tokens["privacy"])
    assert privacy.request("POST", f"/v1/accounts/{account.id}/restrict",
                           {"restricted": True})[0] == 200
    for path in ("/v1/balance", f"/v1/messages/{accepted['id']}", "/v1/keys"):
        assert api.request("GET", path)[0] == 200, path
    for method, path, body in (("POST", "/v1/messages", MSG),
                               ("PUT", "/v1/webhook", {"url": "https://hooks.example.com/x"}),
                               ("POST", "/v1/webhook/secret", None),
                               ("POST", "/v1/senders", {"sender": "OTHER"}),
                               ("POST", "/v1/debug-window", {"hours": 1}),
                               ("POST", "/v1/keys", None)):
        status, _, answer = api.request(method, path, body)
        assert status == 403 and answer["error"]["code"] == "account_restricted", (path, answer)
    # what only reduces processing stays possible: revoking a (leaked) key, ending a debug window
    assert api.request("DELETE", f"/v1/keys/{extra['id']}")[0] == 200
    assert api.request("DELETE", "/v1/debug-window")[0] == 200
    assert engine.account(account.id).webhook_url is None and "OTHER" not in engine.account(
        account.id).senders


# --- webhook secrets -----------------------------------------------------------------------------------


def test_an_account_created_on_the_control_port_gets_its_webhook_secret_once(engine, control):
    status, _, created = control.request("POST", "/v1/accounts", {"email": "ctl@example.com"})
    assert status == 201 and created["webhook_secret"].startswith("whsec_")
    assert engine.account(created["id"]).webhook_secrets == [created["webhook_secret"]]
    assert created["webhook_secret"] not in str(control.request("GET",
                                                                f"/v1/accounts/{created['id']}"))


def test_a_rotated_out_secret_stops_signing_once_the_overlap_is_over(engine):
    """This engine's overlap is 0 s: right after a rotation only the new secret signs."""
    receiver = Receiver()
    try:
        account = funded_account(engine, "overlap@example.com")
        api = _customer(engine, account)
        api.request("PUT", "/v1/webhook", {"url": receiver.url, "receipt_statuses": ["delivered"]})
        _, _, rotated = api.request("POST", "/v1/webhook/secret")
        time.sleep(1.1)  # the webhook layer caches account settings for one second
        api.request("POST", "/v1/messages", MSG)
        headers, _, _ = receiver.next()
        assert headers[SIGNATURE_HEADER].count("v1=") == 1
    finally:
        receiver.close()
    record = engine.account(account.id)
    assert record.webhook_secrets[0] == rotated["secret"] and len(record.webhook_secrets) == 2
    assert engine.webhook_signing_secrets(record) == [rotated["secret"]]


def test_during_the_overlap_both_secrets_sign_and_after_it_only_the_new_one(tmp_path):
    engine = Engine.start(tmp_path / "data", overrides=overrides())  # default overlap: 24 h
    try:
        account = funded_account(engine, "day@example.com")
        new = engine.rotate_webhook_secret(account.id)
        record = engine.account(account.id)
        at = record.webhook_secret_rotated_at
        assert engine.webhook_signing_secrets(record, now=at + 86399) == [new, account.webhook_secret]
        assert engine.webhook_signing_secrets(record, now=at + 86401) == [new]
    finally:
        engine.stop()


# --- operator tokens ---------------------------------------------------------------------------------


def test_operator_tokens_are_listed_without_secrets_and_names_are_unique_and_not_reserved(
        engine, tokens):
    root = Client(engine.http.control_port, tokens["all"])
    _, _, listed = root.request("GET", "/v1/tokens")
    assert {"ops", "dpo", "root"} <= {t["name"] for t in listed["tokens"]}
    assert all(set(t) == {"name", "roles", "created_at", "last_used_at"} for t in listed["tokens"])
    assert not any(tok in str(listed) for tok in tokens.values())
    status, _, body = root.request("POST", "/v1/tokens", {"name": "ops", "roles": ["viewer"]})
    assert status == 409 and body["error"]["code"] == "token_name_taken"
    for name in ("system:erasure", "SYSTEM:x", "", "a" * 65, "bad name"):
        status, _, body = root.request("POST", "/v1/tokens", {"name": name, "roles": ["viewer"]})
        assert status == 422 and body["error"]["code"] == "invalid_token_name", name


def test_a_revoked_operator_token_is_refused_from_then_on(engine, tokens):
    root = Client(engine.http.control_port, tokens["all"])
    _, _, created = root.request("POST", "/v1/tokens", {"name": "temp", "roles": ["viewer"]})
    temp = Client(engine.http.control_port, created["token"])
    assert temp.request("GET", "/v1/stats")[0] == 200
    status, _, revoked = root.request("DELETE", "/v1/tokens/temp")
    assert status == 200 and revoked == {"name": "temp", "revoked": True}
    assert temp.request("GET", "/v1/stats")[0] == 401
    assert root.request("DELETE", "/v1/tokens/temp")[0] == 404
    assert "temp" not in {t["name"] for t in root.request("GET", "/v1/tokens")[2]["tokens"]}


def test_an_operator_cannot_revoke_a_token_holding_a_role_it_lacks(engine, control):
    status, _, body = control.request("DELETE", "/v1/tokens/dpo")
    assert status == 403 and body["error"]["code"] == "forbidden"


# --- the control port's failed logins and audit writes ---------------------------------------------------


def test_failed_logins_are_limited_per_source_address(engine, tokens):
    bad = Client(engine.http.control_port, "op_wrong", source="127.0.0.3")
    assert [bad.request("GET", "/v1/stats")[0] for _ in range(5)] == [401] * 5
    status, headers, body = bad.request("GET", "/v1/stats")
    assert status == 429 and body["error"]["code"] == "too_many_failed_logins"
    assert int(headers["Retry-After"]) >= 1
    good_token_same_address = Client(engine.http.control_port, tokens["all"], source="127.0.0.3")
    assert good_token_same_address.request("GET", "/v1/stats")[0] == 429
    assert Client(engine.http.control_port, tokens["all"], source="127.0.0.4").request(
        "GET", "/v1/stats")[0] == 200
    assert Client(engine.http.control_port, source="127.0.0.3").request("GET", "/healthz")[0] == 200


def test_audit_writes_of_concurrent_requests_share_group_commits(engine, tokens):
    ctx = engine.http.ctx
    entries, commits = len(ctx.audit), ctx.committer.commits
    viewer = Client(engine.http.control_port, tokens["privacy"])  # 403 on /v1/stats: audited
    start = threading.Barrier(16)
    statuses: list[int] = []

    def one():
        start.wait()
        statuses.append(viewer.request("GET", "/v1/stats")[0])

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [403] * 16
    assert len(ctx.audit) - entries == 16  # every request is audited...
    assert 1 <= ctx.committer.commits - commits < 16  # ...in fewer transactions (fsyncs)
