"""Erasure that survives a disk image: after an account is erased, someone holding the data directory, every
value LMDB ever held for it (stale pages never wiped) AND the master key can read nothing of the account.

The attacker here is deliberately competent: it unwraps every data key the key directory still holds (the
key ring's window and named keys, every per-account key file) with the master key and tries each one on
every value of every LMDB database, at the offsets and with the associated data smsroute uses, then on the
sealed blobs found inside what opened. The same attack before the erasure finds every marker, so the test
cannot pass by being blind. Mail to the account waits in the outbox (the SMTP server is down) when the
images are taken: its address is one of the markers.
"""

from __future__ import annotations

import time
from pathlib import Path

import lmdb
import msgpack

from engine import Engine
from engine.errors import CorruptRecord, KeyUnavailable
from storage.account_keys import PURPOSES, AccountKeys
from storage.crypto import BLOB_OVERHEAD, BLOB_VERSION, Sealer
from storage.keys import KeyRing, LocalKeyProvider
from storage.pseudonyms import Pseudonyms
from tests.engine.crash_support import delivering_carriers
from tests.mailbox import Mailbox

MARKERS = [b"erased.person.z9@example.com", b"renamed.person.z9@example.com", b"4915112355501",
           b"ZNINESNDR", b"TXMARKERz9", b"TWALLETz9", b"BODYz9", b"DEBUGREASONz9", b"HOOKz9"]


