"""Settings: the embedded default loads, layers merge, and invalid documents raise ConfigError."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

import engine.config
from engine.config import (
    EmailSettings,
    EngineLimits,
    HttpSettings,
    KeySettings,
    PrivacySettings,
    SimulatedCarrierOptions,
    SmppCarrierOptions,
    deep_merge,
    default_document,
    load_settings,
)
from engine.errors import ConfigError


def test_the_embedded_default_has_three_pops_and_routes_the_sample_destinations():
    s = load_settings()
    assert sorted(s.pops) == ["fra", "gru", "sin"]
    for number, region, pop in [("+4915112345678", "DE", "fra"), ("+6591234567", "SG", "sin"),
                                ("+5511987654321", "BR", "gru"), ("+447400123456", "GB", "fra"),
                                ("+12025550123", "US", "gru")]:
        res = s.routing.resolve(number, region)
        assert res.pop == pop
        assert all(s.carriers[c.carrier].pop == pop for c in res.candidates)


def test_overrides_merge_over_the_default_without_dropping_other_keys():
    s = load_settings(overrides={"engine": {"max_in_flight": 7, "resp_timeout_seconds": 1}})
    assert s.engine.max_in_flight == 7
    assert s.engine.resp_timeout_seconds == 1.0 and type(s.engine.resp_timeout_seconds) is float
    assert s.engine.max_segments == default_document()["engine"]["max_segments"]


def test_a_config_file_is_merged_and_overrides_win_over_it(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[engine]\nmax_in_flight = 5\ntick_ms = 50\n")
    s = load_settings(path, {"engine": {"max_in_flight": 9}})
    assert (s.engine.max_in_flight, s.engine.tick_ms) == (9, 50)


def test_a_layer_with_carriers_replaces_the_default_carriers():
    doc = default_document()
    carriers = {"fra-telekom": doc["carriers"]["fra-telekom"],
                "sin-singtel": doc["carriers"]["sin-singtel"],
                "gru-vivo": doc["carriers"]["gru-vivo"]}
    routes = [{"match": ["DE"], "pop": "fra", "carriers": ["fra-telekom"]}]
    s = load_settings(overrides={"carriers": carriers, "routes": routes})
    assert set(s.carriers) == set(carriers)
    assert len(s.routing.routes) == 1


def test_deep_merge_merges_tables_and_replaces_lists_without_touching_its_inputs():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    over = {"a": {"y": [3]}, "c": 2}
    out = deep_merge(base, over)
    assert out == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}


@pytest.mark.parametrize("overrides,needle", [
    ({"engine": {"max_inflight": 1}}, "unknown key"),
    ({"http": {"port": 1}}, "unknown key"),
    ({"engine": {"max_in_flight": "many"}}, "max_in_flight"),
    ({"engine": {"max_in_flight": True}}, "max_in_flight"),
    ({"engine": {"retry_base_ms": -1}}, "negative"),
    ({"rates": {"DE": -5}}, "rates.DE"),
    ({"routes": [{"match": "DE", "pop": "fra", "carriers": ["nobody"]}]}, "unknown carrier"),
    ({"routes": [{"match": "DE", "pop": "fra", "carriers": ["sin-singtel"]}]}, "belongs to POP sin"),
    ({"routes": [{"match": "Germany", "pop": "fra", "carriers": ["fra-telekom"]}]}, "ISO 3166"),
    ({"engine": "fast"}, r"\[engine\] must be a table"),
])
def test_an_invalid_setting_raises_config_error_naming_it(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_settings(overrides=overrides)


def test_a_carrier_of_an_unknown_pop_or_kind_raises_config_error():
    with pytest.raises(ConfigError, match="not a configured POP"):
        load_settings(overrides={"carriers": {"x": {"pop": "lhr"}}, "routes": []})
    with pytest.raises(ConfigError, match="kind"):
        load_settings(overrides={"carriers": {"x": {"pop": "fra", "kind": "pigeon"}}, "routes": []})


def test_an_unreadable_or_invalid_toml_file_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)


@pytest.mark.parametrize("http", [
    {"customer_host": "0.0.0.0"},
    {"control_host": "192.168.1.10"},
    {"customer_host": "api.example.com"},
    {"tls_cert": "/etc/cert.pem"},  # a certificate without its key
])
def test_a_port_beyond_loopback_without_tls_is_refused(http):
    with pytest.raises(ConfigError, match=r"\[http\]"):
        load_settings(overrides={"http": http})


def test_loopback_binds_need_no_tls_and_public_binds_accept_tls():
    assert load_settings(overrides={"http": {"customer_host": "::1"}}).http.customer_host == "::1"
    tls = {"customer_host": "0.0.0.0", "tls_cert": "c.pem", "tls_key": "k.pem"}
    assert load_settings(overrides={"http": tls}).http.tls_key == "k.pem"


def test_email_settings_read_from_as_the_sender_and_default_to_starttls_without_a_host():
    s = load_settings(overrides={"email": {"host": "smtp.example.com", "from": "ops <o@example.com>",
                                           "username": "u", "password_env": "SMTP_PW"}})
    assert (s.email.host, s.email.from_address, s.email.tls) == (
        "smtp.example.com", "ops <o@example.com>", "starttls")
    assert load_settings().email.host == ""  # the embedded default: mail is only logged


@pytest.mark.parametrize(("email", "needle"), [
    ({"password": "hunter2"}, "never go in the TOML"),
    ({"host": "smtp.example.com", "tls": "none"}, "beyond loopback"),
    ({"tls": "ssl3"}, "email.tls"),
    ({"password_file": "/a", "password_env": "B", "username": "u"}, "alternatives"),
    ({"password_env": "B"}, "needs a username"),
    ({"max_outbox": 0}, "max_outbox"),
])
def test_bad_email_settings_are_refused_with_a_clear_reason(email, needle):
    with pytest.raises(ConfigError, match=needle):
        load_settings(overrides={"email": email})


@pytest.mark.parametrize("keys,needle", [
    ({"provider": "kms"}, "'local' or 'pkcs11'"),
    ({"provider": "pkcs11", "pkcs11_token_label": "t", "pkcs11_pin_env": "PIN"}, "pkcs11_module"),
    ({"provider": "pkcs11", "pkcs11_module": "/m.so", "pkcs11_token_label": "t"}, "exactly one"),
    ({"provider": "pkcs11", "pkcs11_module": "/m.so", "pkcs11_token_label": "t",
      "pkcs11_pin_env": "PIN", "pkcs11_pin_file": "/pin"}, "exactly one"),
    ({"account_key_cache": 0}, "account_key_cache"),
    ({"pin": "1234"}, "unknown key"),  # a PIN is never a config value
])
def test_an_invalid_keys_section_is_refused_naming_what_is_wrong(keys, needle):
    with pytest.raises(ConfigError, match=needle):
        load_settings(overrides={"keys": keys})


def test_the_local_master_key_in_the_data_directory_is_the_default():
    keys = load_settings().keys
    assert (keys.provider, keys.dir) == ("local", "")


@pytest.mark.parametrize(("engine", "needle"), [
    ({"sweep_interval_seconds": 3601}, "sweep_interval_seconds = 3601 must be more than 0 and at most 3600"),
    ({"sweep_interval_seconds": 0}, "sweep_interval_seconds"),
    ({"body_ttl_seconds": 86401}, "body_ttl_seconds = 86401 must be between 1 and 86400"),
    ({"body_ttl_seconds": 0}, "body_ttl_seconds"),
    ({"analytics_max_account_share": 1.5}, "analytics_max_account_share"),
])
def test_settings_that_would_break_the_24_hour_body_promise_are_refused_at_load_time(engine, needle):
    with pytest.raises(ConfigError, match=needle):
        load_settings(overrides={"engine": engine})


def test_the_largest_allowed_sweep_interval_and_body_ttl_load():
    s = load_settings(overrides={"engine": {"sweep_interval_seconds": 3600, "body_ttl_seconds": 86400}})
    assert s.engine.sweep_interval_seconds == 3600 and s.engine.body_ttl_seconds == 86400


@pytest.mark.parametrize("key", ["header_timeout_seconds", "body_timeout_seconds", "max_connections",
                                 "control_max_connections_per_address",
                                 "control_auth_failures_per_minute"])
def test_connection_protections_cannot_be_switched_off(key):
    with pytest.raises(ConfigError, match=key):
        load_settings(overrides={"http": {key: 0}})


@pytest.mark.parametrize(("section", "key", "value", "needle"), [
    # a 0 that refuses every message, disables a protection, or spins a loop
    ("engine", "max_in_flight", 0, "engine.max_in_flight = 0 must be between 1 and 10000000"),
    ("engine", "max_segments", 0, "engine.max_segments = 0 must be between 1 and 255"),
    ("engine", "max_attempts", 0, "engine.max_attempts = 0 must be between 1 and"),
    ("engine", "tick_ms", 0, "engine.tick_ms = 0 must be between 5 and 60000"),
    ("http", "max_body_bytes", 0, "http.max_body_bytes = 0 must be between 1024 and"),
    ("http", "rate_limit_burst", 0, "http.rate_limit_burst = 0 must be between 1 and"),
    ("http", "webhook_concurrency", 0, "http.webhook_concurrency = 0 must be between 1 and"),
    ("http", "webhook_max_backlog", 0, "http.webhook_max_backlog = 0 must be between 1 and"),
    ("privacy", "challenge_ttl_seconds", 0, "privacy.challenge_ttl_seconds = 0 must be between 60 and"),
    # a value no machine or protocol can honour
    ("engine", "map_size_mb", 10**12, "engine.map_size_mb = 1e+12 must be between 1 and 4194304"),
    ("engine", "privacy_map_size_mb", 10**12, "engine.privacy_map_size_mb = 1e+12 must be between"),
    ("http", "customer_port", 70000, "http.customer_port = 70000 must be between 0 and 65535"),
    ("keys", "account_key_cache", 10**12, "keys.account_key_cache = 1e+12 must be between 1 and"),
    ("email", "port", 0, "email.port = 0 must be between 1 and 65535"),
])
def test_a_number_outside_its_range_is_refused_at_load_naming_the_key_and_the_range(section, key, value,
                                                                                     needle):
    with pytest.raises(ConfigError) as refused:
        load_settings(overrides={section: {key: value}})
    assert needle in str(refused.value) and refused.value.code == "invalid_config"


@pytest.mark.parametrize("where,table", [
    ("rates", {"routes": [{"match": ["DE"], "pop": "fra", "carriers": ["fra-telekom"]}],
               "rates": {"default": 10**18}}),
    ("cost_micro_usd", {"routes": [{"match": ["DE"], "pop": "fra", "carriers": [
        {"carrier": "fra-telekom", "cost_micro_usd": 10**18}]}], "rates": {"default": 1}}),
])
def test_a_price_per_segment_beyond_1000_usd_is_refused(where, table):
    """10**18 micro-USD a segment would overflow the ledger's 64-bit sums at the first message."""
    with pytest.raises(ConfigError, match=f"{where}.* must be an integer between 0 and 1000000000"):
        load_settings(overrides={"carriers": default_document()["carriers"], **table})
    ok = load_settings(overrides={"carriers": default_document()["carriers"], "routes": [
        {"match": ["DE"], "pop": "fra", "carriers": [{"carrier": "fra-telekom", "cost_micro_usd": 10**9}]}],
        "rates": {"default": 1_000_000_000}})
    assert ok.routing.default_rate == 1_000_000_000


