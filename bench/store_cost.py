"""The durable store's cost per message, measured on the real stores (``smsroute bench --store-cost``).

What is measured, per message, for the group-commit sizes a POP sees: the accept commit (message record +
AES-256-GCM body + TTL index, one fsynced transaction per batch), the carrier-ack commit (record update +
body discard), and the ledger's debit commit (not fsynced and without per-row answers, as the engine writes
debits: see ``storage.ledger``; one sealed, chained entry per account and batch). Records and the debits' identifiers are sealed under the account's own keys
(``storage.account_keys``), as in the engine: the figures include the per-account key cache. Each figure is the median of ``repeats`` runs of ``messages``
messages, in microseconds of wall time per message, so the fsync is included.

    python -m bench.store_cost --messages 20000 --batch 1 --batch 100 --batch 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from engine.ids import IdGenerator
from storage.account_keys import AccountKeys
from storage.bodies import BodyStore
from storage.env import open_env
from storage.keys import KeyRing, LocalKeyProvider
from storage.ledger import DEBIT, LedgerStore
from storage.pseudonyms import Pseudonyms
from storage.records import MessageRecord, MessageRecords

BODY = "Your verification code is 123456. It expires in 10 minutes. Do not share it."


def _record(mid: str, now: float) -> MessageRecord:
    return MessageRecord(mid, "acc_0123456789abcdef", "+4915112345678", "ACME", "DE", "fra", "", "GSM-7",
                         1, 75000, now, now, "accepted", "", 600, None, 0, 0.0)


def measure(messages: int, batch: int, directory: Path) -> dict[str, float]:
    provider = LocalKeyProvider(directory / "keys")
    keys = KeyRing(directory / "keys", provider)
    account_keys = AccountKeys(directory / "keys" / "accounts", provider,
                               Pseudonyms(keys.secret("pseudonym")))
    account_keys.create("acc_0123456789abcdef")  # records and debits are sealed under its keys
    env = open_env(directory / "pop", map_size=4 << 30)
    records = MessageRecords(env, account_keys)
    bodies = BodyStore(env, keys)
    core = open_env(directory / "core", map_size=4 << 30, sync=False)  # as the engine opens it
    ledger = LedgerStore(core, keys.store_sealer("ledger"), account_keys)
    ids = IdGenerator()
    now = time.time()
    batches = [[ids.new() for _ in range(batch)] for _ in range(max(1, messages // batch))]
    n = len(batches) * batch

    t0 = time.perf_counter()
    for group in batches:
        with env.begin(write=True) as txn:
            records.put_many(txn, [_record(mid, now) for mid in group])
            bodies.put_many(txn, [(mid, BODY, now + 600) for mid in group])
    accept = time.perf_counter() - t0

    t0 = time.perf_counter()
    for group in batches:
        with env.begin(write=True) as txn:
            records.put_many(txn, [_record(mid, now)._replace(carrier_acked_at=now) for mid in group])
            bodies.discard_many(txn, group)
    ack = time.perf_counter() - t0

    t0 = time.perf_counter()
    for group in batches:
        ledger.write([(DEBIT, "acc_0123456789abcdef", -75000, mid, now, "", "") for mid in group],
                     durable=False, answers=False)
    debit = time.perf_counter() - t0
    env.close()
    ledger.env.close()
    return {"accept_us": accept / n * 1e6, "carrier_ack_us": ack / n * 1e6, "debit_us": debit / n * 1e6}


def run(messages: int, batches: list[int], repeats: int = 3) -> list[dict]:
    rows = []
    for batch in batches:
        runs = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="smsroute-store-cost-") as tmp:
                runs.append(measure(messages, batch, Path(tmp)))
        row = {"batch": batch, **{k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}}
        row["total_us"] = round(row["accept_us"] + row["carrier_ack_us"] + row["debit_us"], 2)
        row["max_messages_per_second"] = round(1e6 / row["total_us"])
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'batch':>6} {'accept µs':>10} {'ack µs':>8} {'debit µs':>9} {'total µs':>9} {'≤ msg/s':>9}")
    for r in rows:
        print(f"{r['batch']:>6} {r['accept_us']:>10.2f} {r['carrier_ack_us']:>8.2f} {r['debit_us']:>9.2f} "
              f"{r['total_us']:>9.2f} {r['max_messages_per_second']:>9}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--batch", type=int, action="append", help="group-commit size (repeatable)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = run(args.messages, args.batch or [1, 100, 1000], args.repeats)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
