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