def lmdb_values(data_dir: Path) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of every named database of every LMDB environment under ``data_dir``."""
    out = []
    for mdb in data_dir.rglob("data.mdb"):
        env = lmdb.open(str(mdb.parent), readonly=True, lock=False, max_dbs=64, subdir=True)
        try:
            with env.begin() as txn:
                names = [bytes(k) for k, _ in txn.cursor()]
            for name in names:
                try:
                    db = env.open_db(name, create=False)
                except lmdb.Error:
                    continue  # a plain key of the main db, not a database
                with env.begin(db=db) as txn:
                    out.extend((bytes(k), bytes(v)) for k, v in txn.cursor())
        finally:
            env.close()
    return out


def snapshot(engine: Engine, target: Path) -> Path:
    """A consistent copy of every LMDB environment of a running engine (a disk image of that moment)."""
    envs = {"core": engine.runtime.core_env, "mail": engine.mail.env,
            **{f"pop-{n}": s.env for n, s in engine.runtime.pop_stores.items()}}
    for name, env in envs.items():
        (target / name).mkdir(parents=True)
        env.copy(str(target / name))
    return target


def attacker_keys(keys_dir: Path) -> list[Sealer]:
    """Every data key the key directory yields to the holder of the master key (the key ring's, every
    account's, and every key of a mail's own in ``keys/mail``)."""
    provider = LocalKeyProvider(keys_dir)
    ring = KeyRing(keys_dir, provider)
    sealers = [ring.named_sealer(n, create=False) for n in ring.named_keys()]
    sealers += [ring.body_sealer(w, create=False) for w in ring.live_windows()]
    for sub in ("accounts", "mail"):
        keys = AccountKeys(keys_dir / sub, provider, Pseudonyms(ring.secret("pseudonym")))
        for path in (keys_dir / sub).glob("*.key"):
            for purpose in PURPOSES:
                try:
                    sealers.append(keys.sealer_for_token(bytes.fromhex(path.stem), purpose))
                except KeyUnavailable:
                    pass
    return sealers


def readable(values: list[tuple[bytes, bytes]], sealers: list[Sealer],
             aads: list[bytes] = ()) -> list[bytes]:
    """Every plaintext the attacker can get from ``values``, including sealed blobs nested in them
    (``aads``: more associated data to try on nested blobs, e.g. every named key's name)."""
    names = [f"{kind}:{k.decode(errors='ignore')}".encode() for k, _ in values
             for kind in ("hold-notes",)] + list(aads)  # notes are bound to their key's name
    todo = [(blob[off:], aad) for key, blob in values
            for off in (0, 8, 16, 25, 26, 32)  # 25: a link's or challenge's header, 26: a queued
            # mail's, 32: a chain link
            for aad in (key, key[8:], blob[:8] + key, b"")]
    plaintexts = []
    while todo:
        blob, aad = todo.pop()
        if len(blob) < BLOB_OVERHEAD or blob[0] != BLOB_VERSION:
            continue
        for sealer in sealers:
            try:
                text = sealer.open(blob, aad)
            except CorruptRecord:
                continue
            plaintexts.append(text)
            for nested in _nested_blobs(text):
                todo.extend((nested, a) for a in (aad, b"", *names))
    return plaintexts


def _nested_blobs(text: bytes) -> list[bytes]:
    try:
        doc = msgpack.unpackb(text, raw=False)
    except Exception:
        return []
    found, stack = [], [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


def markers_in(plaintexts: list[bytes]) -> set[bytes]:
    return {m for m in MARKERS for p in plaintexts if m in p}


def test_after_erasure_the_master_key_opens_nothing_of_the_account_on_any_page(tmp_path):
    data = tmp_path / "data"
    down = Mailbox()
    port = down.port
    down.close()  # nothing listens there: the account's mail stays queued
    email = {"host": "127.0.0.1", "port": port, "tls": "none", "retry_base_seconds": 60,
             "retry_cap_seconds": 60}
    engine = Engine.start(data_dir=data, overrides={**delivering_carriers(), "email": email})
    try:
        acc = engine.create_account(email="erased.person.z9@example.com")
        engine.register_sender(acc.id, "ZNINESNDR")
        engine.deposit(acc.id, usd="9", chain="tron", tx_hash="0xTXMARKERz9", from_address="TWALLETz9")
        engine.set_webhook(acc.id, "https://hooks.example.com/HOOKz9")
        engine.place_hold("debug_window", actor=f"customer:{acc.id}", reason="DEBUGREASONz9",
                          reference="opt-in", until=time.time() + 3600, account_id=acc.id)
        ids = [engine.submit(acc.api_key, "+4915112355501", "ZNINESNDR", f"BODYz9 {i}",
                             callback_url="https://hooks.example.com/HOOKz9/cb").message_id
               for i in range(5)]
        deadline = time.monotonic() + 30
        while any(engine.status(m).status == "accepted" for m in ids):
            assert time.monotonic() < deadline, "messages did not reach a final status"
            time.sleep(0.05)
        first = lmdb_values(snapshot(engine, tmp_path / "first"))
        engine.rectify_account(acc.id, email="renamed.person.z9@example.com")  # old version: stale
        # every value LMDB held at two moments: what freed, never-wiped pages may keep
        before = first + lmdb_values(snapshot(engine, tmp_path / "before"))
        seen_before = markers_in(readable(before, attacker_keys(data / "keys")))
        assert len(engine.mail.outbox) >= 2  # two confirmation links, to each address, still queued
        engine.erase_account(acc.id)
        engine.sweep_now()
        assert len(engine.mail.outbox) == 0
    finally:
        engine.stop()
    # The attack works while the keys exist: it reads the account's email, number, sender, payment,
    # wallet, webhook URL and the debugging window's reason (bodies are gone at carrier ack already,
    # except the copies the debugging window kept).
    assert seen_before >= {b"erased.person.z9@example.com", b"renamed.person.z9@example.com",
                           b"4915112355501", b"ZNINESNDR", b"TXMARKERz9", b"TWALLETz9", b"HOOKz9",
                           b"DEBUGREASONz9", b"BODYz9"}
    after = lmdb_values(data)
    keys = attacker_keys(data / "keys")
    assert markers_in(readable(before + after, keys)) == set()
    raw = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert [m for m in MARKERS if m in raw] == []
