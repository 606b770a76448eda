"""The audit logs never keep an erased account's id (policy 7.1, 9; ``storage.audit``): the core log
(data-subject actions, ledger adjustments), the control port's log (``/v1/accounts/{id}/…`` requests) and
each POP's log (a customer's own debugging window, actor ``customer:acc_…``) name the account by its keyed
pseudonym and seal its id under the account's data key. Before the erasure ``GET /v1/audit`` shows both;
after it, no audit log holds the id (nor any file of the control port's or the POPs' data), and the privacy role still follows every action by
the pseudonym (computed from the id, or given).
"""

from __future__ import annotations

import lmdb

from engine import Engine
from tests.engine.http.conftest import Client, start_engine

KINDS = {"control", "data_subject", "retention_exception"}


def _trail(privacy: Client, **query: str) -> list[dict]:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    status, _, page = privacy.request("GET", f"/v1/audit?{q}")
    assert status == 200, page
    return page["entries"]


def _files_holding(data, needle: bytes) -> list[str]:
    return [str(p) for p in data.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_after_erasure_no_audit_log_holds_the_account_id_and_the_trail_follows_its_pseudonym(tmp_path):
    engine: Engine = start_engine(tmp_path)
    data = tmp_path / "data"
    try:
        store = engine.http.ctx.tokens
        ops = Client(engine.http.control_port, store.create("aud-ops", {"operator"}))
        privacy = Client(engine.http.control_port, store.create("aud-privacy", {"privacy"}))
        status, _, new = ops.request("POST", "/v1/accounts", {"email": "audited@example.com"})
        assert status == 201
        acc = new["id"]
        base = f"/v1/accounts/{acc}"
        assert ops.request("POST", f"{base}/deposits", {
            "usd": "5", "chain": "tron", "tx_hash": "0xaudq7", "from_address": "TAudWallet"})[0] == 201
        assert ops.request("POST", f"{base}/adjustments", {
            "usd": "1.25", "reason": "goodwill", "idempotency_key": "aud-adj-1"})[0] == 201
        assert privacy.request("GET", f"{base}/export")[0] == 200
        customer = Client(engine.http.customer_port, new["api_key"])
        assert customer.request("POST", "/v1/debug-window", {"hours": 1, "reason": "dbg"})[0] == 201
        assert customer.request("DELETE", "/v1/debug-window")[0] == 200

        subject = engine.account_pseudonym(acc)
        before = _trail(privacy, account=acc)
        assert {e["kind"] for e in before} == KINDS
        assert all(e["subject"] == subject and e["account_id"] == acc for e in before)
        assert {"customer:" + acc} <= {e["actor"] for e in before}  # the id shown while it exists
        assert _files_holding(data, subject.encode()) != []  # what the logs keep: the scan is not blind

        status, _, erased = privacy.request("POST", f"{base}/erase", {})
        assert status == 200 and erased["ledger_token"] == subject
        after = _trail(privacy, account=acc)
        assert after == _trail(privacy, subject=subject)
        assert {e["kind"] for e in after} == KINDS
        assert all(e["subject"] == subject and e["account_id"] == "" for e in after)
        actions = {(e["kind"], e["action"]) for e in after}
        assert {("data_subject", "export_account"), ("data_subject", "ledger_adjustment"),
                ("data_subject", "erase_account"), ("control", "GET /v1/accounts/{id}/export"),
                ("control", "POST /v1/accounts/{id}/deposits"),
                ("retention_exception", "place_debug_window"),
                ("retention_exception", "release_debug_window")} <= actions
        assert {e["actor"] for e in after if e["kind"] == "retention_exception"} == {
            "customer:" + subject}
        assert {e["target"] for e in after if e["kind"] == "control"} == {f"id={subject}"}
        assert all(e["actor"] in ("aud-ops", "aud-privacy")
                   for e in after if e["kind"] != "retention_exception")
        assert _trail(privacy, account="acc_" + "0" * 16) == []
    finally:
        engine.stop()
    # no environment holds it: the audit logs name it by pseudonym, the core's other stores by token
    assert _files_holding(data, acc.encode()) == []
    env = lmdb.open(str(data / "core"), readonly=True, lock=False, max_dbs=64)
    try:
        with env.begin() as txn:
            audit = [bytes(v) for _, v in txn.cursor(db=env.open_db(b"audit", txn=txn))]
    finally:
        env.close()
    assert len(audit) >= 3 and [v for v in audit if acc.encode() in v] == []
