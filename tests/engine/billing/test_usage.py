"""Usage rows and their encodings: one row per message (joined with its record and its refund) plus
deposits and adjustments; CSV and JSON that parse back to the same rows, whose amounts add up to the
balance; the columns a message record holds are empty once the record is gone."""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace

import pytest

from engine.billing.usage import (
    CHUNK_ROWS,
    COLUMNS,
    UsageRow,
    encode_csv,
    encode_json,
    parse_time,
    usage_rows,
)
from engine.errors import InputError
from engine.ids import IdGenerator
from storage.env import open_env
from storage.keys import KeyRing, LocalKeyProvider
from storage.ledger import ADJUSTMENT, DEBIT, DEPOSIT, REFUND, LedgerStore
from storage.records import MessageRecord, MessageRecords
from tests.storage.conftest import account_keys_in

T0 = 1_790_000_000.0
ACCOUNT = "acc_00000000000000aa"


@pytest.fixture
def stores(tmp_path):
    keys = account_keys_in(tmp_path / "keys", ACCOUNT)
    core = open_env(tmp_path / "core", map_size=64 << 20)
    ledger = LedgerStore(core, KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))
                         .store_sealer("ledger"), keys)
    pop = open_env(tmp_path / "fra", map_size=64 << 20)
    records = MessageRecords(pop, keys)
    yield SimpleNamespace(ledger=ledger, records=records, env=pop, ids=IdGenerator(clock=lambda: T0),
                          find=lambda ids: [records.get(mid) for mid in ids])
    core.close()
    pop.close()


def message(s, at: float, price: int, *, refunded: int = 0, keep_record: bool = True) -> str:
    mid = s.ids.new()
    if keep_record:
        rec = MessageRecord(mid, ACCOUNT, "+4915112345678", "ACME", "DE", "fra", "c", "GSM-7", 2, price,
                            at, at, "failed" if refunded else "delivered", "", 600, None, 1, 0.0,
                            refunded_micro_usd=refunded)
        with s.env.begin(write=True) as txn:
            s.records.put_many(txn, [rec])
    s.ledger.apply([(DEBIT, ACCOUNT, -price, mid, at, "", "")])
    if refunded:
        s.ledger.apply([(REFUND, ACCOUNT, refunded, mid, at + 5, "", "")])
    return mid


def test_rows_join_debits_with_records_and_refunds_and_add_up_to_the_balance(stores):
    s = stores
    s.ledger.apply([(DEPOSIT, ACCOUNT, 5_000_000, "0xfeed", T0, "tron", "TWallet")])
    delivered = message(s, T0 + 1, 150_000)
    refunded = message(s, T0 + 2, 150_000, refunded=150_000)
    expired = message(s, T0 + 3, 70_000, keep_record=False)  # older than its 90-day record
    s.ledger.apply([(ADJUSTMENT, ACCOUNT, -20_000, "ticket-9", T0 + 4, "", "", "goodwill back", "op")])
    rows = list(usage_rows(s.ledger, s.find, ACCOUNT, 0.0, T0 + 100))
    assert [(r.type, r.id) for r in rows] == [("deposit", "0xfeed"), ("message", delivered),
                                             ("message", refunded), ("message", expired),
                                             ("adjustment", "ticket-9")]
    d, m1, m2, m3, a = rows
    assert (d.amount_micro_usd, d.chain, d.from_address) == (5_000_000, "tron", "TWallet")
    assert (m1.country, m1.segments, m1.status, m1.price_micro_usd, m1.refund_micro_usd,
            m1.amount_micro_usd) == ("DE", 2, "delivered", 150_000, 0, -150_000)
    assert (m2.status, m2.refund_micro_usd, m2.amount_micro_usd) == ("failed", 150_000, 0)
    assert (m3.country, m3.segments, m3.status, m3.price_micro_usd) == ("", "", "", 70_000)
    assert (a.amount_micro_usd, a.reason) == (-20_000, "goodwill back")
    assert sum(r.amount_micro_usd for r in rows) == s.ledger.balance(ACCOUNT)
    assert m1.time == "2026-09-21T14:13:21.000Z"  # ISO 8601, UTC, milliseconds
    assert all("4915112345678" not in str(r) for r in rows)  # never a number


