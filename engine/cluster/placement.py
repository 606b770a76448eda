"""Placement: which actors run in which process, and where an account's messages go.

A cluster has one **core** process (accounts, API key index, the ledger - its single writer - and the
ingress: the embedding API's bridge, the HTTP ports) and **workers** ``w0 .. w<N-1>``. Each worker runs,
for the accounts of its partition, their customer sessions, and a shard of every POP (its own LMDB
environment and keys, its own carriers and clock): the worker that takes an account's submit also commits,
routes and delivers it, so the hot path never crosses a process except to reach the ledger (batched) and
to answer the ingress. The single-process engine is the placement where the core runs the POPs too.

An account belongs to worker ``crc32(account_id) mod N`` - stable across restarts and hosts, so each
account's messages live in exactly one worker's stores.

Names (what ``engine.cluster.transport`` delivers to): ``ledger`` and ``bridge`` on the core;
``pop/<name>`` and ``session/<account id>`` on a worker. A POP shard's address, as carried in the messages
it sends the ledger so the answers find it, is ``<node>/<pop name>`` (just ``<pop name>`` in one process).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

CORE = "core"


@dataclass(frozen=True)
class Placement:
    """What this process runs (the defaults: everything, in one process, no NATS)."""

    node: str = ""  # this process's name in the cluster ("" = not in a cluster)
    runs_core: bool = True  # accounts, ledger, ingress
    runs_pops: bool = True  # sessions, POP shards, carriers
    workers: tuple[str, ...] = ()  # every worker of the cluster, in partition order
    nats: tuple[str, ...] = ()  # NATS server URLs
    nats_token_file: str = ""  # a local cluster's own server: the file holding its token (not [nats])
    # a --role core started with fewer workers than it last ran with: the operator accepted that what
    # the missing workers hold is left out of reads (engine.cluster.topology; else refused)
    accept_fewer_workers: bool = False

    @property
    def clustered(self) -> bool:
        return bool(self.node)

    def worker_of(self, account_id: str) -> str:
        """The worker whose partition holds ``account_id``."""
        return self.workers[zlib.crc32(account_id.encode()) % len(self.workers)]

    def pop_address(self, pop: str) -> str:
        return f"{self.node}/{pop}" if self.clustered else pop


def core_placement(workers: int, nats: list[str], nats_token_file: str = "", *,
                   accept_fewer_workers: bool = False) -> Placement:
    return Placement(node=CORE, runs_core=True, runs_pops=False,
                     workers=tuple(f"w{i}" for i in range(workers)), nats=tuple(nats),
                     nats_token_file=nats_token_file, accept_fewer_workers=accept_fewer_workers)


def worker_placement(index: int, workers: int, nats: list[str], nats_token_file: str = "") -> Placement:
    return Placement(node=f"w{index}", runs_core=False, runs_pops=True,
                     workers=tuple(f"w{i}" for i in range(workers)), nats=tuple(nats),
                     nats_token_file=nats_token_file)
