"""A data directory reopened by another topology (one process <-> ``--workers N``) is refused, clearly.

One process keeps its messages in ``<data>/pops``; a cluster's core opens no POP store, its workers keep
them in ``<data>/workers/w<k>``. Reopened the other way round, the open messages were never sent, their
debits and refunds never reached the ledger, and their records could neither be read nor erased - silently.
"""

from __future__ import annotations

import pykka
import pytest

from engine import Engine
from engine.cluster.local import LocalCluster
from engine.cluster.placement import core_placement
from engine.errors import ConfigError
from tests.engine.crash_support import delivering_carriers


def test_a_one_process_directory_is_refused_by_a_clusters_core_and_still_opens_as_one_process(tmp_path):
    data = tmp_path / "data"
    engine = Engine.start(data_dir=data, overrides=delivering_carriers())
    try:
        acct = engine.create_account(email="t@example.com")
        engine.register_sender(acct.id, "ACME")
        engine.deposit(acct.id, usd="10", chain="test", tx_hash="0xt", from_address="addr")
        mid = engine.submit(acct.api_key, "+4915112345678", "ACME", "hello").message_id
    finally:
        engine.stop(drain_seconds=0)

    # refused before it joins any NATS (nothing listens on port 1) and leaves nothing running
    with pytest.raises(ConfigError, match=r"pops.*without --workers"):
        Engine.start(data_dir=data, placement=core_placement(2, ["nats://127.0.0.1:1"]),
                     overrides=delivering_carriers())
    assert pykka.ActorRegistry.get_all() == []

    engine = Engine.start(data_dir=data, overrides=delivering_carriers())
    try:
        assert engine.status(mid) is not None  # the message is still there, in its one-process home
    finally:
        engine.stop(drain_seconds=0)


def test_a_clusters_directory_is_refused_by_one_process_and_by_fewer_workers(tmp_path):
    data = tmp_path / "data"
    for k in (0, 1):  # what two workers leave behind: each one's POP stores
        (data / "workers" / f"w{k}" / "pops").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"w0, w1.*--workers 2"):
        Engine.start(data_dir=data, overrides=delivering_carriers())
    assert not (data / "pops").exists()
    with pytest.raises(ConfigError, match=r"w1, which --workers 1 would not start.*--workers 2"):
        LocalCluster(data, 1)
    LocalCluster(data, 3)  # more workers: every worker's messages are still resumed by their worker


def test_a_worker_that_sealed_under_a_shared_key_dir_starts_on_a_copy_of_it(tmp_path):
    """Workers used to share an absolute ``[keys] dir`` with the core; now each has ``<dir>/w<k>``. A
    worker that already ran (its POP stores exist) must keep opening what it sealed, so its own directory
    starts as a copy of the shared one; a new worker starts empty, and another worker's copy is never
    copied into it."""
    from engine.cluster.local import LocalCluster, _Worker

    keys = tmp_path / "keys"
    (keys / "accounts").mkdir(parents=True)
    (keys / "master.key").write_bytes(b"k" * 32)
    (keys / "keys.store").write_bytes(b"ring")
    (keys / "accounts" / "acc_1").write_bytes(b"wrapped")
    (keys / "w0").mkdir()
    (keys / "w0" / "keys.store").write_bytes(b"w0's own")
    data = tmp_path / "data"
    (data / "workers" / "w1" / "pops").mkdir(parents=True)  # w1 ran before: it has stores
    (data / "workers" / "w2").mkdir(parents=True)  # w2 is new
    cluster = LocalCluster(data, 3, overrides={"keys": {"dir": str(keys)}})

    got = cluster._worker_overrides(_Worker(1), data / "workers" / "w1")
    assert got["keys"]["dir"] == str(keys / "w1")
    assert (keys / "w1" / "keys.store").read_bytes() == b"ring"
    assert (keys / "w1" / "master.key").read_bytes() == b"k" * 32
    assert (keys / "w1" / "accounts" / "acc_1").read_bytes() == b"wrapped"
    assert not (keys / "w1" / "w0").exists()
    assert (keys / "w1").stat().st_mode & 0o777 == 0o700

    assert cluster._worker_overrides(_Worker(2), data / "workers" / "w2")["keys"]["dir"] == str(keys / "w2")
    assert not (keys / "w2").exists()  # new: its key ring creates its own store
