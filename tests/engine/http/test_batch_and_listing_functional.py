"""The batch endpoint, the message list, client_ref and the webhook view, through real sockets."""

from __future__ import annotations

import time

import pytest

from tests.engine.http.conftest import DE_NUMBER, Client, funded_account

MSG = {"to": DE_NUMBER, "from": "ACME", "body": "batch member"}


@pytest.fixture(scope="module")
def account(running):
    return funded_account(running, "batch@example.com")


@pytest.fixture
def api(running, account):
    return Client(running.http.customer_port, account.api_key)


def test_a_batch_answers_each_message_in_order_with_its_own_result(api):
    messages = [MSG, {**MSG, "to": "+1"}, {**MSG, "from": "NOPE"}, {**MSG, "surprise": 1},
                {**MSG, "client_ref": "order-4"}]
    status, _, answer = api.request("POST", "/v1/messages/batch", {"messages": messages})
    assert status == 200 and (answer["accepted"], answer["refused"]) == (2, 3)
    first, bad_number, bad_sender, unknown_field, referenced = answer["results"]
    assert first["id"].startswith("msg_") and first["status"] == "accepted" and "error" not in first
    assert bad_number == {"error": {"code": "invalid_number", "message": bad_number["error"]["message"]}}
    assert bad_sender["error"]["code"] == "unknown_sender"
    assert unknown_field["error"]["code"] == "unknown_field"
    assert referenced["client_ref"] == "order-4" and referenced["id"] != first["id"]
    for result in (first, referenced):  # each accepted one is a real, durable message
        assert api.request("GET", f"/v1/messages/{result['id']}")[0] == 200


def test_each_refused_entry_says_where_it_is_in_the_batch(api):
    """Each entry is decoded on its own; its error must still name its place in the body the client
    sent (before: "request body must be a JSON object" for an entry that is not one, `$.to` for a bad
    number, and no place at all for an unknown field)."""
    messages = [MSG, 7, {**MSG, "to": "0"}, {**MSG, "surprise": 1}, {"from": "ACME", "body": "x"},
                {**MSG, "client_ref": 5}]
    status, _, answer = api.request("POST", "/v1/messages/batch", {"messages": messages})
    assert status == 200 and (answer["accepted"], answer["refused"]) == (1, 5)
    errors = [r["error"] for r in answer["results"][1:]]
    assert [e["code"] for e in errors] == ["invalid_type", "invalid_number", "unknown_field",
                                           "missing_field", "invalid_type"]
    assert errors[0]["message"] == "each entry of `messages` must be a JSON object - at `$.messages[1]`"
    assert errors[1]["message"].endswith(" - at `$.messages[2].to`")
    assert errors[2]["message"] == "Object contains unknown field `surprise` - at `$.messages[3]`"
    assert errors[3]["message"].endswith("`to` - at `$.messages[4]`")
    assert errors[4]["message"].endswith(" - at `$.messages[5].client_ref`")
    single = api.request("POST", "/v1/messages", {**MSG, "to": "0"})[2]["error"]["message"]
    assert single.endswith(" - at `$.to`")  # a single submit's place is unchanged


def test_a_batch_with_an_idempotency_key_is_sent_once_and_replayed_whole(api):
    body = {"messages": [MSG, {**MSG, "client_ref": "again"}]}
    headers = {"Idempotency-Key": f"batch-{time.time_ns()}"}
    first = api.request("POST", "/v1/messages/batch", body, headers=headers)
    again = api.request("POST", "/v1/messages/batch", body, headers=headers)
    assert first[0] == again[0] == 200 and first[2] == again[2]
    assert again[1].get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first[1]
    other = api.request("POST", "/v1/messages/batch", {"messages": [MSG]}, headers=headers)
    assert other[0] == 422 and other[2]["error"]["code"] == "idempotency_key_reused"


def test_a_batch_beyond_1000_messages_or_empty_is_refused_whole(api):
    status, _, body = api.request("POST", "/v1/messages/batch", {"messages": []})
    assert status == 422 and body["error"]["code"] == "invalid_batch"
    big = {"messages": [{"to": "+4", "from": "A", "body": "x"}] * 1001}
    status, _, body = api.request("POST", "/v1/messages/batch", big)
    assert status == 422 and body["error"]["code"] == "invalid_batch"


def test_client_ref_is_echoed_by_the_submit_the_status_and_the_list(api):
    status, _, accepted = api.request("POST", "/v1/messages", {**MSG, "client_ref": "order-4711"})
    assert status == 202 and accepted["client_ref"] == "order-4711"
    _, _, view = api.request("GET", f"/v1/messages/{accepted['id']}")
    assert view["client_ref"] == "order-4711" and view["id"] == accepted["id"]
    assert view["from"] == "ACME" and "message_id" not in view and "account_id" not in view
    too_long = api.request("POST", "/v1/messages", {**MSG, "client_ref": "x" * 65})
    assert too_long[0] == 422 and too_long[2]["error"]["code"] == "invalid_client_ref"


