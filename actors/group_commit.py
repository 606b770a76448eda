"""One transaction for the POPs of a process: their group commits share an environment and an fsync.

Why: a POP's commit costs ~200-300 µs of CPU and ~0.5 ms of the actors' thread whatever it holds (LMDB
writes the dirty pages and the meta page synchronously), and the three POPs of a process committed one
after another, each in its own environment, so a message accepted at the third POP waited for three
fsyncs. Here the POPs of a process keep their own named databases (``<pop>/<name>``, through
:class:`PrefixedEnv`) in ONE environment: on ``Flush`` a POP stages its batch (``PopCommit.stage``: nothing
written) and asks the :class:`GroupCommit`; the :class:`CommitterActor`, on the same dispatcher, writes
every staged batch of every POP in one transaction and tells each POP ``GroupCommitted``, after which the
POP answers, bills and announces in its own turn, as after its own commit.

Durability contract (the POP's, unchanged):

* *Durable:* a POP acknowledges customers, sends debits and refunds and emits status events only after the
  transaction holding the batch is committed and fsynced; until then its events wait.
* *Atomic:* each batch is written whole with the others of the round, or not at all.
* *On failure:* the round is retried POP by POP, each alone, so only a POP whose own write fails refuses
  its new messages (with the store's own error); its other changes are pending again for the next commit.
  A full environment refuses on every POP of it: they share its map.
* *Full disk:* a transaction that fails for lack of space (``storage.pop_commit.is_store_full``: no room
  on the disk, or the key of a new body window cannot be stored) while it holds new messages is written
  again at once without them (:func:`write_status_first`): the new messages are refused ``store_full``,
  and the status changes, receipts, refunds and webhook events of messages already accepted - which often
  still fit in pages LMDB freed - are written. Before, every commit carried the new messages that kept
  arriving, failed whole, and no status change was written until submits stopped.
* *Reserve:* once per round, before its transaction, the environment's reserve is checked
  (``storage.pop_commit.refuse_new_when_full``): while it is down to it, the round's new messages are left
  out and refused ``store_full`` by their POPs, and everything else of the round is written.
* *Synchronous paths:* erasure and stop commit a POP's staged batches at once in a transaction of its own
  (:func:`commit_alone`), so nothing staged is written after the caller goes on.
* *Threads:* the committer and the POPs run on one dispatcher thread; the committer writes the batches
  through each POP's own stores between their turns.

An existing data directory whose POPs have environments of their own keeps them (:func:`shared_layout`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pykka

from actors.dispatch import DispatchedActor
from engine import messages as m
from storage.env import open_env
from storage.pop_commit import StagedBatch, as_storage_error, is_store_full, refuse_new_when_full

log = logging.getLogger(__name__)

SHARED_POPS = "_shared"  # <data>/pops/_shared: the POPs of this process in one environment
MAX_DBS_PER_POP = 32


def shared_layout(pops_dir: Path, pops: list[str], default: bool) -> bool:
    """Whether this process's POPs share one environment. A data directory keeps the layout it was
    created with: shared if ``pops/_shared`` exists, one environment per POP if any ``pops/<name>``
    does; a new one follows ``default`` (``engine.shared_pop_store``)."""
    if (pops_dir / SHARED_POPS / "data.mdb").exists():
        return True
    if any((pops_dir / name / "data.mdb").exists() for name in pops):
        return False
    return default


def open_shared_pops(pops_dir: Path, pops: list[str], map_size: int, default: bool) -> GroupCommit | None:
    """The shared environment of ``pops`` and its group commit, or None when they keep one each."""
    if not shared_layout(pops_dir, pops, default):
        return None
    env = open_env(pops_dir / SHARED_POPS, map_size=map_size * max(1, len(pops)),
                   max_dbs=MAX_DBS_PER_POP * max(1, len(pops)))
    return GroupCommit(env)


class PrefixedEnv:
    """One POP's view of the shared environment: every database it opens is named ``<pop>/<name>``; the
    rest (transactions, sync, info) is the shared environment's. Closing it leaves that open."""

    def __init__(self, env: Any, pop: str) -> None:
        self._env = env
        self._prefix = pop.encode() + b"/"

    def open_db(self, key: bytes | None = None, *args: Any, **kwargs: Any) -> Any:
        return self._env.open_db(self._prefix + key if key else key, *args, **kwargs)

    def close(self) -> None:
        pass  # the shared environment is closed once, by its owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


