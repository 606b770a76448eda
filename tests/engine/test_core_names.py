"""One name per account across a cluster (``engine.core_names``): a worker's key ring has a pseudonym
secret of its own, so it names an account by a pseudonym the core cannot compute; what it answers the
core names the account by the core's pseudonym (given with the hold), the core's account filter finds
it, and the core fills in the id of an account that exists - as one process shows it.

Real stores of a worker (hold records, audit log, per-account keys under the worker's own secret) behind
its real query handler and the core's ``ClusterShards`` / ``_RemoteTrail``; only NATS is left out.
Before, the entries kept the worker's pseudonym: the core's filter found none of them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from engine.cluster.cluster_shards import ClusterShards
from engine.cluster.shard_answers import QueryHandler
from engine.cluster.shards import LocalShards
from engine.core_names import CoreNaming, entry_named, hold_answer
from engine.holds import _RemoteTrail
from storage.audit import AuditEntry, AuditLog
from storage.bodies import BodyStore
from storage.env import open_env
from storage.holds import HoldKind, Holds
from storage.keys import KeyRing, LocalKeyProvider
from storage.pseudonyms import Pseudonyms
from tests.engine.test_audit_pages import _Nats
from tests.storage.conftest import FakeClock, account_keys_in

ACC, OTHER = "acc_00000000000000c1", "acc_00000000000000c2"
HOUR = 3600.0


class _Worker:
    """One worker's POP ``fra``: its own key ring (its own pseudonym secret), hold records and audit
    log, answering the core's questions through its ``QueryHandler``."""

    def __init__(self, data_dir, clock: FakeClock) -> None:
        keyring = KeyRing(data_dir / "keys", LocalKeyProvider(data_dir / "keys"), clock=clock)
        self.env = env = open_env(data_dir / "pop_fra", map_size=64 << 20)
        store = BodyStore(env, keyring, max_ttl_seconds=86400, clock=clock)
        self.keys = account_keys_in(data_dir / "keys" / "accounts", ACC, OTHER)
        self.audit = AuditLog(env, clock=clock, accounts=self.keys)
        self.holds = Holds(store, keyring, self.audit, clock=clock, accounts=self.keys)
        placement = SimpleNamespace(pop_address=lambda pop: f"w0/{pop}", runs_core=False)
        self.shards = LocalShards(SimpleNamespace(
            audits={"fra": self.audit}, holds={"fra": self.holds}, pseudonyms=self.keys.pseudonyms,
            account_keys=self.keys, directory=SimpleNamespace(placement=placement)))
        self.handler = QueryHandler(self.shards)

    def own(self, account: str) -> str:
        return self.keys.pseudonyms.pseudonym(account)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def worker(tmp_path, clock) -> Iterator[_Worker]:
    w = _Worker(tmp_path / "worker", clock)
    yield w
    w.env.close()


@pytest.fixture
def core() -> Pseudonyms:
    return Pseudonyms(os.urandom(32))  # the core's secret: not the worker's


def _core_trail(worker: _Worker, core: Pseudonyms, existing: set[str]) -> tuple[_RemoteTrail, ClusterShards]:
    """The core's reading of the worker's trail; ``existing``: the accounts the core still has."""
    tokens = {core.account(a): a for a in existing}
    shards = ClusterShards(_Nats({"w0": worker.handler}), ("w0",))
    return _RemoteTrail(shards, CoreNaming(core.pseudonym, tokens.get)), shards


def _page(trail: _RemoteTrail, about: tuple[str, str] | None = None) -> list[AuditEntry]:
    entries = trail.page(0.0, math.inf, 100, about)
    assert trail.missing == {}
    return entries


def test_a_workers_hold_entries_name_the_account_as_the_core_does_and_its_filter_finds_them(
        worker, core, clock):
    psn = core.pseudonym(ACC)
    assert worker.own(ACC) != psn  # two key rings: two pseudonyms of one account
    placed = worker.shards.place_hold("debug_window", f"customer:{ACC}", "repro", "T-1",
                                      clock.now + HOUR, [], ACC, None, "", psn)
    other = worker.shards.place_hold("debug_window", f"customer:{OTHER}", "repro", "T-2",
                                     clock.now + HOUR, [], OTHER, None, "", core.pseudonym(OTHER))
    assert [(h["subject"], h["account_id"], h["actor"]) for h in placed] == [(psn, ACC, f"customer:{ACC}")]
    assert "core_subject" not in placed[0]  # the answer has the fields one process answers
    clock.advance(1)
    released = worker.shards.release_hold(placed[0]["hold_id"], "support:bob", "done")
    assert released["subject"] == psn
    trail, shards = _core_trail(worker, core, {ACC, OTHER})
    try:
        mine = _page(trail, (psn, ACC))  # GET /v1/audit?account=acc_…
        assert [(e.action, e.subject, e.account_id, e.actor) for e in mine] == [
            ("place_debug_window", psn, ACC, f"customer:{ACC}"),
            ("release_debug_window", psn, ACC, "support:bob")]
        assert _page(trail, (psn, "")) == mine  # GET /v1/audit?subject=psn_… (the core's)
        assert {e.subject for e in _page(trail)} == {psn, core.pseudonym(OTHER)}
        assert [h["hold_id"] for h in other] == [e.target for e in _page(trail, (
            core.pseudonym(OTHER), OTHER))]
    finally:
        shards.close()


