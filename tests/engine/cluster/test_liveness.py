"""Liveness of a cluster's children: the supervisor's verdict on a child's beats (a state machine, tested
with hypothesis against its rules), and the child's heartbeat, which beats only while the parts that do
the work answer (a stuck event loop or actor stops it)."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.dispatch import DispatchedActor
from engine.cluster.heartbeat import (
    BEAT,
    Heartbeat,
    actors_probe,
    beat_line,
    full_stores_of,
    loop_probe,
    parts_probe,
)
from engine.cluster.liveness import ALIVE, HUNG, KILL, Deadlines, Liveness
from engine.config import load_settings
from engine.errors import ConfigError
from engine.http.metrics import HttpMetrics, Snapshot
from tests.waiting import wait_for

DEADLINES = Deadlines(hung_after=10.0, kill_after=30.0)

# --- the supervisor's verdict ------------------------------------------------------------------------

events = st.lists(st.tuples(st.sampled_from(["beat", "judge", "excuse"]),
                            st.floats(min_value=0.0, max_value=20.0)), max_size=40)


@given(events)
def test_the_verdict_follows_the_silence_and_each_change_is_reported_once(steps):
    life, now, state, last_beat = Liveness(), 0.0, ALIVE, 0.0
    life.beat(now)  # the ready line
    for kind, dt in steps:
        now += dt
        if kind == "beat":
            life.beat(now)
            last_beat = now
            continue
        if kind == "excuse":
            life.excuse(now)
            last_beat = max(last_beat, now)
            continue
        changed = life.judge(now, DEADLINES)
        silent = now - last_beat
        if state == KILL:  # final: this spawn is being killed, a restart has a new Liveness
            expected = KILL
        else:
            expected = KILL if silent >= 30.0 else HUNG if silent >= 10.0 else ALIVE
        assert changed == (expected if expected != state else None)
        assert life.state == expected
        state = expected


def test_nothing_is_judged_before_the_ready_line():
    life = Liveness()
    assert life.judge(1e9, DEADLINES) is None and life.silent_for(1e9) is None


def test_a_hung_child_that_beats_again_is_alive_and_may_hang_again():
    life = Liveness()
    life.beat(0.0)
    assert life.judge(9.9, DEADLINES) is None
    assert life.judge(10.0, DEADLINES) == HUNG
    assert life.judge(20.0, DEADLINES) is None  # one report per change
    life.beat(21.0)  # SIGCONT, or a stall that ended
    assert life.judge(21.1, DEADLINES) == ALIVE
    assert life.judge(31.0, DEADLINES) == HUNG
    assert life.judge(51.0, DEADLINES) == KILL
    life.beat(52.0)
    assert life.judge(52.0, DEADLINES) is None and life.state == KILL


def test_the_default_deadlines_are_ten_and_thirty_seconds_and_the_kill_comes_after_the_hang():
    deadlines = Deadlines.of(load_settings())
    assert (deadlines.hung_after, deadlines.kill_after, deadlines.beat_every) == (10.0, 30.0, 1.0)
    assert Deadlines(1.0, 3.0).beat_every == 0.2  # five beats within a short test deadline
    with pytest.raises(ConfigError, match="child_kill_after_seconds must be longer"):
        load_settings(None, {"engine": {"child_hung_after_seconds": 5, "child_kill_after_seconds": 5}})


def test_metrics_show_a_hung_child_and_its_kills():
    text = HttpMetrics(lambda: Snapshot(engine={"workers": [
        {"node": "w0", "alive": True, "hung": True, "restarts": 2, "hung_kills": 1},
        {"node": "e0", "alive": True, "hung": False, "restarts": 0, "hung_kills": 0}]})
    ).exposition().decode()
    assert 'smsroute_worker_hung{worker="w0"} 1.0' in text
    assert 'smsroute_worker_hung{worker="e0"} 0.0' in text
    assert 'smsroute_worker_hung_kills_total{worker="w0"} 1.0' in text
    assert 'smsroute_worker_restarts_total{worker="w0"} 2.0' in text


# --- the child's heartbeat ---------------------------------------------------------------------------


def _read_beats(read_fd: int, wanted: int, timeout: float = 5.0) -> list[bytes]:
    """Lines read from the pipe until ``wanted`` came (fails after ``timeout``)."""
    got = b""
    deadline = time.monotonic() + timeout
    while got.count(b"\n") < wanted:
        assert time.monotonic() < deadline, got
        got += os.read(read_fd, 4096)
    return got.splitlines()


class _Loop:
    """An asyncio loop on a thread of its own, which the test can block."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.blocked = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def block(self) -> threading.Event:
        release = threading.Event()

        def stuck() -> None:
            self.blocked.set()
            release.wait(10)

        self.loop.call_soon_threadsafe(stuck)
        return release

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def test_a_stuck_event_loop_stops_the_beats_and_they_resume_when_it_runs_again():
    loop = _Loop()
    read_fd, write_fd = os.pipe()
    beat = Heartbeat("w7", 0.02, [loop_probe(lambda: loop.loop)], fd=write_fd, patience=0.05).start()
    try:
        assert set(_read_beats(read_fd, 3)) == {f"{BEAT} w7".encode()}  # what the supervisor reads
        release = loop.block()
        assert loop.blocked.wait(5)
        rounds = beat.rounds
        wait_for(lambda: beat.rounds >= rounds + 2, "two rounds after the loop stuck", 5)
        beats, rounds = beat.beats, beat.rounds  # (a round under way when it stuck may have beaten)
        wait_for(lambda: beat.rounds >= rounds + 3, "three more rounds", 5)
        assert beat.beats == beats  # none beat while the loop is stuck
        release.set()
        wait_for(lambda: beat.beats > beats, "a beat once the loop runs again", 5)
    finally:
        beat.stop()
        loop.close()
        os.close(read_fd)
        os.close(write_fd)


