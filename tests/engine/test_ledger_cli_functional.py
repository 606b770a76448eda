"""``smsroute ledger verify`` and ``smsroute ledger reconcile`` on a stopped engine's data directory, run as
an operator would: an intact ledger verifies (exit 0); one sealed entry edited and another deleted in the
raw store are both reported (exit 1); reconciliation lists the message whose debit went with the deleted
entry; a running engine's directory is refused with a pointer to its control port."""

from __future__ import annotations

import json

import lmdb

from engine import Engine
from storage.ledger_chain import LINK_BYTES
from tests.engine.cli_support import smsroute
from tests.engine.crash_support import delivering_carriers

TOS = ("+4915112345678", "+6591234567", "+5511987654321")


def run_engine(data) -> tuple[str, list[str]]:
    """An account with a deposit and six messages, one debit entry each (sent one at a time)."""
    engine = Engine.start(data, overrides=delivering_carriers())
    try:
        acct = engine.create_account(email="ledger-cli@example.com")
        engine.register_sender(acct.id, "ACME")
        engine.deposit(acct.id, usd="5", chain="tron", tx_hash="0xcli", from_address="TCLI")
        ids = []
        for n in range(6):
            ids.append(engine.submit(acct.api_key, TOS[n % 3], "ACME", f"n{n}").message_id)
            engine.runtime.sync_ledger()  # its debit is written before the next one is told
        assert engine.runtime.ledger_store.head()[0] == 7
    finally:
        engine.stop()
    return acct.id, ids


def test_an_intact_ledger_verifies_and_reconciles_with_exit_status_0(tmp_path):
    run_engine(tmp_path / "data")
    verified = smsroute("ledger", "verify", "--data-dir", str(tmp_path / "data"))
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] and report["entries"] == 7 and report["head"]["seq"] == 7
    reconciled = smsroute("ledger", "reconcile", "--data-dir", str(tmp_path / "data"))
    assert reconciled.returncode == 0, reconciled.stderr
    assert json.loads(reconciled.stdout)["counts"]["records"] == 6


def test_an_entry_edited_and_another_deleted_in_the_raw_store_are_both_reported(tmp_path):
    data = tmp_path / "data"
    _, ids = run_engine(data)
    env = lmdb.open(str(data / "core"), max_dbs=64, subdir=True)
    with env.begin(write=True) as txn:  # no key and no smsroute code: LMDB alone
        db = env.open_db(b"ledger", txn=txn)
        three = bytearray(txn.get((3).to_bytes(8, "big"), db=db))
        three[LINK_BYTES + 30] ^= 0x80
        txn.put((3).to_bytes(8, "big"), bytes(three), db=db)
        txn.delete((5).to_bytes(8, "big"), db=db)
    env.close()

    verified = smsroute("ledger", "verify", "--data-dir", str(data))
    assert verified.returncode == 1
    report = json.loads(verified.stdout)
    assert not report["ok"] and report["first_broken_seq"] == 3
    assert [(p["seq"], p["kind"]) for p in report["problems"]] == [
        (3, "unreadable"), (4, "broken_link"), (5, "missing")]
    assert "ledger chain broken" in verified.stderr

    reconciled = smsroute("ledger", "reconcile", "--data-dir", str(data))
    assert reconciled.returncode == 1
    found = {(d["kind"], d.get("message_id", "")) for d in json.loads(reconciled.stdout)["differences"]}
    # entry 5 held the 4th message's debit; entry 3 (the 2nd message's) no longer opens
    assert ("message_without_debit", ids[3]) in found and ("unreadable_entry", "") in found
    assert any(kind == "balance_mismatch" for kind, _ in found)


def test_the_directory_of_a_running_engine_is_refused_with_a_pointer_to_the_control_port(tmp_path):
    engine = Engine.start(tmp_path / "data")
    try:
        refused = smsroute("ledger", "verify", "--data-dir", str(tmp_path / "data"))
    finally:
        engine.stop()
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("smsroute: data_dir_in_use:")
    assert "GET /v1/ledger/verify" in refused.stderr


def test_a_directory_without_smsroute_data_is_refused_and_left_untouched(tmp_path):
    refused = smsroute("ledger", "reconcile", "--data-dir", str(tmp_path / "nothing"))
    assert refused.returncode == 2 and "data_dir_unusable" in refused.stderr
    assert not (tmp_path / "nothing").exists()
