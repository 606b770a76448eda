"""Staff access is audit-logged (policy 9): when the control port's audit log cannot be written (its store,
the HTTP environment, is full) a request that would change something is refused 503 ``store_full`` (naming
the ``http`` store) *before* it acts, so the refusal left nothing behind and a retry is safe; once there is space the same
request works, once, and its audit entries exist. Over real sockets."""

from __future__ import annotations

from engine import Engine
from tests.engine.http.conftest import Client, overrides
from tests.engine.http.filling import fill


def _start(data, http_map_size_mb: int) -> Engine:
    settings = overrides()
    settings["engine"] = {"http_map_size_mb": http_map_size_mb}
    return Engine.start(data, http=True, overrides=settings)


def test_a_control_write_whose_audit_cannot_be_written_is_refused_before_it_acts(tmp_path):
    data = tmp_path / "data"
    deposit = {"usd": "25.00", "chain": "tron", "tx_hash": "0xfeed", "from_address": "TXYZ"}
    engine = _start(data, http_map_size_mb=1)
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
        assert status == 503 and answer["error"]["code"] == "store_full", (status, answer)
        assert "http store" in answer["error"]["message"] and "nothing was done" in answer["error"]["message"]
        assert headers.get("Retry-After")
        status, _, answer = control.request("POST", f"/v1/accounts/{existing['id']}/deposits", deposit)
        assert status == 503 and answer["error"]["code"] == "store_full", (status, answer)
        # nothing was done: no account, no deposit, and no audit entry claims either
        assert sorted(engine.accounts.ids()) == accounts_before
        assert engine.balance(existing["id"]) == balance_before
        assert len(ctx.audit) == audited_before
    finally:
        engine.stop()

    engine = _start(data, http_map_size_mb=4)  # space returns: the operator sets a larger map
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
