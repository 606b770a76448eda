"""Result JSON shape, the table, the chart and --compare ratios."""

from __future__ import annotations

import json

import pytest

from bench.chart import build_chart, corridor_points, supported_percentile, write_chart
from bench.compare import DifferentScenarios, compare, format_compare
from bench.drive import StepResult
from bench.histogram import LatencyHistogram
from bench.modes import BenchResult
from bench.recorder import CorridorStats
from bench.report import format_table, read_json, result_json, write_json
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
    assert cmp["overall"]["messages_per_second"]["ratio"] == 0.5
    row = cmp["corridors"][0]
    assert row["final"]["p50_ms"]["ratio"] == pytest.approx(6.1 / 3.1, rel=0.01)
    assert row["throughput"]["ratio"] == 0.5
    assert "0.50x" in format_compare(cmp, "a.json", "b.json")


def test_compare_skips_missing_or_zero_figures():
    a = {"messages_per_second": 0, "corridors": []}
    b = {"messages_per_second": 10, "corridors": []}
    assert compare(a, b)["overall"]["messages_per_second"]["ratio"] is None


def test_compare_refuses_runs_of_different_scenarios_unless_allowed_and_then_warns():
    a = result_json(_result())
    b = {**result_json(_result()), "scenario": "saturation", "scenario_digest": "0123456789abcdef"}
    with pytest.raises(DifferentScenarios, match="scenario: t | saturation"):
        compare(a, b)
    cmp = compare(a, b, allow_different=True)
    assert "WARNING: different scenario: t | saturation" in format_compare(cmp, "a", "b")


def test_the_same_scenario_name_with_other_settings_is_a_different_scenario():
    a = result_json(_result())
    b = result_json(BenchResult(SCENARIO.with_load(rate=999.0), "open", _result().headline))
    assert a["scenario"] == b["scenario"] and a["scenario_digest"] != b["scenario_digest"]
    with pytest.raises(DifferentScenarios, match="scenario_digest"):
        compare(a, b)


def test_a_different_offered_rate_or_host_is_only_a_warning():
    a = result_json(_result())
    b = {**result_json(_result()), "offered_rate": 400.0, "host": {"cpus": 64}}
    warnings = compare(a, b)["warnings"]
    assert any(w.startswith("different offered_rate") for w in warnings)
    assert any(w.startswith("different host") for w in warnings)


def _runs(*rates: float) -> list[dict]:
    return [{**result_json(_result()), "messages_per_second": r} for r in rates]


def test_compare_shows_the_run_to_run_noise_and_whether_a_change_is_beyond_it():
    cmp = compare(_runs(100, 104, 98), _runs(103, 101, 105))  # medians 100 -> 103, spreads 6 %, 4 %
    change = cmp["overall"]["messages_per_second"]
    assert change == {"ratio": 1.03, "noise_a": 0.06, "noise_b": 0.039, "within_noise": True}
    assert "run-to-run spread A 6.0%, B 3.9%: within noise" in format_compare(cmp, "a", "b")
    faster = compare(_runs(100, 101), _runs(150, 152))["overall"]["messages_per_second"]
    assert faster["ratio"] == pytest.approx(151 / 100.5, abs=0.001) and faster["within_noise"] is False


def test_with_one_run_per_side_the_noise_is_said_to_be_unknown():
    text = format_compare(compare(_runs(100), _runs(110)), "a.json", "b.json")
    assert "run-to-run noise: unknown with one run per side" in text


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
    assert run_bench(parser.parse_args(["--compare", f"{a},{a}", f"{b},{b}"])) == 0
    assert "spread A 0.0%, B 0.0%: beyond noise" in capsys.readouterr().out
    other = tmp_path / "other.json"
    write_json({**result_json(_result()), "scenario": "saturation"}, str(other))
    assert run_bench(parser.parse_args(["--compare", str(a), str(other)])) == 2
    assert "not of the same scenario" in capsys.readouterr().err
    assert run_bench(parser.parse_args(["--compare", str(a), str(other),
                                        "--allow-different-scenarios"])) == 0
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


def test_the_chart_has_a_log_latency_axis_and_marks_the_target_on_every_panel():
    doc = result_json(_result())
    assert doc["target"] == {"p99_ms": 5.0}
    fig = build_chart(doc)
    for ax in fig.axes:
        assert ax.get_yscale() == "log"
        target_lines = [line for line in ax.get_lines() if line.get_label().startswith("target")]
        assert target_lines and set(target_lines[0].get_ydata()) == {5.0}


def test_percentiles_a_corridor_has_too_few_samples_for_are_not_plotted():
    assert supported_percentile(200) == 99.5 and supported_percentile(0) == 0.0
    few, many = _corridor("fra", "DE", 1000, n=50), _corridor("sin", "SG", 1000, n=5000)
    few_points = corridor_points(few.final.encode())
    many_points = corridor_points(many.final.encode())
    assert few_points and max(p for p, _ in few_points) <= 98.0  # 50 samples: nothing past p98
    assert max(p for p, _ in many_points) > 99.9
    plotted = build_chart({"messages_per_second": 1, "corridors": [
        {"pop": "fra", "country": "DE", "hdr": {"final": few.final.encode()}}]}).axes[2]
    curve = next(line for line in plotted.get_lines() if line.get_label() == "fra/DE")
    highest = max(curve.get_xdata())
    assert highest <= 1 / (1 - 0.98) + 1e-9  # on the chart's x axis (1 / (1 - p))
