"""The HTTP, mail and privacy stores' LMDB maps are set by ``[engine] http_map_size_mb``,
``mail_map_size_mb`` and ``privacy_map_size_mb``: a store filled at a small size refuses writes (503), and
after a restart with a larger setting its environment has grown and the same write is accepted. Over real
sockets."""

from __future__ import annotations

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


def _write(engine: Engine, control: Client, store: str, account: str) -> int:
    """One control-port write that needs space in ``store``; its HTTP status."""
    if store == "mail":
        return control.request("POST", f"/v1/accounts/{account}/confirmation")[0]
    if store == "privacy":
        return control.request("POST", "/v1/support/cases", {"subject": "billing", "text": "a question"})[0]
    return control.request("POST", "/v1/accounts", {"email": "another@example.com"})[0]


@pytest.mark.parametrize("store", ["http", "mail", "privacy"])
def test_a_store_filled_at_a_small_map_takes_writes_after_a_restart_with_a_larger_one(tmp_path, store):
    key, data = f"{store}_map_size_mb", tmp_path / "data"
    engine = _start(data, key, 1)
    try:
        assert _env(engine, store).info()["map_size"] == 1 << 20
        token = engine.http.ctx.tokens.create("ops", {"operator", "privacy"})
        control = Client(engine.http.control_port, token)
        status, _, account = control.request("POST", "/v1/accounts", {"email": "owner@example.com"})
        assert status == 201, account
        fill(_env(engine, store))
        assert _write(engine, control, store, account["id"]) == 503
    finally:
        engine.stop()

    engine = _start(data, key, 4)
    try:
        assert _env(engine, store).info()["map_size"] == 4 << 20  # the existing environment grew
        control = Client(engine.http.control_port, token)
        assert _write(engine, control, store, account["id"]) in (201, 202)
    finally:
        engine.stop()
