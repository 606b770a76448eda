"""After an erasure the account id itself is gone from the disk: no key or value of any LMDB environment,
no stale page of any ``data.mdb`` (a raw byte scan), no file name and no file under the data directory
holds ``acc_…`` readable, and the master key opens no copy of it either; no log line written after it
was erased names it.

The account goes through every kind of traffic first (HTTP with idempotency keys, API keys made and
revoked, webhooks, a debugging window, holds naming it, a support case with correspondence, an incident,
a data-subject request, mail held back by a down SMTP server). The same attack before the erasure opens
the account id (in its record, its support case, ...), so the scan cannot pass by being blind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine import Engine
from storage.keys import KeyRing, LocalKeyProvider
from tests.engine.http.conftest import Client, Receiver, overrides, wait_for
from tests.engine.test_erasure_disk_image_functional import (
    attacker_keys,
    lmdb_values,
    readable,
)
from tests.mailbox import Mailbox

CORRESPONDENCE = "CASETEXTr4 my neighbour Jane Roe keeps texting me"


def snapshot(engine: Engine, target: Path) -> Path:
    """A copy of every LMDB environment of the running engine: core, POPs, mail, privacy, HTTP."""
    envs = {"core": engine.runtime.core_env, "mail": engine.mail.env, "privacy": engine.privacy.env,
            "http": engine.http.ctx.requestlog._env,
            **{f"pop-{n}": s.env for n, s in engine.runtime.pop_stores.items()}}
    seen = set()
    for name, env in envs.items():
        if id(env) not in seen:
            seen.add(id(env))
            (target / name).mkdir(parents=True)
            env.copy(str(target / name))
    return target


def key_names(keys_dir: Path) -> list[bytes]:
    """Every named key's name: the associated data of what is sealed under it (hold notes)."""
    ring = KeyRing(keys_dir, LocalKeyProvider(keys_dir))
    return [name.encode() for name in ring.named_keys()]


class Calls(Client):
    """A client whose ``call`` answers (status, body)."""

    def call(self, method: str, path: str, body=None, **kw):
        status, _, payload = self.request(method, path, body, **kw)
        return status, payload


def test_after_erasure_no_file_no_page_and_no_key_holds_the_account_id(tmp_path, logs):
    receiver = Receiver()
    down = Mailbox()
    smtp_port = down.port
    down.close()  # nothing listens there: the account's mail is retried (and logged) until erasure
    data = tmp_path / "data"
    engine = Engine.start(data, http=True, overrides={
        **overrides(), "email": {"host": "127.0.0.1", "port": smtp_port, "tls": "none",
                                 "retry_base_seconds": 0.01, "retry_cap_seconds": 0.05}})
    try:
        account_id, control = _use_everything(engine, receiver)
        marker = account_id.encode()
        case_marker = b"CASETEXTr4"
        before = lmdb_values(snapshot(engine, tmp_path / "before"))
        opened = readable(before, attacker_keys(data / "keys"), key_names(data / "keys"))
        assert any(marker in p for p in opened)  # the attack reads the id while the account lives
        assert any(case_marker in p for p in opened)  # and the support correspondence
        status, erased = control.call("POST", f"/v1/accounts/{account_id}/erase")
        assert status == 200
        erased_at = len(logs.lines)
        _use_afterwards(control, account_id, erased["ledger_token"])
        engine.sweep_now()
        after_live = lmdb_values(snapshot(engine, tmp_path / "after"))
    finally:
        engine.stop()
        receiver.close()
    after = lmdb_values(data)
    assert [k for k, v in after + after_live if marker in k or marker in v] == []
    holding = [str(p.relative_to(data)) for p in data.rglob("*")
               if marker in str(p).encode() or (p.is_file() and marker in p.read_bytes())]
    assert holding == []  # raw bytes: freed pages of every data.mdb included
    opened = readable(before + after, attacker_keys(data / "keys"), key_names(data / "keys"))
    assert [p[:80] for p in opened if marker in p or case_marker in p] == []
    assert [line[:160] for line in logs.lines[erased_at:] if account_id in line] == []
    mail_lines = [line for line in logs.lines if "'name': 'engine.mail" in line]
    assert any("will retry" in line for line in mail_lines)  # the down SMTP server was logged
    assert [line[:160] for line in mail_lines if account_id in line] == []  # by pseudonym only


