"""The routing table: most specific match, priority order, weighted spread, NoRoute and the rate card."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError, NoRoute
from engine.routing import RoutingTable

POPS = {"fra", "sin"}
CARRIERS = {"a": "fra", "b": "fra", "c": "fra", "s": "sin"}


def table(routes, rates=None):
    return RoutingTable.from_document({"routes": routes, "rates": rates or {"default": 10}},
                                      pops=POPS, carriers=CARRIERS)


def test_a_prefix_match_beats_a_country_match():
    t = table([{"match": "DE", "pop": "fra", "carriers": ["a"]},
               {"match": "+4915", "pop": "sin", "carriers": ["s"]}])
    assert t.resolve("+4915112345678", "DE").pop == "sin"
    assert t.resolve("+4930123456", "DE").pop == "fra"


def test_a_longer_prefix_beats_a_shorter_one():
    t = table([{"match": "+49", "pop": "fra", "carriers": ["a"]},
               {"match": ["+491511"], "pop": "sin", "carriers": ["s"]}])
    assert t.resolve("+4915112345678", "DE").pop == "sin"
    assert t.resolve("+4915212345678", "DE").pop == "fra"


def test_country_matches_are_case_insensitive_in_the_document():
    t = table([{"match": ["de"], "pop": "fra", "carriers": ["a"]}])
    assert t.resolve("+4930123456", "DE").pop == "fra"


def test_carriers_are_ordered_by_priority_lowest_first():
    t = table([{"match": "DE", "pop": "fra", "carriers": [
        {"carrier": "c", "priority": 3}, {"carrier": "a", "priority": 1},
        {"carrier": "b", "priority": 2}]}])
    rng = random.Random(1)
    for _ in range(50):
        order = [c.carrier for c in t.resolve("+4930123456", "DE", rng).candidates]
        assert order == ["a", "b", "c"]


def test_equal_priority_carriers_are_spread_roughly_by_weight_with_a_seeded_rng():
    t = table([{"match": "DE", "pop": "fra", "carriers": [
        {"carrier": "a", "weight": 3}, {"carrier": "b", "weight": 1},
        {"carrier": "c", "priority": 2}]}])
    rng = random.Random(20261127)
    firsts = Counter()
    for _ in range(4000):
        cands = [c.carrier for c in t.resolve("+4930123456", "DE", rng).candidates]
        assert sorted(cands[:2]) == ["a", "b"] and cands[2] == "c"  # failover still walks them all
        firsts[cands[0]] += 1
    share = firsts["a"] / 4000
    assert 0.70 < share < 0.80  # expected 0.75; binomial sd ~0.007


def test_equally_specific_routes_on_several_pops_are_chosen_by_route_weight():
    t = table([{"match": "GB", "pop": "fra", "weight": 1, "carriers": ["a"]},
               {"match": "GB", "pop": "sin", "weight": 4, "carriers": ["s"]}])
    rng = random.Random(7)
    pops = Counter(t.resolve("+447700900123", "GB", rng).pop for _ in range(5000))
    assert 0.76 < pops["sin"] / 5000 < 0.84  # expected 0.8


def test_candidates_at_a_pop_use_only_that_pops_routes():
    t = table([{"match": "GB", "pop": "fra", "carriers": ["a"]},
               {"match": "GB", "pop": "sin", "carriers": ["s"]}])
    assert [c.carrier for c in t.candidates_at("sin", "+447700900123", "GB")] == ["s"]
    with pytest.raises(NoRoute):
        t.candidates_at("sin", "+4930123456", "DE")


def test_a_destination_no_route_serves_raises_no_route():
    t = table([{"match": "DE", "pop": "fra", "carriers": ["a"]}])
    with pytest.raises(NoRoute):
        t.resolve("+27821234567", "ZA")


@settings(max_examples=200, deadline=None)
@given(rate=st.integers(min_value=0, max_value=10**7), segments=st.integers(min_value=1, max_value=255))
def test_price_is_segments_times_the_rate_in_integer_micro_usd(rate, segments):
    t = table([{"match": "DE", "pop": "fra", "carriers": ["a"]}], {"DE": rate, "default": 1})
    price = t.price("DE", segments)
    assert type(price) is int and price == rate * segments
    assert t.price("FR", segments) == segments  # the default rate for unlisted countries


def test_price_without_a_rate_or_default_raises_no_route():
    t = table([{"match": "DE", "pop": "fra", "carriers": ["a"]}], {"DE": 5})
    with pytest.raises(NoRoute):
        t.price("FR", 1)


def test_to_document_round_trips_through_from_document():
    t = table([{"match": ["DE", "+4915"], "pop": "fra", "weight": 2, "carriers": [
        {"carrier": "a", "priority": 1, "weight": 3, "cost_micro_usd": 30000}, "b"]}],
        {"DE": 75000, "default": 60000})
    again = RoutingTable.from_document(t.to_document(), pops=POPS, carriers=CARRIERS)
    assert again.routes == t.routes and again.rates == t.rates
    assert again.default_rate == t.default_rate


@pytest.mark.parametrize("route,needle", [
    ({"match": "DE", "pop": "fra", "carriers": ["zz"]}, "unknown carrier"),
    ({"match": "DE", "pop": "fra", "carriers": ["s"]}, "belongs to POP sin"),
    ({"match": "DEU", "pop": "fra", "carriers": ["a"]}, "ISO 3166"),
    ({"match": "+49a", "pop": "fra", "carriers": ["a"]}, "followed by digits"),
    ({"match": [], "pop": "fra", "carriers": ["a"]}, "match"),
    ({"match": "DE", "pop": "xyz", "carriers": ["a"]}, "not a configured POP"),
    ({"match": "DE", "pop": "fra", "carriers": []}, "non-empty"),
    ({"match": "DE", "pop": "fra", "weight": 0, "carriers": ["a"]}, "weight"),
    ({"match": "DE", "pop": "fra", "carriers": [{"carrier": "a", "priority": -1}]}, "priority"),
    ({"match": "DE", "pop": "fra", "carriers": [{"carrier": "a", "weight": 0}]}, "weight"),
    ({"match": "DE", "pop": "fra", "carriers": [{"carrier": "a", "cost": 1}]}, "unknown key"),
])
def test_an_invalid_route_raises_config_error_naming_the_problem(route, needle):
    with pytest.raises(ConfigError, match=needle):
        table([route])


@pytest.mark.parametrize("rates", [{"DE": -1}, {"DE": 1.5}, {"default": True}, {"DE": "10"}])
def test_a_rate_that_is_not_a_non_negative_integer_raises_config_error(rates):
    with pytest.raises(ConfigError, match="rates"):
        table([{"match": "DE", "pop": "fra", "carriers": ["a"]}], rates)


def test_an_empty_routing_table_is_refused_instead_of_refusing_every_message():
    with pytest.raises(ConfigError, match="routes is empty"):
        table([])
    with pytest.raises(ConfigError, match="routes is empty"):
        RoutingTable.from_document({"rates": {"default": 10}}, pops=POPS, carriers=CARRIERS)


def test_a_routed_country_without_a_rate_or_default_is_refused():
    """Such a country would be routed but never priced: every message to it refused at submission."""
    with pytest.raises(ConfigError, match=r"routes\[1\] serves FR, but rates has neither FR nor a default"):
        table([{"match": "DE", "pop": "fra", "carriers": ["a"]},
               {"match": ["fr"], "pop": "fra", "carriers": ["b"]}], {"DE": 5})
    priced = table([{"match": ["DE", "+33"], "pop": "fra", "carriers": ["a"]}], {"de": 5})
    assert priced.price("DE", 1) == 5  # a prefix route is priced per number, at submission


@pytest.mark.parametrize("key", ["germany", "D", "DEU", "1A", "ÄÖ"])
def test_a_rate_keyed_by_anything_but_a_country_code_is_refused_instead_of_never_matching(key):
    with pytest.raises(ConfigError, match=f"rates.{key}: a rate is keyed by an ISO 3166"):
        table([{"match": "DE", "pop": "fra", "carriers": ["a"]}], {key: 5, "default": 1})


@pytest.mark.parametrize("code", ["UK", "QQ", "ZZ", "EU"])
def test_a_two_letter_code_no_number_belongs_to_is_refused_instead_of_never_matching(code):
    """Destinations are libphonenumber's regions (``GB`` for +44 7...): a route or a rate for ``UK`` was
    accepted and then never matched, so British traffic was priced at the default or refused no_route."""
    with pytest.raises(ConfigError, match=rf"routes\[0\]\.match '{code}': no number belongs to it"):
        table([{"match": [code], "pop": "fra", "carriers": ["a"]}])
    with pytest.raises(ConfigError, match=rf"rates\.{code}: no number belongs to it"):
        table([{"match": "DE", "pop": "fra", "carriers": ["a"]}], {code: 5, "default": 1})


def test_every_region_a_number_can_have_is_accepted_as_a_match_and_a_rate():
    import phonenumbers

    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    t = table([{"match": regions, "pop": "fra", "carriers": ["a"]}], dict.fromkeys(regions, 1))
    assert set(t.rates) == set(regions)