class GroupCommit:
    """The POPs of one shared environment that have staged batches, and the round that writes them."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.committer: Any = None  # the CommitterActor's ref
        self.rounds = 0
        self._waiting: dict[int, Any] = {}
        self._scheduled = False

    def request(self, pop: Any) -> None:
        """``pop`` staged a batch: the next round writes it (one ``Flush`` to the committer per round)."""
        self._waiting[id(pop)] = pop
        if not self._scheduled:
            self._scheduled = True
            self.committer.tell(m.encode(m.Flush()))

    def commit_round(self) -> None:
        self._scheduled = False
        pops, self._waiting = list(self._waiting.values()), {}
        taken = [(pop, pop.take_staged()) for pop in pops]
        refuse_new_when_full(self.env, [b for _, batches in taken for b in batches])  # once a round
        try:
            write_status_first(self.env, taken)
            outcome = [(pop, batches, None) for pop, batches in taken]
            self.rounds += 1
        except Exception as exc:  # noqa: BLE001 - each POP alone, so only a failing one refuses
            if not is_store_full(exc, self.env.path()):  # (a full store: each POP says so, once)
                log.error("group commit failed (%s); each POP commits alone", type(exc).__name__)
            outcome = [(pop, batches, commit_alone(self.env, pop, batches)) for pop, batches in taken]
        for pop, batches, error in outcome:
            if not batches:
                continue  # (a POP that asked and then stopped: its stop committed what it had staged)
            pop.commit_outcome(batches, error)
            try:
                pop.actor_ref.tell(m.encode(m.GroupCommitted()))
            except pykka.ActorDeadError:  # stopped meanwhile: before, this ended the committer
                log.warning("pop %s stopped before its commit outcome reached it", pop.name)


def commit_alone(env: Any, pop: Any, batches: list) -> BaseException | None:
    """``pop``'s staged batches in a transaction of their own; the error if it failed."""
    if not batches:
        return None
    refuse_new_when_full(env, batches)
    try:
        write_status_first(env, [(pop, batches)])
        return None
    except Exception as exc:  # noqa: BLE001 - reported to the POP, which refuses and alarms
        if not is_store_full(exc, env.path()):  # (a full store: the POP alarms, once and a summary)
            log.error("pop %s: commit failed (%s)", pop.name, type(exc).__name__)
        return exc


def write_status_first(env: Any, taken: list[tuple[Any, list[StagedBatch]]]) -> None:
    """Write every batch of ``taken`` (``(pop, batches)`` pairs) in one transaction. If it fails for lack
    of space while it holds new messages, write it again at once without them (each batch's new messages
    are refused with that ``StoreFull``: ``StagedBatch.refuse_new``), so what finishes messages already
    accepted still gets written on a full disk. Raises the error of the last attempt. Costs nothing while
    commits succeed."""
    try:
        _write(env, taken)
        return
    except Exception as exc:  # noqa: BLE001 - re-raised unless a write without new messages is worth it
        batches = [b for _, bs in taken for b in bs]
        if not (any(b.new for b in batches) and is_store_full(exc, env.path())):
            raise
        error = as_storage_error(exc, env.path())  # StoreFull, counted once for the round
    for batch in batches:
        if batch.new:
            batch.refuse_new(error)
    _write(env, taken)


def _write(env: Any, taken: list[tuple[Any, list[StagedBatch]]]) -> None:
    with env.begin(write=True) as txn:
        for pop, batches in taken:
            for batch in batches:
                pop.commit.write_staged(txn, batch)


class CommitterActor(DispatchedActor):
    """Runs a :class:`GroupCommit`'s rounds, on the POPs' dispatcher (after the POPs that were ready)."""

    stage = "commit"

    def __init__(self, group: GroupCommit) -> None:
        super().__init__()
        self.group = group

    def on_receive(self, raw: bytes) -> None:
        if m.decode_or_drop(raw, "committer") is not None:
            self.group.commit_round()