def test_a_period_holds_its_own_items_and_a_message_keeps_a_refund_made_after_it(stores):
    s = stores
    early = message(s, T0 + 10, 1_000, refunded=1_000)  # refunded at T0 + 15
    message(s, T0 + 20, 2_000)
    rows = list(usage_rows(s.ledger, s.find, ACCOUNT, T0, T0 + 12))
    assert [(r.id, r.refund_micro_usd, r.amount_micro_usd) for r in rows] == [(early, 1_000, 0)]
    later = list(usage_rows(s.ledger, s.find, ACCOUNT, T0 + 12, T0 + 30))
    assert [r.price_micro_usd for r in later] == [2_000]  # the refund is not a row of its own


def test_csv_and_json_parse_back_to_the_rows_with_totals_across_many_chunks():
    rows = [UsageRow("message", f"msg_{n}", "2026-01-01T00:00:00.000Z", "DE", 1, "delivered", 75_000,
                     75_000 if n % 7 == 0 else 0, (75_000 if n % 7 == 0 else 0) - 75_000)
            for n in range(CHUNK_ROWS * 2 + 3)]
    rows.append(UsageRow("adjustment", "k,1", "2026-01-02T00:00:00.000Z", amount_micro_usd=5,
                         reason='quotes " and, commas\nand lines'))
    chunks = list(encode_csv(iter(rows)))
    assert len(chunks) >= 3  # streamed a chunk at a time
    parsed = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert tuple(parsed[0]) == COLUMNS and len(parsed) == len(rows)
    assert parsed[-1]["reason"] == 'quotes " and, commas\nand lines' and parsed[-1]["id"] == "k,1"
    assert sum(int(p["amount_micro_usd"]) for p in parsed) == sum(r.amount_micro_usd for r in rows)
    doc = json.loads(b"".join(encode_json(iter(rows), {"account_id": ACCOUNT},
                                          lambda: {"balance_micro_usd": 42})))
    assert doc["account_id"] == ACCOUNT and doc["balance_micro_usd"] == 42
    assert [r["id"] for r in doc["rows"]] == [r.id for r in rows]
    totals = doc["totals"]
    assert totals["amount_micro_usd"] == sum(r.amount_micro_usd for r in rows)
    assert (totals["messages"], totals["adjustments_micro_usd"]) == (len(rows) - 1, 5)
    assert json.loads(b"".join(encode_json(iter([]), {})))["rows"] == []


@pytest.mark.parametrize(("text", "expected"), [
    ("1790000000", 1_790_000_000.0), ("1790000000.5", 1_790_000_000.5),
    ("2026-09-21", 1_789_948_800.0), ("2026-09-21T00:00:00Z", 1_789_948_800.0),
    ("2026-09-21T02:00:00+02:00", 1_789_948_800.0), (None, 7.0), ("", 7.0)])
def test_a_period_bound_is_unix_seconds_or_an_iso_date(text, expected):
    assert parse_time(text, 7.0, "since") == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "inf", "nan"])
def test_a_period_bound_that_is_no_time_is_refused(text):
    with pytest.raises(InputError, match="unix seconds or an ISO 8601 date|finite"):
        parse_time(text, 0.0, "since")


def test_an_offset_whose_plus_a_query_string_turned_into_a_space_is_refused_saying_so():
    """``?since=2026-09-21T02:00:00+02:00`` unencoded reaches the server as ``...T02:00:00 02:00``."""
    with pytest.raises(InputError, match="must be sent as %2B"):
        parse_time("2026-09-21T02:00:00 02:00", 0.0, "since")