def test_a_loop_that_is_gone_is_not_a_hang():
    loop = _Loop()
    loop.close()
    assert loop_probe(lambda: loop.loop)(time.monotonic() + 0.1) is True
    assert loop_probe(lambda: None)(time.monotonic() + 0.1) is True


class _Sleeper(DispatchedActor):
    def nap(self, gate: threading.Event) -> None:
        gate.wait(10)


def test_an_actor_stuck_in_a_handler_fails_the_probe_and_is_asked_once_until_it_answers():
    actor = _Sleeper.start()
    try:
        probe = actors_probe(lambda: [actor])
        assert probe(time.monotonic() + 2) is True
        gate = threading.Event()
        actor.proxy().nap(gate)
        assert probe(time.monotonic() + 0.05) is False
        assert probe(time.monotonic() + 0.05) is False
        assert len(actor.actor_inbox._items) == 1  # one question waits, not one per round
        gate.set()
        assert probe(time.monotonic() + 2) is True
    finally:
        actor.stop()
    assert probe(time.monotonic() + 0.05) is True  # stopped: not a hang


def test_the_heartbeat_ends_when_its_pipe_is_gone():
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    beat = Heartbeat("w7", 0.01, [lambda deadline: True], fd=write_fd).start()
    try:
        wait_for(lambda: not beat._thread.is_alive(), "the heartbeat thread ended", 5)
        assert beat.beats == 0
    finally:
        os.close(write_fd)


# --- a worker's full stores, on its beat line ----------------------------------------------------------

store_names = st.lists(st.from_regex(r"[a-z][a-z0-9_:-]{0,20}", fullmatch=True), max_size=4, unique=True)


@given(store_names, st.sampled_from(["w0", "w12", "e3"]))
def test_a_beat_line_names_the_full_stores_and_the_reader_reads_them_back(names, node):
    line = beat_line(node, names).decode()
    assert line.startswith(f"{BEAT} {node}") and line.endswith("\n") and line.count("\n") == 1
    assert full_stores_of(line) == tuple(names)
    if not names:
        assert line == f"{BEAT} {node}\n"  # what a supervisor of an older version reads too


def test_the_heartbeat_names_the_full_stores_of_the_moment_and_the_supervisor_shows_them():
    read_fd, write_fd = os.pipe()
    full: list[str] = ["message:fra"]
    beat = Heartbeat("w7", 0.02, [lambda deadline: True], fd=write_fd,
                     full_stores=lambda: list(full)).start()
    try:
        assert set(_read_beats(read_fd, 2)) == {f"{BEAT} w7 full=message:fra".encode()}
        life = Liveness()
        life.beat(0.0, full_stores_of(f"{BEAT} w7 full=message:fra\n"))
        assert life.full_stores == ("message:fra",)
        full.clear()  # space is back
        wait_for(lambda: f"{BEAT} w7".encode() in _read_beats(read_fd, 1), "a beat naming nothing", 5)
        life.beat(1.0, full_stores_of(f"{BEAT} w7\n"))
        assert life.full_stores == ()
    finally:
        beat.stop()
        os.close(read_fd)
        os.close(write_fd)