def test_after_erasure_the_entries_keep_the_cores_pseudonym_and_no_id(worker, core, clock):
    psn = core.pseudonym(ACC)
    hold = worker.shards.place_hold("debug_window", f"customer:{ACC}", "repro", "T-1",
                                    clock.now + HOUR, [], ACC, None, "", psn)[0]
    worker.holds.forget_account(ACC)  # the core's erasure on the worker: the window ends ...
    worker.keys.shred(ACC)  # ... and the worker's data key of the account goes
    trail, shards = _core_trail(worker, core, set())  # the core's account is gone too
    try:
        after = _page(trail, (psn, ACC))
        assert [(e.action, e.target) for e in after] == [("place_debug_window", hold["hold_id"]),
                                                         ("release_debug_window", hold["hold_id"])]
        assert all(e.subject == psn and e.account_id == "" for e in after)
        assert after[0].actor == f"customer:{psn}"
        assert _page(trail, (psn, "")) == after  # followed by the erasure's ledger_token
        shown = json.dumps([list(e) for e in _page(trail)], default=repr)
        assert worker.own(ACC) not in shown and ACC not in shown
    finally:
        shards.close()


def test_an_older_versions_hold_is_found_by_the_account_id_and_named_as_the_core_does(
        worker, core, clock):
    """A hold placed before the workers kept the core's pseudonym has none: asked by the account's id
    the worker computes its own pseudonym of it, finds the entries and names them as the core does."""
    psn = core.pseudonym(ACC)
    worker.holds.place(HoldKind.DEBUG_WINDOW, actor=f"customer:{ACC}", reason="r", reference="T",
                       until=clock.now + HOUR, account_id=ACC)
    trail, shards = _core_trail(worker, core, {ACC})
    try:
        found = _page(trail, (psn, ACC))
        assert [(e.subject, e.account_id) for e in found] == [(psn, ACC)]
        # unfiltered, an entry the worker could open is named from its id by the core
        assert [(e.subject, e.account_id) for e in _page(trail)] == [(psn, ACC)]
    finally:
        shards.close()


def test_in_one_process_the_names_are_left_as_they_are():
    entry = AuditEntry(1, 1.0, "customer:psn_aa", "place_debug_window", "hold_1", "ok", {}, "psn_aa", "")
    assert entry_named(entry, "") is entry and entry_named(entry, "psn_aa") is entry
    assert entry_named(entry._replace(subject=""), "psn_bb").subject == ""  # about no account
    renamed = entry_named(entry, "psn_bb")
    assert (renamed.subject, renamed.actor) == ("psn_bb", "customer:psn_bb")


def test_a_hold_answer_names_the_account_by_the_cores_pseudonym(worker, core, clock):
    psn = core.pseudonym(ACC)
    hold = worker.holds.place(HoldKind.DEBUG_WINDOW, actor=f"customer:{ACC}", reason="r",
                              reference="T", until=clock.now + HOUR, account_id=ACC,
                              core_subject=psn)[0]
    worker.holds.forget_account(ACC)  # erased: the window ends, the worker's key goes
    worker.keys.shred(ACC)
    reloaded = Holds(worker.holds.bodies, worker.holds.keys, worker.audit, clock=clock,
                     accounts=worker.keys)  # (a restarted worker: the id is gone, the pseudonyms stay)
    ended = reloaded.get(hold.hold_id)
    assert ended.actor == f"customer:{worker.own(ACC)}" and ended.core_subject == psn
    answer = hold_answer(ended, pop="w0/fra")
    assert (answer["subject"], answer["actor"], answer["ended_by"], answer["account_id"]) == (
        psn, f"customer:{psn}", "system:erasure", None)
    assert answer["pop"] == "w0/fra" and "core_subject" not in answer
