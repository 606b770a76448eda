"""A worker run by hand refuses to start on POP stores sealed under another key store.

The core records which key store sealed its data and refuses another (a wrong ``[keys] dir``); a worker
did not: started with a wrong or empty key directory over its existing POP store, it said it was ready,
made a new key ring and then failed on every record and body it had sealed before. Real ``smsroute run
--role worker`` processes and a real nats-server on loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cluster.nats_server import NatsServer
from storage.env import open_env
from tests.engine.cli_support import Running

pytestmark = pytest.mark.functional


def _worker(tmp_path: Path, nats: str, keys: Path) -> Running:
    config = tmp_path / f"{keys.name}.toml"
    config.write_text(f'[keys]\ndir = "{keys}"\n')
    return Running("run", "--role", "worker", "--workers", "1", "--worker-index", "0", "--nats", nats,
                   "--data-dir", str(tmp_path / "w0"), "--config", str(config))


def test_a_worker_started_with_another_key_directory_over_its_pop_store_is_refused(tmp_path):
    with NatsServer(log_dir=tmp_path / "nats") as nats:
        with _worker(tmp_path, nats.url, tmp_path / "keys") as first:
            first.wait_for_line("smsroute worker w0 ready")  # its POP store is sealed under keys/
            assert first.stop() == 0
        with _worker(tmp_path, nats.url, tmp_path / "empty-keys") as wrong:
            line = wrong.wait_for_line("smsroute worker w0: key_unavailable:")
            assert str(tmp_path / "empty-keys") in line and str(tmp_path / "w0") in line
            assert wrong.proc.wait(30) == 2
            assert not any(x.startswith("smsroute worker w0 ready") for x in wrong.lines)
        with _worker(tmp_path, nats.url, tmp_path / "keys") as right:  # the right one still opens
            right.wait_for_line("smsroute worker w0 ready")
            assert right.stop() == 0


def _forget_recorded_key_store(data_dir: Path) -> int:
    """Make ``data_dir``'s stores look written before they recorded their key store (an upgrade)."""
    forgotten = 0
    for mdb in data_dir.rglob("data.mdb"):
        env = open_env(mdb.parent, map_size=1 << 30)
        try:
            meta = env.open_db(b"key_store")
            with env.begin(write=True) as txn:
                forgotten += txn.delete(b"ring_id", db=meta)
        finally:
            env.close()
    return forgotten


def test_a_worker_store_from_before_the_record_is_refused_with_an_empty_key_directory(tmp_path):
    """A POP store written before it recorded its key store took whatever key directory it was next
    opened with - an empty one too, which then made a new key ring and failed on every record. An empty
    or new key directory is now refused over such a store (again on the next try); the right one still
    opens it, and records itself."""
    with NatsServer(log_dir=tmp_path / "nats") as nats:
        with _worker(tmp_path, nats.url, tmp_path / "keys") as first:
            first.wait_for_line("smsroute worker w0 ready")
            assert first.stop() == 0
        assert _forget_recorded_key_store(tmp_path / "w0") >= 1
        for _ in range(2):  # (a refusal records nothing: the second try is refused as well)
            with _worker(tmp_path, nats.url, tmp_path / "empty-keys") as wrong:
                line = wrong.wait_for_line("smsroute worker w0: key_unavailable:")
                assert str(tmp_path / "empty-keys") in line and "is [keys] dir right" in line
                assert wrong.proc.wait(30) == 2
        with _worker(tmp_path, nats.url, tmp_path / "keys") as right:
            right.wait_for_line("smsroute worker w0 ready")
            assert right.stop() == 0
        with _worker(tmp_path, nats.url, tmp_path / "empty-keys") as wrong:  # recorded again: refused
            wrong.wait_for_line("smsroute worker w0: key_unavailable:")
            assert wrong.proc.wait(30) == 2
