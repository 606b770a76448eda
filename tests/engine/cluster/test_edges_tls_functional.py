"""``smsroute run --workers 1 --edges 1`` with ``[http] tls_cert``/``tls_key``: the edges speak TLS too.

Before, an edge served the customer port in plaintext (on an address the configuration allows only with
TLS) while the banner said ``https://``, and it forwarded to the core's TLS port in plaintext, so every
request but a submit without an Idempotency-Key was answered 503 ``cluster_unavailable``.
"""

from __future__ import annotations

import http.client
import re
import ssl

import pytest

from tests.door import LAG_NEVER_SHEDS_TOML
from tests.engine.cli_support import Running
from tests.engine.cluster.test_run_workers_functional import _children, _kill_left
from tests.engine.http.conftest import Client
from tests.engine.http.test_tls_functional import _self_signed

pytestmark = pytest.mark.functional

HSTS = "max-age=31536000; includeSubDomains"


def test_edges_serve_tls_with_hsts_and_reach_the_core_over_tls(tmp_path):
    cert, key = _self_signed(tmp_path)
    config = tmp_path / "tls.toml"
    config.write_text(f'[http]\ntls_cert = "{cert}"\ntls_key = "{key}"\n' + LAG_NEVER_SHEDS_TOML)
    data = tmp_path / "data"
    children: set[int] = set()
    try:
        _serve_and_check(cert, config, data, children)
    finally:
        _kill_left(children)  # a failure must not leave the worker, edge or nats-server behind


def _serve_and_check(cert: str, config, data, children: set[int]) -> None:
    with Running("run", "--workers", "1", "--edges", "1", "--data-dir", str(data), "--config",
                 str(config), "--customer-port", "0", "--control-port", "0") as run:
        run.wait_for_line("smsroute running:", 90)
        children |= _children(run.proc.pid)
        banner = run.wait_for_line("customer API:")
        assert banner.startswith("customer API: https://")
        customer = int(re.search(r":(\d+)/v1", banner).group(1))
        control = int(re.search(r":(\d+)/$", run.wait_for_line("control port:")).group(1))
        trust = ssl.create_default_context(cafile=cert)
        ops = Client(control, (data / "operator.token").read_text().strip(), tls=trust)
        status, _, acct = ops.request("POST", "/v1/accounts", {"email": "tls@example.com"})
        assert status == 201, acct
        ops.request("POST", f"/v1/accounts/{acct['id']}/deposits",
                    {"usd": "10.00", "chain": "tron", "tx_hash": "0xtls", "from_address": "TXYZ"})
        api = Client(customer, acct["api_key"], tls=trust)

        status, headers, body = api.request("POST", "/v1/senders", {"sender": "ACME"})  # forwarded
        assert status == 201, body
        assert headers.get("Strict-Transport-Security") == HSTS
        status, headers, body = api.request(  # served by the edge itself
            "POST", "/v1/messages", {"to": "+4915112345678", "from": "ACME", "body": "over tls"})
        assert status == 202, body
        assert headers.get("Strict-Transport-Security") == HSTS
        status, _, record = api.request("GET", f"/v1/messages/{body['id']}")  # forwarded
        assert status == 200 and record["id"] == body["id"]

        plain = Client(customer, acct["api_key"])
        with pytest.raises((http.client.HTTPException, OSError)):
            plain.request("GET", "/v1/balance")  # no plaintext answer on the TLS port
        assert run.stop() == 0
