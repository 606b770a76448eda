"""Staff access is audit-logged (policy 9): when the control port's audit log cannot be written (its store,
the HTTP environment, is full) a request that would change something is refused 503 ``audit_unavailable``
*before* it acts, so the refusal left nothing behind and a retry is safe; once there is space the same
request works, once, and its audit entries exist. Over real sockets."""

from __future__ import annotations

import contextlib

import lmdb

import engine.http.store as http_store
from engine import Engine
from tests.engine.http.conftest import Client, overrides

SMALL_HTTP_MAP = 256 << 10


def fill(env: lmdb.Environment) -> None:
    """Use up every page of ``env`` with filler records (db ``filler``), halving the record size until not
    even a one-byte record fits, several times in a row (pages a commit frees become usable two commits
    later)."""
    with env.begin(write=True) as txn:  # open the db inside a write txn of our own (no interpreter stall)
        env.open_db(b"filler", txn=txn)
    db = env.open_db(b"filler")
    size, n, refused = 16 << 10, 0, 0
    while refused < 4:
        try:
            with env.begin(write=True) as txn:
                txn.put(n.to_bytes(8, "big"), b"x" * size, db=db)
            n, refused = n + 1, 0
        except lmdb.MapFullError:
            size, refused = max(1, size // 2), refused + (size == 1)
    for extra in range(12):  # the last few pages: too few for a split of the filler db, enough for a small db
        with contextlib.suppress(lmdb.MapFullError), env.begin(write=True) as txn:
            txn.put(b"x", b"x", db=env.open_db(b"filler-%d" % extra, txn=txn))


def test_a_control_write_whose_audit_cannot_be_written_is_refused_before_it_acts(tmp_path, monkeypatch):
    monkeypatch.setattr(http_store, "HTTP_MAP_SIZE", SMALL_HTTP_MAP)
    data = tmp_path / "data"
    deposit = {"usd": "25.00", "chain": "tron", "tx_hash": "0xfeed", "from_address": "TXYZ"}
    engine = Engine.start(data, http=True, overrides=overrides())
    try:
        ctx = engine.http.ctx
        token = ctx.tokens.create("ops", {"operator", "viewer"})
        control = Client(engine.http.control_port, token)
        status, _, existing = control.request("POST", "/v1/accounts", {"email": "first@example.com"})
        assert status == 201, existing
        accounts_before = sorted(engine.accounts.ids())
        balance_before = engine.balance(existing["id"])
        audited_before = len(ctx.audit)

        fill(ctx.audit.env)
        status, headers, answer = control.request("POST", "/v1/accounts", {"email": "new@example.com"})
        assert status == 503 and answer["error"]["code"] == "audit_unavailable", (status, answer)
        assert "nothing was done" in answer["error"]["message"] and headers.get("Retry-After")
        status, _, answer = control.request("POST", f"/v1/accounts/{existing['id']}/deposits", deposit)
        assert status == 503 and answer["error"]["code"] == "audit_unavailable", (status, answer)
        # nothing was done: no account, no deposit, and no audit entry claims either
        assert sorted(engine.accounts.ids()) == accounts_before
        assert engine.balance(existing["id"]) == balance_before
        assert len(ctx.audit) == audited_before
    finally:
        engine.stop()

    monkeypatch.setattr(http_store, "HTTP_MAP_SIZE", 8 * SMALL_HTTP_MAP)  # space returns: a larger map
    engine = Engine.start(data, http=True, overrides=overrides())
    try:
        ctx = engine.http.ctx
        control = Client(engine.http.control_port, token)
        status, _, created = control.request("POST", "/v1/accounts", {"email": "new@example.com"})
        assert status == 201, created
        assert len(engine.accounts.ids()) == len(accounts_before) + 1  # once: the refused try made none
        status, _, answer = control.request("POST", f"/v1/accounts/{existing['id']}/deposits", deposit)
        assert status == 201 and answer["balance_micro_usd"] == balance_before + 25_000_000, answer
        mine = [e for e in ctx.audit.entries()[audited_before:] if e.action.startswith("POST /v1/accounts")]
        assert [(e.actor, e.result) for e in mine] == [("ops", "started"), ("ops", "201")] * 2
        assert mine[1].detail["intent"] == mine[0].seq and mine[3].detail["intent"] == mine[2].seq
    finally:
        engine.stop()
