"""``smsroute compact`` on a stopped engine's data directory, run as an operator would.

After an upgrade from a version that keyed the core store by the plaintext account id, the stores are
migrated to keyed tokens when they open, but the ids stay on LMDB's freed pages: a raw byte scan of
``core/data.mdb`` finds them. After ``smsroute compact`` it does not, and the engine serves the account.
Compaction changes nothing the engine reads (accounts, API keys, balances, messages, holds), finds every
environment of a cluster's layout, and is refused while an engine, a key directory's user or any process
has the stores open. A crash before the rename leaves the old file whole.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import asdict
from pathlib import Path

import lmdb
import msgpack
import pytest

from engine import Engine, apikeys
from storage import compaction
from storage.accounts import AccountRecord
from storage.apikeys import key_id
from storage.datadir import KeysDirLock
from storage.env import open_env
from tests.engine.cli_support import Running, smsroute
from tests.engine.crash_support import delivering_carriers
from tests.storage.conftest import account_keys_in


def write_older_layout(data: Path) -> tuple[AccountRecord, str]:
    """An account as a version before keyed tokens wrote it: its record, its API key's digest index, its
    API key row (and an empty closure and shred queue) all keyed by the plaintext account id, sealed
    under the account's data key in the engine's key directory."""
    keys = account_keys_in(data / "keys")
    api_key = apikeys.new_api_key()
    rec = AccountRecord(id=f"acc_{secrets.token_hex(8)}", email="upgraded.person@example.com",
                        created_at=time.time(), key_digests=[apikeys.digest(api_key)],
                        key_hints=[apikeys.hint(api_key)], senders=["OLDSNDR"])
    keys.create(rec.id)
    sealer, key = keys.sealer(rec.id), rec.id.encode()
    row = f"{rec.id}/{key_id(rec.key_digests[0])}".encode()
    env = open_env(data / "core")
    try:
        with env.begin(write=True) as txn:
            txn.put(key, sealer.seal(msgpack.packb(asdict(rec)), key),
                    db=env.open_db(b"accounts", txn=txn))
            txn.put(rec.key_digests[0], key, db=env.open_db(b"api_key_digests", txn=txn))
            env.open_db(b"account_closures", txn=txn)
            env.open_db(b"account_shred_pending", txn=txn)
            txn.put(row, sealer.seal(msgpack.packb([apikeys.hint(api_key), rec.created_at, None, None]),
                                     row), db=env.open_db(b"api_keys", txn=txn))
    finally:
        env.close()
    return rec, api_key


def files_holding(data: Path, marker: bytes) -> list[str]:
    return [str(p.relative_to(data)) for p in data.rglob("*") if p.is_file() and marker in p.read_bytes()]


def test_after_an_upgrade_compaction_removes_the_account_ids_left_on_freed_pages(tmp_path):
    data = tmp_path / "data"
    Engine.start(data).stop()  # a data directory with its key ring, as the older version left it
    rec, api_key = write_older_layout(data)
    engine = Engine.start(data)  # the stores are migrated to keyed tokens
    try:
        assert engine.account(rec.id) == rec
    finally:
        engine.stop()
    marker = rec.id.encode()
    assert files_holding(data, marker) == ["core/data.mdb"]  # no live key names it: freed pages do

    done = smsroute("compact", "--data-dir", str(data))

    assert done.returncode == 0, done.stderr
    core = next(line for line in done.stdout.splitlines() if line.startswith("core: "))
    before, after = (int(n) for n in core.removeprefix("core: ").removesuffix(" bytes").split(" -> "))
    assert after < before and after == (data / "core" / "data.mdb").stat().st_size
    assert files_holding(data, marker) == []
    engine = Engine.start(data, overrides=delivering_carriers())
    try:
        assert engine.account(rec.id) == rec
        assert engine.account_id_for_key(api_key) == rec.id
        assert [k["hint"] for k in engine.api_keys(rec.id)] == [apikeys.hint(api_key)]
        engine.deposit(rec.id, usd="1", chain="tron", tx_hash="0xafter", from_address="TAFTER")
        assert engine.submit(api_key, "+4915112345678", "OLDSNDR", "after compaction").message_id
    finally:
        engine.stop()


def observed(engine: Engine, account_id: str, ids: list[str]) -> dict:
    """Everything a customer or operator reads of the account, its messages and the holds (not the
    key check: it writes the key's "last used")."""
    return {"account": engine.account(account_id), "balance": engine.balance(account_id),
            "keys": engine.api_keys(account_id),
            "statuses": [engine.status(m) for m in ids],
            "listing": engine.messages(account_id, limit=100),
            "holds": engine.active_holds(), "ledger": engine.runtime.ledger_store.verify().ok}


def test_a_compacted_data_directory_serves_exactly_what_it_served_before(tmp_path):
    data = tmp_path / "data"
    engine = Engine.start(data, overrides=delivering_carriers())
    try:
        acc = engine.create_account(email="compacted@example.com")
        engine.register_sender(acc.id, "ACME")
        engine.deposit(acc.id, usd="5", chain="tron", tx_hash="0xcompact", from_address="TCOMPACT")
        second = engine.create_api_key(acc.id)
        engine.revoke_api_key(acc.id, second.id)
        ids = [engine.submit(acc.api_key, "+4915112345678", "ACME", f"n{n}").message_id for n in range(20)]
        deadline = time.monotonic() + 30
        while any(engine.status(m).status == "accepted" for m in ids):
            assert time.monotonic() < deadline, "messages did not reach a final status"
            time.sleep(0.05)
        engine.place_hold("legal_hold", actor="operator:legal", reason="case 7", reference="LIT-7",
                          until=time.time() + 3600, message_ids=ids[:3])
        for n in range(300):  # churn: pages freed and left behind
            other = engine.create_account(email=f"churn{n}@example.com")
            engine.erase_account(other.id)
    finally:
        engine.stop()
    engine = Engine.start(data, overrides=delivering_carriers())  # what the stopped directory holds
    try:
        expected = observed(engine, acc.id, ids)
    finally:
        engine.stop()
    stores = {str(p.relative_to(data)) for p in compaction.environments(data)}
    assert {"core", "mail", "privacy"} <= stores and any(s.startswith("pops") for s in stores)

    done = smsroute("compact", "--data-dir", str(data))

    assert done.returncode == 0, done.stderr
    reported = {line.split(":")[0]: line for line in done.stdout.splitlines() if " -> " in line}
    assert set(reported) >= stores
    sizes = {name: [int(n) for n in line.split(": ")[1].removesuffix(" bytes").split(" -> ")]
             for name, line in reported.items() if name in stores}
    assert all(after <= before for before, after in sizes.values())
    assert sizes["core"][1] < sizes["core"][0]  # the churn's freed pages are given back
    engine = Engine.start(data, overrides=delivering_carriers())
    try:
        assert observed(engine, acc.id, ids) == expected
        assert engine.account_id_for_key(acc.api_key) == acc.id
        more = engine.submit(acc.api_key, "+4915112345678", "ACME", "after").message_id
        assert engine.status(more) is not None
    finally:
        engine.stop()


CLUSTER_LAYOUT = ("core", "http", "mail", "privacy", "pops/fra", "pops/_shared", "workers/w0/pops/_shared",
                  "workers/w1/pops/sin", "workers/w1/mail", "edges/e0/http")


def test_every_environment_of_a_cluster_layout_is_compacted_with_its_contents_unchanged(tmp_path):
    data = tmp_path / "data"
    for name in CLUSTER_LAYOUT:
        env = open_env(data / name, map_size=64 << 20)
        db = env.open_db(b"things")
        with env.begin(write=True, db=db) as txn:
            for n in range(2000):
                txn.put(f"{name}/{n:05d}".encode(), os.urandom(200))
        with env.begin(write=True, db=db) as txn:
            for n in range(0, 2000, 2):
                txn.delete(f"{name}/{n:05d}".encode())
        env.close()
    (data / "workers" / "w0" / "keys").mkdir(parents=True)  # a worker's key directory, with its lock
    (data / "workers" / "w0" / "keys" / "smsroute.lock").touch()
    contents = {name: _contents(data / name) for name in CLUSTER_LAYOUT}

    done = compaction.compact(data)

    assert sorted(c.name for c in done) == sorted(CLUSTER_LAYOUT)
    assert all(c.after < c.before for c in done)
    assert {name: _contents(data / name) for name in CLUSTER_LAYOUT} == contents
    assert list(data.rglob("*" + compaction.PARTIAL_SUFFIX)) == []


def _contents(path: Path) -> dict[bytes, bytes]:
    env = lmdb.open(str(path), readonly=True, max_dbs=4)
    try:
        with env.begin(db=env.open_db(b"things", create=False)) as txn:
            return {bytes(k): bytes(v) for k, v in txn.cursor()}
    finally:
        env.close()


def test_a_crash_before_the_rename_leaves_the_old_file_whole_and_the_next_run_cleans_up(tmp_path,
                                                                                      monkeypatch):
    data = tmp_path / "data"
    env = open_env(data / "core", map_size=16 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"kept", b"value")
    env.close()
    original = (data / "core" / "data.mdb").read_bytes()

    def crash(src, dst):
        raise OSError(5, "simulated crash before the rename")

    monkeypatch.setattr(compaction.os, "replace", crash)
    with pytest.raises(OSError):
        compaction.compact(data)
    assert (data / "core" / "data.mdb").read_bytes() == original
    (data / "core" / ("data.mdb" + compaction.PARTIAL_SUFFIX)).write_bytes(b"half a copy")  # as a kill
    monkeypatch.undo()

    compaction.compact(data)

    assert not (data / "core" / ("data.mdb" + compaction.PARTIAL_SUFFIX)).exists()
    env = lmdb.open(str(data / "core"), readonly=True)
    with env.begin() as txn:
        assert txn.get(b"kept") == b"value"
    env.close()


def test_compaction_is_refused_while_an_engine_runs_on_the_data_directory(tmp_path):
    data = tmp_path / "data"
    with Running("run", "--data-dir", str(data), "--customer-port", "0", "--control-port", "0") as run:
        run.wait_for_line("smsroute running")
        refused = smsroute("compact", "--data-dir", str(data))
        assert refused.returncode == 2
        assert refused.stderr.startswith("smsroute: data_dir_in_use: ")
        assert len(refused.stderr.splitlines()) == 1
        assert list(data.rglob("*" + compaction.PARTIAL_SUFFIX)) == []
        assert run.stop() == 0
    assert smsroute("compact", "--data-dir", str(data)).returncode == 0  # stopped: it runs


def test_compaction_is_refused_while_the_key_directory_or_a_store_is_in_use(tmp_path):
    data = tmp_path / "data"
    Engine.start(data).stop()
    keys = KeysDirLock(data / "keys")
    keys.acquire()
    try:
        refused = smsroute("compact", "--data-dir", str(data))
    finally:
        keys.release()
    assert (refused.returncode, refused.stderr.split(": ")[:2]) == (2, ["smsroute", "keys_dir_in_use"])
    env = lmdb.open(str(data / "mail"))  # another process (a tool) has a store open
    try:
        refused = smsroute("compact", "--data-dir", str(data))
    finally:
        env.close()
    assert (refused.returncode, refused.stderr.split(": ")[:2]) == (2, ["smsroute", "data_dir_in_use"])
    assert "mail" in refused.stderr
    for wrong in (tmp_path / "nowhere", data / "keys"):  # a mistyped path: refused, nothing created
        missing = smsroute("compact", "--data-dir", str(wrong))
        assert (missing.returncode, missing.stderr.split(": ")[:2]) == (2, ["smsroute", "data_dir_unusable"])
    assert not (tmp_path / "nowhere").exists()


def test_an_engine_started_while_compaction_runs_is_told_that_compaction_holds_the_directory(tmp_path):
    """The locks record who holds them: an operator starting the engine during ``smsroute compact`` is
    told to wait for the compaction, not that "another engine" runs (there is none to stop)."""
    data = tmp_path / "data"
    Engine.start(data).stop()
    with compaction._offline(data, (), []):  # what `smsroute compact` holds while it works
        refused = smsroute("run", "--data-dir", str(data), "--no-http")
    assert refused.returncode == 2
    assert "data_dir_in_use" in refused.stderr and "`smsroute compact`" in refused.stderr
    assert "another smsroute engine" not in refused.stderr
