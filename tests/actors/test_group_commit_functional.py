"""The POPs of a process commit together (actors/group_commit.py): one transaction for the batches of
several POPs, and a data directory keeps the layout it was created with."""

from __future__ import annotations

import threading
from concurrent.futures import wait

import pytest

from actors.dispatch import DispatchedActor
from engine import Engine
from engine import messages as m
from tests.engine.crash_support import silent_carriers
from tests.engine.http.conftest import DE_NUMBER, funded_account
from tests.waiting import wait_for

SG_NUMBER = "+6591234567"
pytestmark = pytest.mark.functional


def _commits(engine: Engine) -> int:
    return sum(p["commits"] for p in engine.stats()["pops"])


def test_the_batches_of_two_pops_are_written_in_one_transaction(tmp_path):
    engine = Engine.start(tmp_path / "data", overrides=silent_carriers())  # nothing else to commit
    try:
        group = engine.runtime.group_commit
        assert group is not None and (tmp_path / "data" / "pops" / "_shared" / "data.mdb").exists()
        account = funded_account(engine, "two-pops@example.com")
        rounds, commits = group.rounds, _commits(engine)
        futures = engine.submit_many(account.api_key, [
            {"to": number, "sender": "ACME", "body": "hi"} for number in (DE_NUMBER, SG_NUMBER) * 20])
        wait(futures, timeout=30)
        accepted = [f.result() for f in futures]
        assert {a.pop for a in accepted} == {"fra", "sin"}  # one hand-off, two POPs
        assert _commits(engine) - commits == 2  # each POP committed its batch...
        assert group.rounds - rounds == 1  # ...in one shared transaction
        assert all(engine.status(a.message_id).status == "accepted" for a in accepted)
    finally:
        engine.stop(drain_seconds=0)


def test_a_data_directory_keeps_the_layout_it_was_created_with(tmp_path):
    data = tmp_path / "data"
    per_pop = {**silent_carriers()}
    per_pop["engine"] = {**per_pop["engine"], "shared_pop_store": False}
    first = Engine.start(data, overrides=per_pop)
    try:
        assert first.runtime.group_commit is None
        account = funded_account(first, "layout@example.com")
        kept = first.submit(account.api_key, DE_NUMBER, "ACME", "kept").message_id
    finally:
        first.stop(drain_seconds=0)
    assert (data / "pops" / "fra" / "data.mdb").exists() and not (data / "pops" / "_shared").exists()

    again = Engine.start(data, overrides=silent_carriers())  # the setting says shared: the files do not
    try:
        assert again.runtime.group_commit is None
        assert again.status(kept).status == "accepted"  # resumed from its own POP environment
    finally:
        again.stop(drain_seconds=0)


class _Blocker(DispatchedActor):
    """Holds the actors' dispatcher thread until released, so a test can line up an actor's inbox."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def on_receive(self, message: object) -> None:
        self.entered.set()
        self.release.wait(30)


def _hold_dispatcher() -> _Blocker:
    blocker = _Blocker.start().proxy()._actor  # (the actor object: its events are thread-safe)
    blocker.actor_ref.tell("hold")
    assert blocker.entered.wait(10)
    return blocker


def test_an_erasure_arriving_while_a_batch_is_staged_commits_it_first_and_leaves_nothing(tmp_path):
    """A POP that has staged a batch (written by the committer's next round) and is asked to forget the
    account commits the batch at once, then deletes everything of the account; the round that follows
    writes nothing of it back."""
    engine = Engine.start(tmp_path / "data", overrides=silent_carriers())
    try:
        runtime = engine.runtime
        assert runtime.group_commit is not None
        account = funded_account(engine, "erased-while-staged@example.com")
        engine.submit(account.api_key, DE_NUMBER, "ACME", "committed before")
        pop = runtime.directory.pops["fra"]
        rounds = runtime.group_commit.rounds

        first_hold = _hold_dispatcher()
        [staged] = engine.submit_many(account.api_key, [{"to": DE_NUMBER, "sender": "ACME", "body": "staged"}])
        second_hold = _Blocker.start().proxy()._actor
        second_hold.actor_ref.tell("hold")  # runs after the session has handed the message to the POP
        first_hold.release.set()
        assert second_hold.entered.wait(10)
        pop.tell(m.encode(m.Flush()))  # the POP stages its batch and asks the committer for a round...
        forgotten = pop.ask(m.encode(m.ForgetAccount(account.id)), block=False)  # ...then this arrives
        second_hold.release.set()

        assert forgotten.get(timeout=30) == 2  # the staged message was committed, then deleted with the other
        assert staged.result(timeout=30).pop == "fra"
        other = funded_account(engine, "after@example.com")  # a later round has run...
        engine.submit(other.api_key, DE_NUMBER, "ACME", "later")
        assert runtime.group_commit.rounds > rounds
        left = [r.message_id for r in runtime.pop_stores["fra"].records.for_account(account.id)]
        assert left == []  # ...and wrote nothing of the erased account back (nor kept the first)
        fra = next(p for p in engine.stats()["pops"] if p["pop"] == "fra")
        assert fra["in_flight"] == 1  # the later message: none of the erased account's is still going out
        first_hold.actor_ref.stop()
        second_hold.actor_ref.stop()
    finally:
        engine.stop(drain_seconds=0)


def test_a_pop_that_stops_after_asking_for_a_round_leaves_the_committer_running(tmp_path, caplog):
    """At stop a POP commits what it has staged itself, but the round it asked for in its last turn runs
    after it: the committer told the stopped POP the outcome, got ``ActorDeadError`` and ended with a
    traceback (seen at every shutdown with a full disk, where a POP always has a commit to retry) - and a
    committer that has ended takes down every POP that asks it for a round."""
    engine = Engine.start(tmp_path / "data", overrides=silent_carriers())
    try:
        runtime = engine.runtime
        account = funded_account(engine, "after-stop@example.com")
        engine.submit(account.api_key, SG_NUMBER, "ACME", "its session runs")
        group, fra = runtime.group_commit, runtime.directory.pops["fra"]
        actor, rounds = fra.proxy()._actor, group.rounds
        fra.stop()
        group.request(actor)  # the round it asked for, running after it stopped
        wait_for(lambda: group.rounds > rounds, "the round to run")
        accepted = engine.submit(account.api_key, SG_NUMBER, "ACME", "committed by the next round")
        assert accepted.pop == "sin"  # the committer still runs rounds
        assert "Unhandled exception in CommitterActor" not in caplog.text
    finally:
        engine.stop(drain_seconds=0)
