"""Result JSON shape, the table, the chart and --compare ratios."""

from __future__ import annotations

import json

import pytest

from bench.drive import StepResult
from bench.histogram import LatencyHistogram
from bench.modes import BenchResult
from bench.recorder import CorridorStats
from bench.report import (
    compare,
    format_compare,
    format_table,
    read_json,
    result_json,
    write_chart,
    write_json,
)
from bench.scenario import parse_scenario

SCENARIO = parse_scenario(
    'name = "t"\n[[corridors]]\npop = "fra"\ncountry = "DE"\n'
    '[[corridors]]\npop = "sin"\ncountry = "SG"\n'
)


def _corridor(pop, country, base_us, n=200):
    c = CorridorStats(pop, country)
    for i in range(1, n + 1):
        c.accepted.record_us(base_us + i)
        c.carrier_ack.record_us(2 * base_us + i)
        c.final.record_us(3 * base_us + i)
    c.outcomes["delivered"] = n - 10
    c.outcomes["failed"] = 10
    c.sent = n
    return c


def _result(base_us=1000, elapsed=2.0):
    corridors = {
        ("fra", "DE"): _corridor("fra", "DE", base_us),
        ("sin", "SG"): _corridor("sin", "SG", base_us),
    }
    step = StepResult(
        offered_rate=200.0,
        duration_s=2.0,
        sent=400,
        finals=400,
        elapsed_s=elapsed,
        cpu_s=0.8,
        peak_rss_mb=100.0,
        corridors=corridors,
        send_lag=LatencyHistogram(),
    )
    return BenchResult(SCENARIO, "open", step)


def test_the_json_has_messages_per_second_and_a_corridor_list_with_percentiles():
    doc = result_json(_result())
    assert doc["messages_per_second"] == 200.0  # 400 finals / 2 s
    assert doc["cpu_s_per_1000"] == 2.0  # 0.8 s / 400 messages * 1000
    assert [(c["pop"], c["country"]) for c in doc["corridors"]] == [("fra", "DE"), ("sin", "SG")]
    c = doc["corridors"][0]
    for kind in ("accepted", "carrier_ack", "final"):
        assert set(c[kind]) >= {"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"}
    assert c["final"]["p50_ms"] == pytest.approx(3.1, abs=0.01)
    assert c["throughput"] == 100.0
    assert c["outcomes"] == {"delivered": 190, "failed": 10}
    assert c["errors"] == {}
    json.dumps(doc)


def test_json_round_trips_through_a_file(tmp_path):
    path = tmp_path / "r.json"
    write_json(result_json(_result()), str(path))
    assert read_json(str(path))["messages_per_second"] == 200.0


def test_a_file_that_is_not_a_result_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a bench result"):
        read_json(str(path))


def test_the_table_has_a_row_per_corridor_and_the_overall_line():
    text = format_table(result_json(_result()))
    assert "fra  DE" in text and "sin  SG" in text
    assert "overall: 200 msg/s" in text


def test_compare_gives_ratios_b_over_a():
    a = result_json(_result(base_us=1000, elapsed=2.0))
    b = result_json(_result(base_us=2000, elapsed=4.0))
    cmp = compare(a, b)
    assert cmp["overall"]["messages_per_second"] == 0.5
    row = cmp["corridors"][0]
    assert row["final"]["p50_ms"] == pytest.approx(6.1 / 3.1, rel=0.01)
    assert row["throughput"] == 0.5
    assert "0.50x" in format_compare(cmp, "a.json", "b.json")


def test_compare_skips_missing_or_zero_figures():
    a = {"messages_per_second": 0, "corridors": []}
    b = {"messages_per_second": 10, "corridors": []}
    assert compare(a, b)["overall"]["messages_per_second"] is None


def test_the_chart_is_a_png(tmp_path):
    path = tmp_path / "c.png"
    write_chart(result_json(_result()), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_cli_compares_two_result_files_and_lists_scenarios(tmp_path, capsys):
    import argparse

    from bench.cli import add_bench_arguments, run_bench

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_json(result_json(_result(elapsed=2.0)), str(a))
    write_json(result_json(_result(elapsed=1.0)), str(b))
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    assert run_bench(parser.parse_args(["--compare", str(a), str(b)])) == 0
    assert "messages_per_second    2.00x" in capsys.readouterr().out
    assert run_bench(parser.parse_args(["--list"])) == 0
    assert "default" in capsys.readouterr().out
    assert run_bench(parser.parse_args(["--compare", str(a), str(tmp_path / "none.json")])) == 2


def test_a_soak_result_charts_memory_and_latency_over_time(tmp_path):
    doc = result_json(_result())
    doc["soak"] = {
        "samples": [
            {
                "t": t,
                "rss_mb": 100.0 + t,
                "anon_mb": 50.0,
                "file_mb": 50.0 + t,
                "final_p99_ms": 3.0 if t else None,
                "finals": 10 if t else 0,
            }
            for t in (0.0, 5.0, 10.0)
        ]
    }
    path = tmp_path / "soak.png"
    write_chart(doc, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