@pytest.mark.parametrize(("route", "carrier", "needle"), [
    ({"weight": 10**18}, {}, "routes[0].weight = 1000000000000000000 must be an integer between 1 and"),
    ({}, {"weight": 10**18}, "routes[0].carriers[0].weight = 1000000000000000000 must be an integer "
                             "between 1 and 1000000"),
    ({}, {"weight": 0}, "routes[0].carriers[0].weight = 0 must be an integer between 1 and 1000000"),
    ({}, {"priority": 10_001}, "routes[0].carriers[0].priority = 10001 must be an integer between 0 and "
                               "10000"),
    ({}, {"priority": True}, "routes[0].carriers[0].priority must be an integer between 0 and 10000"),
    ({"weight": True}, {}, "routes[0].weight must be an integer between 1 and 1000000"),
])
def test_an_absurd_route_weight_or_priority_is_refused_naming_it(route, carrier, needle):
    """A weight of 10**18 starves its siblings in the weighted draw, and past 64 bits it cannot cross to
    a cluster's workers: refused by name like every other number out of its range."""
    table = {"routes": [{"match": ["DE"], "pop": "fra", **route,
                         "carriers": [{"carrier": "fra-telekom", **carrier}]}]}
    with pytest.raises(ConfigError) as refused:
        load_settings(overrides={"carriers": default_document()["carriers"], **table})
    assert needle in str(refused.value) and refused.value.code == "invalid_config"
    edges = {"routes": [{"match": ["DE"], "pop": "fra", "weight": 1_000_000, "carriers": [
        {"carrier": "fra-telekom", "priority": 10_000, "weight": 1_000_000},
        {"carrier": "fra-vodafone", "priority": 0, "weight": 1}]}]}
    loaded = load_settings(overrides={"carriers": default_document()["carriers"], **edges})
    assert loaded.routing.resolve("+4915112345678", "DE").pop == "fra"


