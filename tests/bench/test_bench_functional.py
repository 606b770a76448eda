"""The bench end to end on the embedded path: a real engine, the tiny scenario, the CLI's JSON."""

from __future__ import annotations

import argparse
import json

import pytest

from bench import modes
from bench.cli import accounts_of, add_bench_arguments, run_bench
from bench.harness import Bench
from bench.scenario import load_scenario

pytestmark = pytest.mark.functional


def test_the_tiny_scenario_runs_end_to_end_and_every_message_reaches_a_final_status():
    sc = load_scenario("tiny")
    with Bench(sc) as bench:
        result = modes.run_open(bench)
    step = result.headline
    assert step.sent == 200
    assert step.finals == 200
    assert step.unfinished == 0 and step.errors == 0
    assert set(step.corridors) == {("fra", "DE"), ("sin", "SG")}
    for c in step.corridors.values():
        assert c.accepted.count == c.carrier_ack.count == c.final.count == c.finals
        # latencies nest: accepted <= carrier ack <= final, for the same messages
        assert c.accepted.percentile_us(50) <= c.carrier_ack.percentile_us(50)
        assert c.carrier_ack.percentile_us(50) <= c.final.percentile_us(50)
    sg = step.corridors[("sin", "SG")]
    assert set(sg.outcomes) == {"delivered"}
    de = step.corridors[("fra", "DE")]
    assert set(de.outcomes) <= {"delivered", "failed"}


def test_the_cli_writes_json_with_the_documented_shape(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    out = tmp_path / "r.json"
    args = parser.parse_args(["--scenario", "tiny", "--no-progress", "--json", str(out)])
    assert run_bench(args) == 0
    doc = json.loads(out.read_text())
    assert doc["messages_per_second"] > 0
    assert {(c["pop"], c["country"]) for c in doc["corridors"]} == {("fra", "DE"), ("sin", "SG")}
    for c in doc["corridors"]:
        assert {"p50_ms", "p99_ms", "p999_ms", "max_ms"} <= set(c["final"])
    assert "fra  DE" in capsys.readouterr().out


def test_profile_stages_reports_cpu_per_stage_that_adds_up_and_the_commits_of_the_run(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    out = tmp_path / "r.json"
    args = parser.parse_args(["--scenario", "tiny", "--no-progress", "--profile-stages",
                              "--json", str(out)])
    assert run_bench(args) == 0
    stages = json.loads(out.read_text())["stages"]
    assert stages["messages"] == 200
    per_stage = stages["us_per_message"]
    assert {"POP: group commits", "POP: answer, bill, route after the commit",
            "session: validate, price, reserve",
            "host: submit (incl. the bench driver)", "ledger: write debits"} <= set(per_stage)
    # the stages account for the whole process's CPU: the unattributed rest is a stage of its own
    assert sum(per_stage.values()) == pytest.approx(stages["cpu_us_per_message"], rel=0.01, abs=0.5)
    commits = stages["commits"]
    assert commits["pop"] >= 2 and commits["ledger"] >= 1  # two POPs (fra, sin) took messages
    assert commits["messages_per_pop_commit"] == round(200 / commits["pop"], 1)
    printed = capsys.readouterr().out
    assert "CPU per message by stage" in printed
    assert f"commits: {commits['pop']} by the POPs" in printed


@pytest.mark.parametrize("option", ["--messages", "--accounts", "--webhook-batch", "--linearity",
                                    "--smsc-window", "--smsc-binds"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_count_below_one_is_refused_instead_of_running_an_empty_or_default_bench(option, value,
                                                                                     capsys):
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args([option, value])
    assert option in capsys.readouterr().err


def test_profile_stages_on_the_http_path_is_refused_before_the_run(capsys):
    """The stages are measured in this process; with --path http the engine runs in a child process,
    so the flag would be ignored: the user is told at once instead."""
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    assert run_bench(parser.parse_args(["--scenario", "tiny", "--no-progress", "--path", "http",
                                        "--profile-stages"])) == 2
    assert "--profile-stages" in capsys.readouterr().err


def test_a_bad_scenario_name_exits_with_code_two(capsys):
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    assert run_bench(parser.parse_args(["--scenario", "no-such-scenario"])) == 2
    assert "no scenario" in capsys.readouterr().err


def test_a_short_soak_samples_memory_and_latency_windows_and_judges_the_heap():
    sc = load_scenario("tiny").with_load(rate=300.0)
    with Bench(sc) as bench:
        result = modes.run_soak(bench, minutes=0.05, sample_s=0.2)
    soak = result.soak
    samples = soak["samples"]
    assert len(samples) >= 5
    assert all(s["anon_mb"] > 0 and s["rss_mb"] >= s["anon_mb"] for s in samples)
    assert sum(s["finals"] for s in samples) == result.headline.finals
    assert soak["flat"] in (True, False)
    assert {"growth_mb", "slope_mb_per_min", "rss_slope_mb_per_min"} <= set(soak)


def test_the_linearity_mode_reports_a_cpu_ratio_for_ten_times_the_messages():
    with Bench(load_scenario("tiny")) as bench:
        result = modes.run_linearity(bench, 50, repeats=1)
    lin = result.linearity
    assert lin["messages"] == [50, 500]
    assert lin["cpu_s"][1] > 0 and lin["ratio"] > 0


@pytest.mark.parametrize("argv,accounts", [([], 1), (["--workers", "2"], 2), (["--workers", "3"], 3),
                                           (["--workers", "2", "--accounts", "8"], 8),
                                           (["--accounts", "5"], 5)])
def test_the_default_accounts_are_one_per_engine_process_and_accounts_still_chooses(argv, accounts):
    """Single process and cluster compare like with like: by default each engine process (the single
    one, or each worker) serves one account (before: 1 against 8 with --workers)."""
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    assert accounts_of(parser.parse_args(argv)) == accounts
