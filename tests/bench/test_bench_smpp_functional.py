"""The bench with SMPP carriers: every corridor bound to the simulated SMSC over loopback."""

from __future__ import annotations

import pytest

from bench import modes
from bench.harness import Bench, RunOptions
from bench.scenario import load_scenario
from bench.smsc import SmscConfig, SmscThread

pytestmark = pytest.mark.functional


def test_the_tiny_scenario_over_smpp_reaches_final_statuses_through_the_smsc():
    sc = load_scenario("tiny").with_load(duration_s=0.25)
    with SmscThread(SmscConfig()) as smsc:
        options = RunOptions(smsc=("127.0.0.1", smsc.port))
        with Bench(sc, options) as bench:
            result = modes.run_open(bench)
        received = len(smsc.smsc.parts)
    step = result.headline
    assert step.sent == 100
    assert step.finals == 100 and step.unfinished == 0 and step.errors == 0
    assert received >= 100
    for c in step.corridors.values():
        assert c.carrier_ack.count == c.finals


def test_a_run_against_the_hostile_smsc_loses_nothing_and_no_status_contradicts_it():
    sc = load_scenario("tiny").with_load(duration_s=1.0, rate=300)
    with Bench(sc, RunOptions(smsc_profile="hostile")) as bench:
        modes.run_open(bench)
        check = bench.check_smsc()
        smsc = bench.smsc.smsc
        answered = {part.status for part in smsc.parts}
    assert check["verdict"] == "ok", check["examples"]
    assert check["messages"] >= 300 and check["lost"] == 0 and check["contradictions"] == 0
    assert len(answered) > 2  # the SMSC really did answer errors, not just ESME_ROK


def test_the_smsc_option_takes_an_address_or_a_profile_name():
    from bench.cli import _parse_smsc

    assert _parse_smsc("127.0.0.1:2775") == (("127.0.0.1", 2775), None)
    assert _parse_smsc("hostile") == (None, "hostile")
    with pytest.raises(ValueError):
        _parse_smsc("nowhere")
