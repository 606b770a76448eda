"""The bench workload: valid numbers per country, bodies of the asked length, shares and arrival times."""

from __future__ import annotations

import random
from collections import Counter

import phonenumbers
import pytest

from bench.scenario import MixEntry, parse_scenario
from bench.traffic import Workload, arrival_times, make_body, valid_mobile_numbers
from engine.errors import ConfigError
from engine.numbers import parse_destination
from engine.segments import plan


@pytest.mark.parametrize("country", ["DE", "FR", "GB", "SG", "IN", "BR", "MX", "US"])
def test_generated_numbers_are_distinct_valid_and_of_the_country(country):
    numbers = valid_mobile_numbers(country, 50, random.Random(1))
    assert len(numbers) == len(set(numbers)) == 50
    for n in numbers:
        assert parse_destination(n).region == country
        assert phonenumbers.region_code_for_number(phonenumbers.parse(n)) == country


def test_an_unknown_country_is_a_config_error():
    with pytest.raises(ConfigError):
        valid_mobile_numbers("XX", 5, random.Random(1))


@pytest.mark.parametrize(("encoding", "length"), [("GSM-7", 60), ("GSM-7", 200), ("UCS-2", 50)])
def test_bodies_have_the_asked_length_and_encoding(encoding, length):
    body = make_body(MixEntry(1.0, length, encoding), random.Random(2))
    assert len(body) == length
    assert plan(body).encoding == encoding


def test_fixed_arrivals_are_evenly_spaced_and_counted_exactly():
    times = list(arrival_times(1000.0, 0.5, "fixed", random.Random(0)))
    assert len(times) == 500
    assert times[0] == 0.0
    assert all(abs((b - a) - 0.001) < 1e-12 for a, b in zip(times, times[1:], strict=False))


def test_poisson_arrivals_average_the_rate_and_stay_in_the_window():
    times = list(arrival_times(2000.0, 10.0, "poisson", random.Random(3)))
    assert all(0 <= t < 10.0 for t in times)
    assert times == sorted(times)
    assert 19_000 < len(times) < 21_000  # mean 20,000, sd ~141


def test_a_non_positive_rate_is_refused():
    with pytest.raises(ConfigError):
        list(arrival_times(0.0, 1.0, "fixed", random.Random(0)))


def test_corridors_are_picked_in_proportion_to_their_shares():
    sc = parse_scenario("""
name = "s"
[[corridors]]
pop = "fra"
country = "DE"
share = 3
[[corridors]]
pop = "sin"
country = "SG"
share = 1
""")
    w = Workload(sc)
    counts = Counter(w.pick(0.0).corridor for _ in range(20_000))
    assert 0.73 < counts[0] / 20_000 < 0.77


def test_the_same_seed_gives_the_same_workload():
    sc = parse_scenario('name = "s"\n[[corridors]]\npop = "fra"\ncountry = "DE"\n')
    a = list(Workload(sc).schedule(500, 1.0, "poisson"))
    b = list(Workload(sc).schedule(500, 1.0, "poisson"))
    assert a == b