def _use_everything(engine: Engine, receiver: Receiver) -> tuple[str, Calls]:
    control = Calls(engine.http.control_port, engine.http.token_path.read_text().strip())
    status, acc = control.call("POST", "/v1/accounts", {"email": "residue.r4@example.com"})
    assert status == 201
    account_id = acc["id"]
    api = Calls(engine.http.customer_port, acc["api_key"])
    base = f"/v1/accounts/{account_id}"
    assert control.call("POST", f"{base}/deposits", {
        "usd": "20", "chain": "tron", "tx_hash": "0xTXr4", "from_address": "TWALLETr4"})[0] == 201
    assert control.call("POST", f"{base}/senders", {"sender": "RESIDUE"})[0] == 201
    status, key = api.call("POST", "/v1/keys")
    assert status == 201
    assert api.call("DELETE", f"/v1/keys/{key['id']}")[0] == 200
    assert control.call("POST", f"{base}/keys")[0] == 201
    assert api.call("PUT", "/v1/webhook", {"url": f"{receiver.url}/hook"})[0] == 200
    assert api.call("POST", "/v1/debug-window", {"hours": 1, "reason": "why"})[0] == 201
    ids = []
    for i in range(4):
        status, sent = api.call("POST", "/v1/messages", {
            "to": "+4915112398765", "from": "RESIDUE", "body": f"hello {i}",
            "callback_url": f"{receiver.url}/cb"}, headers={"Idempotency-Key": f"r4-{i}"})
        assert status == 202
        ids.append(sent["id"])
    wait_for(lambda: all(engine.status(m).status != "accepted" for m in ids), what="final statuses")
    receiver.next()
    assert api.call("DELETE", "/v1/debug-window")[0] == 200
    status, order = control.call("POST", "/v1/holds", {
        "kind": "lawful_order", "reason": "order", "reference": "ORDER-1", "authority": "subpoena",
        "until": time.time() + 3600, "account_id": account_id})
    assert status == 201
    status, case = control.call("POST", "/v1/support/cases", {
        "subject": "texts", "text": CORRESPONDENCE, "account_id": account_id})
    assert status == 201
    assert control.call("POST", f"/v1/support/cases/{case['id']}/messages",
                           {"direction": "out", "text": "CASETEXTr4 we are on it"})[0] == 201
    status, incident = control.call("POST", "/v1/incidents", {
        "summary": "a laptop was lost", "detected_at": time.time() - 60, "accounts": [account_id]})
    assert status == 201
    assert control.call("POST", "/v1/dsar", {"account_id": account_id, "type": "access"})[0] == 201
    control.call("GET", f"/v1/audit?account={account_id}")
    control.call("GET", "/v1/stats")
    control.call("GET", "/metrics")
    wait_for(lambda: engine.stats()["mail"]["retried"] >= 1, what="a mail held back by the server")
    return account_id, control


def _use_afterwards(control: Calls, account_id: str, pseudonym: str) -> None:
    """What staff still read once the account is erased: each answer names it by pseudonym only."""
    named = []
    for path in ("/v1/support/cases", "/v1/incidents", "/v1/dsar", "/v1/holds",
                 f"/v1/audit?subject={pseudonym}", "/v1/stats", "/metrics"):
        status, _, payload = control.request("GET", path)
        assert status == 200, path
        text = payload.decode() if isinstance(payload, bytes) else json.dumps(payload)
        named += [path] if account_id in text else []
        assert path == "/v1/stats" or pseudonym in text or path == "/metrics", path
    assert named == [], named
