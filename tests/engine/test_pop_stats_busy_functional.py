"""A POP that does not answer its stats in time is shown as such on ``/v1/stats``, never left out.

Before, the POPs were asked one after the other, 2 s each, and one that did not answer was dropped from
``pops`` without a word: the operator saw a shorter list (and, on a cluster worker, a few busy actors
made the whole worker miss the core's 2 s deadline). One engine with its real control port; one POP's
stats handler is held (the actors share a dispatcher thread, so the POPs after it wait too).
"""

from __future__ import annotations

import threading

import pytest

from actors.pop import PopActor
from tests.engine.http.conftest import Client, start_engine

pytestmark = pytest.mark.functional


def test_a_pop_that_does_not_answer_is_an_error_row_and_the_others_are_kept(tmp_path, monkeypatch):
    engine = start_engine(tmp_path)
    release = threading.Event()
    held = "sin"
    stats = PopActor.stats

    def stats_held(self):
        if self.name == held:
            release.wait(30)  # a busy handler (released when the test ends)
        return stats(self)

    try:
        token = (engine.data_dir / "operator.token").read_text().strip()
        control = Client(engine.http.control_port, token)
        status, _, before = control.request("GET", "/v1/stats")
        assert status == 200
        pops = [p["pop"] for p in before["pops"]]
        assert held in pops and all("error" not in p for p in before["pops"])

        monkeypatch.setattr(PopActor, "stats", stats_held)
        status, _, answer = control.request("GET", "/v1/stats")
        release.set()
        assert status == 200
        assert [p["pop"] for p in answer["pops"]] == pops  # every POP has its row, in order
        row = next(p for p in answer["pops"] if p["pop"] == held)
        assert row["error"] and "in_flight" not in row
        first = answer["pops"][0]
        assert first["pop"] != held and "in_flight" in first and "error" not in first  # answered: kept
    finally:
        release.set()
        engine.stop()