def test_without_a_pipe_the_heartbeat_still_announces_each_beat_and_only_beats():
    """A worker no supervisor reads (``--role worker``) writes no beat line, but each round that beat
    is announced (``on_beat``: ``engine.cluster.presence``), and a round that did not is not."""
    answering = threading.Event()
    answering.set()
    announced: list[float] = []
    beat = Heartbeat("w7", 0.01, [lambda deadline: answering.is_set()], fd=None,
                     on_beat=lambda: announced.append(time.monotonic())).start()
    try:
        wait_for(lambda: len(announced) >= 3, "three announcements", 5)
        answering.clear()
        rounds = beat.rounds
        wait_for(lambda: beat.rounds >= rounds + 2, "two rounds after it stopped answering", 5)
        count, rounds = len(announced), beat.rounds
        wait_for(lambda: beat.rounds >= rounds + 3, "three more rounds", 5)
        assert len(announced) == count == beat.beats
    finally:
        beat.stop()


class _Runtime:
    """What ``worker_probes`` reads of a worker's runtime: no POP, no NATS, and the hung parts."""

    def __init__(self) -> None:
        self.hung: dict[str, str] = {}
        self.dead: list[str] = []
        self.directory = type("Directory", (), {"pops": {}})()
        self.transport = None

    def hung_parts(self) -> dict[str, str]:
        return dict(self.hung)

    def dead_parts(self) -> list[str]:
        return list(self.dead)


def test_a_hung_sweeper_or_smpp_loop_stops_a_workers_beats_and_is_logged_once(caplog):
    """A worker whose retention sweeper (or an SMPP carrier's loop) is hung beats no more, so the
    supervisor reports it hung and then restarts it; the worker's log names the part, once."""
    from engine.cluster.worker import worker_probes

    runtime = _Runtime()
    read_fd, write_fd = os.pipe()
    beat = Heartbeat("w3", 0.02, worker_probes("w3", runtime), fd=write_fd, patience=0.05).start()
    try:
        assert set(_read_beats(read_fd, 2)) == {f"{BEAT} w3".encode()}
        runtime.hung = {"sweeper": "no store swept for 901 s"}
        rounds = beat.rounds
        wait_for(lambda: beat.rounds >= rounds + 2, "two rounds after the sweeper hung", 5)
        beats, rounds = beat.beats, beat.rounds
        wait_for(lambda: beat.rounds >= rounds + 3, "three more rounds", 5)
        assert beat.beats == beats  # none while it is hung
        runtime.hung = {}
        wait_for(lambda: beat.beats > beats, "a beat once it works again", 5)
    finally:
        beat.stop()
        os.close(read_fd)
        os.close(write_fd)
    hung_lines = [r for r in caplog.records if getattr(r, "part", None) == "sweeper"]
    assert [r.state for r in hung_lines] == ["hung", "alive"]
    assert "no store swept for 901 s" in hung_lines[0].getMessage()


def test_the_parts_probe_answers_at_once_without_waiting_for_its_deadline():
    probe = parts_probe("w0", lambda: {"carrier:fra-smsc": "its event loop did not turn for 11 s"})
    started = time.monotonic()
    assert probe(started + 30) is False
    assert time.monotonic() - started < 1
    assert parts_probe("w0", dict)(started) is True


def test_a_dead_sweeper_stops_a_workers_beats_like_a_hung_one_and_is_logged_once(caplog):
    """A sweeper whose thread raised and ended (dead, not hung: it stamps nothing, and a part that is
    not running was never hung) left the worker beating: never restarted, no body erased past 24 h.
    Now a dead long-lived part stops the beat as a hung one does; the log says dead, once."""
    from engine.cluster.worker import worker_probes

    runtime = _Runtime()
    read_fd, write_fd = os.pipe()
    beat = Heartbeat("w3", 0.02, worker_probes("w3", runtime), fd=write_fd, patience=0.05).start()
    try:
        assert set(_read_beats(read_fd, 2)) == {f"{BEAT} w3".encode()}
        runtime.dead = ["sweeper"]
        rounds = beat.rounds
        wait_for(lambda: beat.rounds >= rounds + 2, "two rounds after the sweeper died", 5)
        beats, rounds = beat.beats, beat.rounds
        wait_for(lambda: beat.rounds >= rounds + 3, "three more rounds", 5)
        assert beat.beats == beats  # none while it is dead
    finally:
        beat.stop()
        os.close(read_fd)
        os.close(write_fd)
    lines = [r for r in caplog.records if getattr(r, "part", None) == "sweeper"]
    assert [r.state for r in lines] == ["dead"]
    assert "w3: sweeper is dead" in lines[0].getMessage()