def test_every_range_edge_loads_and_the_readme_lists_every_range():
    """Both ends of each range are accepted (the default of each key lies inside it), and the README's
    configuration section shows the ranges exactly as the code checks them."""
    from engine.typed_tables import ranges  # (new with the ranges)

    for _title, cls, _base in engine.config.RANGED_TABLES:
        for key, bound in ranges(cls).items():
            assert bound.admits(getattr(cls(), key)), f"{cls.__name__}.{key}: default outside its range"
    s = load_settings(overrides={"engine": {"map_size_mb": 4 * 1024 * 1024, "tick_ms": 5},
                                 "http": {"customer_port": 0, "control_port": 65535}})
    assert s.engine.map_size_mb == 4 * 1024 * 1024 and s.http.customer_port == 0
    readme = (Path(engine.__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert engine.config.ranges_text() in readme


# --- carriers: typed options per kind, one default per key, unknown keys refused -----------------


def _one_carrier(kind: str, **options) -> dict:
    return {"carriers": {"c1": {"pop": "fra", "kind": kind, **options}},
            "routes": [{"match": ["DE"], "pop": "fra", "carriers": ["c1"]}]}


@pytest.mark.parametrize("kind,key,suggestion", [
    ("smpp", "windw", "window"),
    ("simulated", "outcome", "outcomes"),
    ("simulated", "binds", None),  # an SMPP key is unknown to a simulated carrier
])
def test_an_unknown_carrier_key_is_refused_with_a_message_naming_the_key_and_the_kind(kind, key,
                                                                                     suggestion):
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides=_one_carrier(kind, **{key: 20}))
    message = str(caught.value)
    assert f"unknown key '{key}' in [carriers.c1]" in message and f'kind = "{kind}"' in message
    if suggestion:
        assert f"did you mean '{suggestion}'?" in message


def test_the_window_and_throughput_defaults_are_the_same_for_every_carrier_kind():
    simulated = load_settings(overrides=_one_carrier("simulated")).carriers["c1"].options
    smpp = load_settings(overrides=_one_carrier("smpp")).carriers["c1"].options
    assert simulated.window == smpp.window == 10
    assert simulated.throughput == smpp.throughput == 0.0


def test_carrier_options_are_typed_per_kind():
    smpp = load_settings(overrides=_one_carrier("smpp", window=20, port=2776, tls=True,
                                                enquire_link_seconds=5)).carriers["c1"].options
    assert (smpp.window, smpp.port, smpp.tls, smpp.enquire_link_seconds) == (20, 2776, True, 5.0)
    assert type(smpp.enquire_link_seconds) is float


@pytest.mark.parametrize("kind,options,needle", [
    ("smpp", {"window": "20"}, "carriers.c1.window must be an integer"),
    ("smpp", {"window": 0}, "carriers.c1.window = 0 must be between 1 and"),
    ("smpp", {"tls": "yes"}, "carriers.c1.tls must be true or false"),
    ("smpp", {"port": 70000}, "carriers.c1.port = 70000 must be between 1 and 65535"),
    ("smpp", {"bind_mode": "duplex"}, "carriers.c1.bind_mode must be one of"),
    ("smpp", {"auth_retry_min_seconds": 0}, "carriers.c1.auth_retry_min_seconds = 0 must be more than 0"),
    ("smpp", {"password": "longer-than-8"}, "carriers.c1.password must be at most 8 Latin-1 characters"),
    ("smpp", {"system_id": "s" * 16}, "carriers.c1.system_id must be at most 15"),
    ("smpp", {"system_type": "VMA\x00"}, "carriers.c1.system_type must be at most 12"),
    ("smpp", {"system_id": "smsroute-€"}, "carriers.c1.system_id must be at most 15 Latin-1"),
    ("smpp", {"auth_retry_min_seconds": 60, "auth_retry_max_seconds": 30},
     "auth_retry_min_seconds must be more than 0 and at most carriers.c1.auth_retry_max_seconds"),
    ("smpp", {"auth_retry_max_seconds": 7200}, "at most 3600"),
    ("smpp", {"reconnect_min_seconds": 0}, "carriers.c1.reconnect_min_seconds = 0 must be more than 0"),
    ("smpp", {"reconnect_min_seconds": 2}, "at most carriers.c1.reconnect_max_seconds"),
    ("simulated", {"latency": {"distribution": "pareto"}}, "carriers.c1.latency.distribution"),
    ("simulated", {"latency": {"distribution": "fixed", "median_ms": 3}},
     "unknown key 'median_ms' in carriers.c1.latency"),
    ("simulated", {"outcomes": {"delivered": 0.5, "lost": 0.5}}, "unknown outcome 'lost'"),
    ("simulated", {"outcomes": {"delivered": 0}}, "at least one of them positive"),
    ("simulated", {"late_receipt_rate": 2}, "between 0 and 1"),
    ("simulated", {"latency": 3_600_001}, "carriers.c1.latency = 3.6e+06 must be between 0 and 3600000"),
    ("simulated", {"receipt_delay": {"distribution": "fixed", "ms": 1e12}},
     "carriers.c1.receipt_delay.ms = 1e+12 must be between 0 and 3600000 (ms)"),
    ("simulated", {"latency": {"distribution": "lognormal", "median_ms": 8, "sigma": 1e9}},
     "carriers.c1.latency.sigma = 1e+09 must be between 0 and 3"),
    ("carrier-pigeon", {}, "kind must be one of simulated, smpp"),
])
def test_an_invalid_carrier_option_raises_config_error_naming_it(kind, options, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_settings(overrides=_one_carrier(kind, **options))


# --- engine/default.toml documents every key ----------------------------------------------------

DEFAULT_TOML = (Path(engine.__file__).parent / "default.toml").read_text(encoding="utf-8")


def _documented_line(key: str) -> tuple[str, str]:
    """The line of default.toml that sets ``key`` (maybe commented out) and the line before it."""
    lines = DEFAULT_TOML.splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"\s*(#\s*)?{key}\s*=", line):
            return line, lines[i - 1]
    raise AssertionError(f"default.toml does not mention {key}")


TOML_NAMES = {"from_address": "from"}  # fields whose TOML key is another word


@pytest.mark.parametrize("section,cls", [("engine", EngineLimits), ("http", HttpSettings),
                                         ("email", EmailSettings), ("privacy", PrivacySettings),
                                         ("keys", KeySettings)])
def test_default_toml_lists_every_key_of_a_section_with_its_default_and_an_explanation(section, cls):
    table = default_document()[section]
    for f in dataclasses.fields(cls):
        key = TOML_NAMES.get(f.name, f.name)
        line, before = _documented_line(key)
        assert "#" in line.split("=", 1)[1] or before.lstrip().startswith("#"), \
            f"{section}.{key} has no explanation in default.toml"
        if key in table:
            assert table[key] == getattr(cls(), f.name), f"{section}.{key}: two defaults"


def _example_carrier(kind: str) -> dict:
    """The commented ``[carriers.example-<kind>]`` block of default.toml, uncommented and parsed."""
    block, inside = [], False
    for line in DEFAULT_TOML.splitlines():
        if line.startswith(f"# [carriers.example-{kind}]"):
            inside = True
        elif inside and not line.startswith("# "):  # a bare "#" or the end of the comment
            break
        if inside:
            block.append(re.sub(r"^# ?", "", line))
    return tomllib.loads("\n".join(block))["carriers"][f"example-{kind}"]


@pytest.mark.parametrize("kind,cls", [("simulated", SimulatedCarrierOptions),
                                      ("smpp", SmppCarrierOptions)])
def test_default_toml_shows_every_carrier_key_of_each_kind_with_its_default(kind, cls):
    example = _example_carrier(kind)
    assert example.pop("kind") == kind and example.pop("pop") == "fra"
    assert set(example) == {f.name for f in dataclasses.fields(cls)}
    defaults = dataclasses.asdict(cls())
    for key, value in example.items():
        expected = defaults[key]
        if key in ("latency", "receipt_delay") and value == 0:
            expected = expected or 0  # "no delay" is written as 0 ms
        assert value == expected, f"{kind} carrier key {key}: default.toml says {value!r}"
    loaded = load_settings(overrides={"carriers": {"x": {**example, "pop": "fra", "kind": kind}},
                                      "routes": [{"match": "DE", "pop": "fra", "carriers": ["x"]}]})
    assert loaded.carriers["x"].options == cls(**example)


@pytest.mark.parametrize("text,needle", [
    ("[engin]\ntick_ms = 100\n", "unknown table [engin] (did you mean [engine]?)"),
    ("smsc = 1\n", "unknown table [smsc]"),
])
def test_an_unknown_table_is_refused_by_name_instead_of_ignored(tmp_path, text, needle):
    """A typo in a table's name would otherwise leave the whole table unread and unseen."""
    path = tmp_path / "smsroute.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    assert needle in str(refused.value)


@pytest.mark.parametrize("key", ["map_size_mb", "http_map_size_mb", "mail_map_size_mb", "privacy_map_size_mb"])
def test_each_store_map_size_is_a_whole_number_of_mib_of_at_least_one(key):
    assert getattr(load_settings(overrides={"engine": {key: 2048}}).engine, key) == 2048
    for bad, needle in ((0, f"engine.{key} = 0 must be between 1 and"), (1.5, f"engine.{key} must be"),
                        ("1G", f"engine.{key} must be")):
        with pytest.raises(ConfigError, match=needle):
            load_settings(overrides={"engine": {key: bad}})


@pytest.mark.parametrize("toml, needle", [
    ('[pops]\nfra = "Frankfurt"\n', r"\[pops\.fra\] must be a table"),
    ("[pops.fra]\ncity = 3\n", r"pops\.fra\.city must be a string"),
    ('[pops.fra]\ncitty = "Frankfurt"\n', r"unknown key 'citty' in \[pops\.fra\].*'city'"),
    ('[carriers.c]\npop = ["fra"]\n', r"carriers\.c\.pop must be a string"),
    ('[carriers.c]\npop = "fra"\nkind = ["smpp"]\n', r"carriers\.c\.kind must be a string"),
    ("[http]\nheader_timeout_seconds = inf\n", r"http\.header_timeout_seconds must be a finite"),
    ("[engine]\nretry_base_ms = nan\n", r"engine\.retry_base_ms must be a finite"),
    ('[carriers.c]\npop = "fra"\nthroughput = nan\n', r"carriers\.c\.throughput must be a finite"),
    ('[carriers.c]\npop = "fra"\nlatency = inf\n', r"carriers\.c\.latency must be a finite"),
    ('[carriers.c]\npop = "fra"\nlatency = { distribution = "uniform", min_ms = 1, max_ms = inf }\n',
     r"carriers\.c\.latency\.max_ms must be a finite"),
], ids=["pop-not-a-table", "city-a-number", "pop-unknown-key", "carrier-pop-a-list",
        "carrier-kind-a-list", "timeout-inf", "retry-nan", "throughput-nan", "latency-inf",
        "latency-max-inf"])
def test_a_config_file_with_a_wrong_shape_is_refused_naming_the_key(tmp_path, toml, needle):
    path = tmp_path / "smsroute.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=needle) as refused:
        load_settings(path)
    assert refused.value.code == "invalid_config"