def test_the_message_list_pages_newest_first_and_filters_by_status_and_time(running):
    acc = funded_account(running, "lister@example.com")
    api = Client(running.http.customer_port, acc.api_key)
    before = time.time()
    ids = [api.request("POST", "/v1/messages", {**MSG, "to": to})[2]["id"]
           for to in (DE_NUMBER, "+6591234567", "+5511912345678") * 3]  # all three POPs
    seen, cursor = [], None
    while True:
        query = "/v1/messages?limit=4" + (f"&cursor={cursor}" if cursor else "")
        status, _, page = api.request("GET", query)
        assert status == 200 and len(page["messages"]) <= 4
        seen += [m["id"] for m in page["messages"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)  # every message once, newest first
    # the status filter: the default carriers fail or reject a few per cent of messages at random, so
    # which are failed or rejected is read first; a final status never changes, so each of them must be
    # in the filtered list, and the list holds nothing else
    _, _, unfiltered = api.request("GET", "/v1/messages?limit=200")
    finals = {m["id"] for m in unfiltered["messages"] if m["status"] in ("failed", "rejected")}
    _, _, chosen = api.request("GET", "/v1/messages?status=failed,rejected&limit=200")
    assert all(m["status"] in ("failed", "rejected") for m in chosen["messages"])
    assert finals <= {m["id"] for m in chosen["messages"]} <= set(ids)
    assert chosen["next_cursor"] is None
    _, _, later = api.request("GET", f"/v1/messages?since={time.time() + 60}")
    assert later["messages"] == []
    _, _, window = api.request("GET", f"/v1/messages?since={before - 1}&until={time.time() + 1}"
                                      "&limit=200")
    assert {m["id"] for m in window["messages"]} == set(ids)
    other = funded_account(running, "other-lister@example.com")
    _, _, theirs = Client(running.http.customer_port, other.api_key).request("GET", "/v1/messages")
    assert theirs["messages"] == []  # never another account's
    assert api.request("GET", "/v1/messages?limit=0")[0] == 400
    assert api.request("GET", "/v1/messages?status=lost")[0] == 400


def test_the_webhook_view_shows_settings_batching_and_state(api):
    status, _, view = api.request("GET", "/v1/webhook")
    assert status == 200 and view["state"] in ("none", "active")
    status, _, view = api.request("PUT", "/v1/webhook", {
        "url": "https://hooks.example.com/sms", "receipt_statuses": ["delivered", "failed"],
        "batching": {"max_events": 50, "max_wait_ms": 200}})
    assert status == 200
    assert view == {"url": "https://hooks.example.com/sms", "state": "active",
                    "receipt_statuses": ["delivered", "failed"],
                    "batching": {"max_events": 50, "max_wait_ms": 200}, "disabled_at": None,
                    "disabled_reason": None, "backlog": view["backlog"],
                    "callback_backlog": view["callback_backlog"]}
    assert api.request("GET", "/v1/webhook")[2] == view
    bad = api.request("PUT", "/v1/webhook", {"url": None, "batching": {"max_events": 101}})
    assert bad[0] == 422 and bad[2]["error"]["code"] == "invalid_batching"
    api.request("PUT", "/v1/webhook", {"url": None})


def test_a_full_batch_of_1000_realistic_messages_fits_and_each_is_accepted(running):
    api = Client(running.http.customer_port, funded_account(running, "big@example.com", "500.00").api_key)
    messages = [{**MSG, "body": f"Your verification code is {n:06d}. It expires in 10 minutes.",
                 "client_ref": f"order-{n:08d}"} for n in range(1000)]
    status, _, answer = api.request("POST", "/v1/messages/batch", {"messages": messages})
    assert status == 200 and answer["accepted"] == 1000 and answer["refused"] == 0
    assert [r["client_ref"] for r in answer["results"]] == [m["client_ref"] for m in messages]
    assert len({r["id"] for r in answer["results"]}) == 1000


def test_other_routes_keep_their_smaller_body_limit(api):
    status, _, body = api.request("POST", "/v1/messages", {**MSG, "body": "x" * 70_000})
    assert status == 413 and body["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("cursor", ["msg_%20%20" + "0" * 30, "msg_" + "0" * 30 + "%20%20"])
def test_a_cursor_that_is_not_a_message_id_is_a_400_not_a_500(api, cursor):
    """bytes.fromhex skips spaces, so such a cursor passed the listing's check and failed deeper (500)."""
    status, _, body = api.request("GET", f"/v1/messages?cursor={cursor}")
    assert status == 400 and body["error"]["code"] == "invalid_query"


@pytest.mark.parametrize("idempotent", [False, True])
def test_a_batch_entry_failing_with_an_unexpected_error_gets_its_own_result(running, monkeypatch,
                                                                           idempotent):
    """An entry whose future failed with an error that is not the engine's own (here: the bridge's
    conversion of its accepted reply raises, a fault injected for one destination country) answered the
    whole batch 500, though the others were accepted and billed: a retry without a key sent them twice,
    one with a key got 409 outcome unknown. Each entry now gets its own result."""
    from engine import _engine

    real = _engine._accepted

    def faulty(reply):
        if reply.country == "SG":
            raise RuntimeError("injected conversion fault")
        return real(reply)

    monkeypatch.setattr(_engine, "_accepted", faulty)
    api = Client(running.http.customer_port,
                 funded_account(running, f"faulty-{idempotent}@example.com").api_key)
    body = {"messages": [MSG, {**MSG, "to": "+6591234567"}, {**MSG, "client_ref": "kept"}]}
    headers = {"Idempotency-Key": f"faulty-{time.time_ns()}"} if idempotent else {}
    status, _, answer = api.request("POST", "/v1/messages/batch", body, headers=headers)
    assert status == 200, answer
    first, failed, third = answer["results"]
    assert failed == {"error": {"code": "internal_error", "message": failed["error"]["message"]}}
    assert "outcome" in failed["error"]["message"]
    assert (answer["accepted"], answer["refused"]) == (2, 1)
    for result in (first, third):
        assert result["status"] == "accepted"
        assert api.request("GET", f"/v1/messages/{result['id']}")[0] == 200
    if idempotent:  # the answer is kept: a retry is a replay, nothing is sent twice
        again = api.request("POST", "/v1/messages/batch", body, headers=headers)
        assert again[0] == 200 and again[2] == answer
        assert again[1].get("Idempotent-Replayed") == "true"


def test_since_and_until_agree_with_the_submitted_at_the_list_shows(running):
    """The filters used the time inside the message id (made in the session, later, to the ms) while
    submitted_at came from another clock read (when the request arrived, to the µs): with each listed
    message's submitted_at as a bound, a message submitted before it was still listed by since= (and left
    out by until=). Each bound now splits the list exactly as the shown submitted_at values do."""
    api = Client(running.http.customer_port, funded_account(running, "bounds@example.com").api_key)
    messages = [{**MSG, "client_ref": f"bound-{n}"} for n in range(20)]
    assert api.request("POST", "/v1/messages/batch", {"messages": messages})[2]["accepted"] == 20
    shown = {m["id"]: m["submitted_at"]
             for m in api.request("GET", "/v1/messages?limit=200")[2]["messages"]}
    assert len(shown) == 20
    for bound in sorted(set(shown.values())):
        since = api.request("GET", f"/v1/messages?limit=200&since={bound!r}")[2]["messages"]
        until = api.request("GET", f"/v1/messages?limit=200&until={bound!r}")[2]["messages"]
        assert {m["id"] for m in since} == {i for i, at in shown.items() if at >= bound}
        assert {m["id"] for m in until} == {i for i, at in shown.items() if at < bound}


@pytest.fixture
def lost_answer(monkeypatch) -> list[str]:
    """The engine accepts the next message but its answer is lost on its way back (``OutcomeUnknown``,
    as when a cluster's worker dies or a NATS server loses the reply), a fault injected once; the list
    gets that message's id."""
    from engine import _engine
    from engine.errors import OutcomeUnknown

    real, lost = _engine._accepted, []

    def answer_lost(reply):
        if not lost:
            lost.append(reply.message_id)
            raise OutcomeUnknown("no answer from the worker holding this account")
        return real(reply)

    monkeypatch.setattr(_engine, "_accepted", answer_lost)
    return lost


def test_a_submit_whose_answer_never_came_keeps_its_idempotency_key_pending(running, lost_answer):
    """In a cluster a submit whose worker died (or whose reply a NATS server lost) fails after 10-20 s
    with ``OutcomeUnknown``, though the worker may have accepted and billed it. A retry with the same
    Idempotency-Key must not send it a second time: it answers 409 outcome unknown (here the engine
    accepts the message and the answer is lost on its way back, a fault injected once)."""
    api = Client(running.http.customer_port, funded_account(running, "lost@example.com").api_key)
    key = {"Idempotency-Key": f"lost-{time.time_ns()}"}
    status, _, answer = api.request("POST", "/v1/messages", MSG, headers=key)
    assert (status, answer["error"]["code"]) == (503, "cluster_unavailable")
    status, _, again = api.request("POST", "/v1/messages", MSG, headers=key)
    assert (status, again["error"]["code"]) == (409, "idempotency_outcome_unknown")
    listed = api.request("GET", "/v1/messages")[2]["messages"]
    assert [m["id"] for m in listed] == lost_answer  # accepted once, never twice


def test_a_batch_whose_only_answer_never_came_is_kept_for_its_idempotency_key(running, lost_answer):
    """The same for a batch: its entry's error says the outcome is unknown, and the answer is kept, so a
    retry is a replay of it, not a second send."""
    api = Client(running.http.customer_port, funded_account(running, "lost-b@example.com").api_key)
    key = {"Idempotency-Key": f"lost-b-{time.time_ns()}"}
    body = {"messages": [MSG]}
    status, _, answer = api.request("POST", "/v1/messages/batch", body, headers=key)
    assert status == 200 and answer["results"][0]["error"]["code"] == "cluster_unavailable"
    status, headers, again = api.request("POST", "/v1/messages/batch", body, headers=key)
    assert (status, again, headers.get("Idempotent-Replayed")) == (200, answer, "true")
    assert [m["id"] for m in api.request("GET", "/v1/messages")[2]["messages"]] == lost_answer
