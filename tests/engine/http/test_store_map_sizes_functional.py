"""The HTTP, mail and privacy stores' LMDB maps are set by ``[engine] http_map_size_mb``,
``mail_map_size_mb`` and ``privacy_map_size_mb``: a store filled at a small size refuses writes with 503
``store_full`` naming it (counted under its name in ``/metrics``), and
after a restart with a larger setting its environment has grown and the same write is accepted. Over real
sockets."""

from __future__ import annotations

import re

import pytest

from engine import Engine
from tests.engine.http.conftest import Client, overrides
from tests.engine.http.filling import fill


def _start(data, key: str, mb: int) -> Engine:
    settings = overrides()
    settings["engine"] = {key: mb}
    return Engine.start(data, http=True, overrides=settings)


def _env(engine: Engine, store: str):
    return {"http": engine.http.ctx.audit.env, "mail": engine.mail.env, "privacy": engine.privacy.env}[store]


def _write(control: Client, store: str, account: str) -> tuple[int, dict]:
    """One control-port write that needs space in ``store``; its HTTP status and answer."""
    if store == "mail":
        status, _, answer = control.request("POST", f"/v1/accounts/{account}/confirmation")
    elif store == "privacy":
        status, _, answer = control.request("POST", "/v1/support/cases",
                                            {"subject": "billing", "text": "a question"})
    else:
        status, _, answer = control.request("POST", "/v1/accounts", {"email": "another@example.com"})
    return status, answer


def _refusals(control: Client, store: str) -> float:
    text = control.request("GET", "/metrics")[2].decode()
    found = re.search(rf'^smsroute_store_full_refusals_total{{store="{store}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("store", ["http", "mail", "privacy"])
def test_a_store_filled_at_a_small_map_takes_writes_after_a_restart_with_a_larger_one(tmp_path, store):
    key, data = f"{store}_map_size_mb", tmp_path / "data"
    engine = _start(data, key, 1)
    try:
        assert _env(engine, store).info()["map_size"] == 1 << 20
        token = engine.http.ctx.tokens.create("ops", {"operator", "privacy", "viewer"})
        control = Client(engine.http.control_port, token)
        status, _, account = control.request("POST", "/v1/accounts", {"email": "owner@example.com"})
        assert status == 201, account
        fill(_env(engine, store))
        status, answer = _write(control, store, account["id"])
        # refused naming the full store, and counted under its name
        assert status == 503 and answer["error"]["code"] == "store_full", answer
        assert f"the {store} store is full" in answer["error"]["message"], answer
        assert _refusals(control, store) >= 1  # /metrics is served even when its audit entry is not
        assert control.request("GET", "/v1/carriers")[0] == 503 or store != "http"  # other reads wait
    finally:
        engine.stop()

    engine = _start(data, key, 4)
    try:
        assert _env(engine, store).info()["map_size"] == 4 << 20  # the existing environment grew
        control = Client(engine.http.control_port, token)
        status, answer = _write(control, store, account["id"])
        assert status in (201, 202), answer
    finally:
        engine.stop()
