"""A worker whose retention sweeper hangs, or dies, is reported hung by the core, killed and restarted by
the supervisor, and its accounts' messages go through again after.

The sweeper is what erases bodies within 24 hours. A hung one stops the worker's heartbeat (``sweeper
(hung)``, ``actors.sweep_watch``); a dead one - its thread raised and ended - used not to: a part that
is not running is not hung, so the worker beat on, was never restarted, and no body was erased there
again. Now both stop the beat (``Runtime.dead_parts``, ``engine.cluster.heartbeat.parts_probe``).

Real worker process and nats-server; the worker's sweeper is made to hang (a store's sweep that never
returns) or die (the sweeper's own bookkeeping raising) by a ``sitecustomize`` the test puts on the
worker's ``PYTHONPATH``: armed by a file, once - the hook removes the file as it fires, so the restarted
worker sweeps normally. Short deadlines: a sweep every 0.2 s, hung after 0.5 s without progress; a
worker hung after 1 s of silence, killed after 2 s.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.engine.cluster.support import Cluster
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import Client
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

HUNG_AFTER_S, KILL_AFTER_S = 1.0, 2.0

HOOK = '''
"""Test hook (tests/engine/cluster/test_worker_sweeper_functional.py): once the file named by
SMSROUTE_TEST_SWEEPER_FAULT exists, worker w0's retention sweeper hangs or dies (the file says which)."""
import os
import sys
import threading

_FAULT = os.environ.get("SMSROUTE_TEST_SWEEPER_FAULT")


def _armed():
    """The fault the file asks for, once (the file is removed), in worker w0 only."""
    if not _FAULT or sys.argv[sys.argv.index("--index") + 1:][:1] != ["0"]:
        return None
    try:
        with open(_FAULT) as f:
            fault = f.read().strip()
        os.remove(_FAULT)
    except OSError:
        return None
    return fault


if _FAULT:
    from actors.sweep_watch import SweepWatch
    from storage.holds import Holds

    _sweep, _ended = Holds.sweep, SweepWatch.ended
    _fault = {"now": None}

    def sweep(self, now):
        _fault["now"] = _fault["now"] or _armed()
        if _fault["now"] == "hang":
            threading.Event().wait()  # a store's sweep that never returns
        return _sweep(self, now)

    def ended(self):
        if _fault["now"] == "die":
            raise RuntimeError("a bug in the sweeper's bookkeeping")  # out of its handler: it dies
        return _ended(self)

    Holds.sweep, SweepWatch.ended = sweep, ended
'''


def _overrides() -> dict:
    out = webhook_engine_overrides()
    out["engine"] = {**out["engine"], "sweep_interval_seconds": 0.2, "sweep_stall_seconds": 0.5,
                     "child_hung_after_seconds": HUNG_AFTER_S, "child_kill_after_seconds": KILL_AFTER_S}
    return out


def _delivered(c: Cluster, account) -> str:
    accepted = c.engine.submit(account.api_key, "+4915112345678", "ACME", "hi")
    wait_for(lambda: c.final_in_store(accepted.message_id) == "delivered", "the message delivered", 10)
    return accepted.message_id


@pytest.mark.parametrize("fault", ["hang", "die"])
def test_a_worker_whose_sweeper_hangs_or_dies_is_restarted_and_its_messages_go_through(
        tmp_path, monkeypatch, capfd, fault):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    armed = tmp_path / "sweeper.fault"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook),
                                                                    os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("SMSROUTE_TEST_SWEEPER_FAULT", str(armed))
    c = Cluster(tmp_path / "data", 1, overrides=_overrides(), http=True)
    try:
        ops = Client(c.engine.http.control_port,
                     (tmp_path / "data" / "core" / "operator.token").read_text().strip())
        account = c.accounts(1)[0]
        before = _delivered(c, account)
        assert ops.request("GET", "/readyz")[0] == 200
        [w0] = c.cluster.status()

        armed.write_text(fault)  # the next sweep of w0 hangs or dies

        def readyz_names_w0_hung() -> dict | None:
            status, _, body = ops.request("GET", "/readyz")
            return body if status == 503 and "worker:w0 (hung)" in body["error"]["message"] else None

        body = wait_for(readyz_names_w0_hung, "the core's /readyz naming w0 hung", 10)
        assert body["error"]["code"] == "actors_down"
        assert not Path(armed).exists()  # (the fault fired: it was the sweeper)

        def restarted() -> dict | None:
            [now] = c.cluster.status()
            return now if now["pid"] != w0["pid"] and now["ready"] else None

        after = wait_for(restarted, "w0 killed and restarted", KILL_AFTER_S + 10)
        assert after["hung_kills"] == w0["hung_kills"] + 1 and after["restarts"] == w0["restarts"] + 1
        wait_for(lambda: ops.request("GET", "/readyz")[0] == 200, "/readyz 200 again", 10)
        _delivered(c, account)  # its messages go through again
        assert c.final_in_store(before) == "delivered"  # and what it had is still there
        metrics = ops.request("GET", "/metrics")[2].decode()
        assert 'smsroute_worker_hung_kills_total{worker="w0"} 1.0' in metrics
    finally:
        c.stop()
    # the worker's own log (its stderr) said why it stopped beating, once
    why = "hung: no store swept for" if fault == "hang" else "dead: not running"
    assert capfd.readouterr().err.count(f"w0: sweeper is {why}") == 1
