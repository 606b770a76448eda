"""A cluster across hosts, as an operator deploys it: ``smsroute run --role core`` and ``--role worker``
joined by a NATS deployment that speaks TLS only, verifies client certificates and asks for a token.

Both processes take the same ``[nats]`` table (CA, client certificate, token file) from their config; a
message submitted on the core's customer API is delivered by the worker and read back. The same
deployment reached with ``nats://`` (no TLS) is refused at start, naming the reason.
"""

from __future__ import annotations

import re

import pytest

from engine.cluster.nats_server import NatsServer
from tests.door import LAG_NEVER_SHEDS_TOML
from tests.engine.cli_support import Running
from tests.engine.cluster.test_nats_security import _pki
from tests.engine.http.conftest import Client
from tests.waiting import wait_for

pytestmark = pytest.mark.functional


def test_a_core_and_a_worker_on_different_hosts_meet_over_verified_tls_with_a_token(tmp_path):
    pki = _pki(tmp_path)
    token = tmp_path / "nats.token"
    token.write_text("cluster-token-Yq7\n")
    server_conf = tmp_path / "nats.conf"
    server_conf.write_text('authorization {\n  token: "cluster-token-Yq7"\n}\n')
    config = tmp_path / "smsroute.toml"
    config.write_text(f'[nats]\nca_file = "{pki["ca"]}"\ncert_file = "{pki["client"]}"\n'
                      f'key_file = "{pki["client-key"]}"\ntoken_file = "{token}"\n'
                      "[http]\n" + LAG_NEVER_SHEDS_TOML)
    with NatsServer(extra_args=["-c", str(server_conf), "--tls", "--tlscert", pki["server"],
                                "--tlskey", pki["server-key"], "--tlsverify",
                                "--tlscacert", pki["ca"]]) as nats:
        url = f"tls://127.0.0.1:{nats.port}"
        common = ["--workers", "1", "--nats", url, "--config", str(config)]
        with Running("run", "--role", "worker", "--worker-index", "0", *common,
                     "--data-dir", str(tmp_path / "w0")) as worker:
            worker.wait_for_line("smsroute worker w0 ready", 60)
            with Running("run", "--role", "core", *common, "--data-dir", str(tmp_path / "core"),
                         "--customer-port", "0", "--control-port", "0") as core:
                core.wait_for_line("smsroute running:", 60)
                customer = int(re.search(r":(\d+)/v1", core.wait_for_line("customer API:")).group(1))
                control = int(re.search(r":(\d+)/$", core.wait_for_line("control port:")).group(1))
                ops = Client(control, (tmp_path / "core" / "operator.token").read_text().strip())
                status, _, acct = ops.request("POST", "/v1/accounts", {"email": "tls@example.com"})
                assert status == 201, acct
                ops.request("POST", f"/v1/accounts/{acct['id']}/deposits",
                            {"usd": "10.00", "chain": "tron", "tx_hash": "0xabc", "from_address": "TXYZ"})
                ops.request("POST", f"/v1/accounts/{acct['id']}/senders", {"sender": "ACME"})
                api = Client(customer, acct["api_key"])
                status, _, sent = api.request("POST", "/v1/messages",
                                              {"to": "+4915112345678", "from": "ACME", "body": "hi"})
                assert status == 202, sent

                def final() -> bool:
                    s, _, msg = api.request("GET", f"/v1/messages/{sent['id']}")
                    return s == 200 and msg["status"] in ("delivered", "failed", "rejected", "expired")

                wait_for(final, "the message final, read back from the worker over TLS", 30)
                assert core.stop() == 0
            assert worker.stop() == 0
        with Running("run", "--role", "worker", "--worker-index", "0", "--workers", "1", "--nats",
                     f"nats://localhost.example:{nats.port}", "--config", str(config),
                     "--data-dir", str(tmp_path / "w0")) as plain:
            line = plain.wait_for_line("smsroute worker w0: invalid_config:", 30)
            assert "beyond loopback is reached over TLS only: use tls://" in line
            assert plain.proc.wait(30) == 2
