"""Over HTTP (issue 9): carriers that cannot take more answer 503 with Retry-After before accepting, and a
message no carrier acknowledged shows its refund and gives the balance back."""

from __future__ import annotations

from tests.engine.http.conftest import DE_NUMBER, Client, funded_account, start_engine, wait_for


def test_with_its_carriers_suspended_a_route_takes_one_message_refunds_it_and_refuses_the_rest(
        tmp_path):
    engine = start_engine(tmp_path)
    try:
        acc = funded_account(engine)
        api = Client(engine.http.customer_port, acc.api_key)
        for name in ("fra-telekom", "fra-vodafone"):
            engine.suspend_carrier(name, True)
        wait_for(lambda: len(next(p for p in engine.stats()["pops"] if p["pop"] == "fra")
                             ["unavailable"]) == 2, "both carriers suspended")
        _, _, before = api.request("GET", "/v1/balance")
        msg = {"to": DE_NUMBER, "from": "ACME", "body": "waits for a carrier", "validity_seconds": 1}
        status, _, accepted = api.request("POST", "/v1/messages", msg)
        assert status == 202
        status, headers, refused = api.request("POST", "/v1/messages", msg)
        assert status == 503 and refused["error"]["code"] == "carriers_saturated"
        assert int(headers["Retry-After"]) >= 1

        def record():
            return api.request("GET", f"/v1/messages/{accepted['id']}")[2]

        wait_for(lambda: record()["status"] == "failed", "the message to fail", 20)
        got = record()
        assert got["error"] == "no_carrier_available"
        assert got["refunded_micro_usd"] == accepted["price_micro_usd"]
        _, _, after = api.request("GET", "/v1/balance")
        assert after["balance_micro_usd"] == before["balance_micro_usd"]
    finally:
        engine.stop(drain_seconds=0)
