"""The number-cost benchmark times both validation paths on distinct valid numbers of many regions."""

from __future__ import annotations

import json

import phonenumbers

from bench import number_cost


def test_generated_numbers_are_distinct_and_valid_for_the_region_they_were_made_for():
    numbers = number_cost.valid_numbers(["DE", "GG", "JM", "KZ"], 20)
    assert len(numbers) == len(set(numbers)) == 80
    regions = {phonenumbers.region_code_for_number(phonenumbers.parse(n)) for n in numbers}
    assert regions == {"DE", "GG", "JM", "KZ"}


def test_number_cost_reports_both_paths_side_by_side_for_both_workloads(tmp_path, capsys):
    out = tmp_path / "cost.json"
    assert number_cost.main(["--per-region", "2", "--repeats", "1", "--old-sample", "50",
                             "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["workload"] for r in result["rows"]] == list(number_cost.WORKLOADS)
    every, scenario = result["rows"]
    assert every["regions"] > 200 and scenario["regions"] == 6
    for row in result["rows"]:
        assert row["phonenumbers_us"] > 0 and row["parse_destination_us"] > 0
        assert 0 <= row["fallback_share"] <= 1
    assert result["compile_all_ms"] > 0
    assert "parse_destination µs" in capsys.readouterr().out
