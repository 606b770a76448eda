"""Scenario files: the built-ins parse, and every mistake is a ConfigError naming the key."""

from __future__ import annotations

import pytest

from bench.scenario import Distribution, builtin_names, load_scenario, parse_scenario
from engine.errors import ConfigError

MINIMAL = """
name = "t"
[[corridors]]
pop = "fra"
country = "de"
"""


def test_every_builtin_scenario_parses():
    names = builtin_names()
    assert {"default", "saturation", "tiny"} <= set(names)
    for name in names:
        assert load_scenario(name).name == name


def test_the_default_scenario_covers_all_three_pops_and_several_countries():
    sc = load_scenario("default")
    assert set(sc.pops) == {"fra", "sin", "gru"}
    assert len({c.country for c in sc.corridors}) >= 4


def test_a_minimal_scenario_gets_defaults_and_normalised_codes():
    sc = parse_scenario(MINIMAL)
    (c,) = sc.corridors
    assert (c.pop, c.country, c.share) == ("fra", "DE", 1.0)
    assert c.carrier.outcomes == (("delivered", 1.0),)
    assert c.carrier.latency_ms == Distribution("fixed", (0.0,))
    assert sc.load.mode == "open" and sc.path == "embedded"


def test_distributions_and_outcomes_are_read_from_the_carrier_table():
    sc = parse_scenario(
        MINIMAL
        + """
mix = [{ share = 2, length = 120, encoding = "UCS-2" }]
[corridors.carrier]
latency_ms = { kind = "uniform", low = 5, high = 40 }
receipt_delay_ms = { kind = "lognormal", median = 300, sigma = 0.8 }
outcomes = { delivered = 0.9, undeliverable = 0.1 }
window = 10
throughput = 50
"""
    )
    c = sc.corridors[0]
    assert c.carrier.latency_ms == Distribution("uniform", (5.0, 40.0))
    assert c.carrier.receipt_delay_ms.as_dict() == {
        "kind": "lognormal",
        "median": 300.0,
        "sigma": 0.8,
    }
    assert dict(c.carrier.outcomes) == {"delivered": 0.9, "undeliverable": 0.1}
    assert (c.carrier.window, c.carrier.throughput) == (10, 50.0)
    assert c.mix[0].encoding == "UCS-2" and c.mix[0].length == 120


def test_a_bare_number_is_a_fixed_latency():
    sc = parse_scenario(MINIMAL + "[corridors.carrier]\nlatency_ms = 7\n")
    assert sc.corridors[0].carrier.latency_ms == Distribution("fixed", (7.0,))


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("typo = 1\n", "typo"),
        ("[load]\nrate = -5\n", "rate"),
        ('[load]\nmode = "closed"\n', "mode"),
        ("[load]\nstart_rate = 100\nmax_rate = 10\n", "max_rate"),
        ("[corridors.carrier]\noutcomes = { lost = 1 }\n", "lost"),
        ("[corridors.carrier]\noutcomes = { delivered = 0 }\n", "zero"),
        ('[corridors.carrier]\nlatency_ms = { kind = "gamma" }\n', "kind"),
        ('[corridors.carrier]\nlatency_ms = { kind = "uniform", low = 9, high = 1 }\n', "low"),
        ('[corridors.carrier]\nlatency_ms = { kind = "fixed", value = 1, mean = 2 }\n', "mean"),
        ("mix = [{ length = 0 }]\n", "length"),
        ('mix = [{ encoding = "latin-1" }]\n', "encoding"),
    ],
)
def test_a_bad_scenario_raises_config_error_naming_the_problem(extra, needle):
    text = MINIMAL + extra if not extra.startswith("typo") else extra + MINIMAL
    with pytest.raises(ConfigError, match=needle):
        parse_scenario(text)


def test_a_scenario_without_corridors_or_name_is_refused():
    with pytest.raises(ConfigError, match="corridors"):
        parse_scenario('name = "x"\n')
    with pytest.raises(ConfigError, match="name"):
        parse_scenario('[[corridors]]\npop = "fra"\ncountry = "DE"\n')


def test_a_corridor_listed_twice_is_refused():
    with pytest.raises(ConfigError, match="twice"):
        parse_scenario(MINIMAL + '[[corridors]]\npop = "fra"\ncountry = "DE"\n')


def test_invalid_toml_and_unknown_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="TOML"):
        parse_scenario("name = ")
    with pytest.raises(ConfigError, match="built-ins"):
        load_scenario(str(tmp_path / "missing.toml"))


def test_a_scenario_file_is_loaded_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(MINIMAL)
    assert load_scenario(str(path)).corridors[0].country == "DE"


def test_with_load_changes_only_the_given_settings():
    sc = parse_scenario(MINIMAL).with_load(rate=123.0)
    assert sc.load.rate == 123.0
    assert sc.load.duration_s == parse_scenario(MINIMAL).load.duration_s
