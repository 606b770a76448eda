"""Scenario -> engine configuration: one simulated carrier and one route per corridor, valid settings."""

from __future__ import annotations

from bench.engine_config import UNLIMITED_WINDOW, carrier_name, engine_overrides
from bench.scenario import load_scenario, parse_scenario
from engine.config import load_settings

SCENARIO = parse_scenario("""
name = "c"
[[corridors]]
pop = "fra"
country = "DE"
share = 0.7
[corridors.carrier]
latency_ms = { kind = "uniform", low = 5, high = 40 }
receipt_delay_ms = { kind = "lognormal", median = 300, sigma = 0.8 }
outcomes = { delivered = 0.9, undeliverable = 0.1 }
window = 50
throughput = 100
[[corridors]]
pop = "sin"
country = "SG"
share = 0.3
""")


def test_every_corridor_gets_its_own_simulated_carrier_with_its_behaviour():
    doc = engine_overrides(SCENARIO)
    de = doc["carriers"]["bench-fra-de"]
    assert de["pop"] == "fra" and de["kind"] == "simulated"
    assert de["latency"] == {"distribution": "uniform", "min_ms": 5.0, "max_ms": 40.0}
    assert de["receipt_delay"] == {"distribution": "lognormal", "median_ms": 300.0, "sigma": 0.8}
    assert de["outcomes"] == {"delivered": 0.9, "undeliverable": 0.1}
    assert (de["window"], de["throughput"]) == (50, 100.0)
    sg = doc["carriers"]["bench-sin-sg"]
    assert sg["window"] == UNLIMITED_WINDOW and sg["throughput"] == 0
    assert sg["latency"] == {"distribution": "fixed", "ms": 0.0}


def test_routes_send_each_country_to_its_corridor_pop_and_carrier():
    settings = load_settings(None, engine_overrides(SCENARIO, max_in_flight=12345))
    assert settings.engine.max_in_flight == 12345
    assert set(settings.carriers) == {"bench-fra-de", "bench-sin-sg"}
    de = settings.routing.resolve("+4915123456789", "DE")
    assert de.pop == "fra" and [c.carrier for c in de.candidates] == ["bench-fra-de"]
    assert settings.routing.resolve("+6581234567", "SG").pop == "sin"


def test_every_builtin_scenario_produces_valid_engine_settings():
    for name in ("default", "realistic", "saturation", "tiny"):
        sc = load_scenario(name)
        settings = load_settings(None, engine_overrides(sc, http_ports=(0, 0)))
        assert {carrier_name(c) for c in sc.corridors} == set(settings.carriers)
        assert settings.http.customer_port == 0


def test_smpp_carriers_replace_the_simulated_ones():
    doc = engine_overrides(SCENARIO, smpp_carrier=lambda c: {"kind": "smpp", "port": 2775})
    assert {c["kind"] for c in doc["carriers"].values()} == {"smpp"}
    assert doc["carriers"]["bench-sin-sg"]["pop"] == "sin"


def test_the_http_path_allows_loopback_webhooks_and_lifts_the_account_rate_limit():
    http = load_settings(None, engine_overrides(SCENARIO, http_ports=(0, 0))).http
    assert http.webhook_allow_private_networks is True
    assert http.rate_limit_per_second >= 1_000_000 and http.rate_limit_burst >= 1_000_000
