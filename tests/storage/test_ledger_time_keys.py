"""Debits and refunds are indexed under keys that start with their message's time, so one write's index
rows sit together; a ledger written before (plain keyed hashes) still never bills a message twice."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ids import IdGenerator
from storage import ledger_write
from storage.ledger import DEBIT, REFUND
from tests.storage.test_ledger_store import fresh, open_ledger

MS = st.integers(min_value=0, max_value=2**48 - 1)


def _mid(ms: int, tail: int = 0) -> str:
    return f"msg_{ms:012x}{tail:020x}"


@settings(max_examples=200, deadline=None)
@given(a=MS, b=MS, tails=st.tuples(st.integers(0, 2**80 - 1), st.integers(0, 2**80 - 1)),
       kind=st.sampled_from([DEBIT, REFUND]))
def test_keys_of_messages_in_different_64ms_buckets_sort_like_the_messages_times(a, b, tails, kind):
    keys = ledger_write.NaturalKeys(b"k" * 32)
    ka, kb = keys.of(kind, _mid(a, tails[0])), keys.of(kind, _mid(b, tails[1]))
    assert len(ka) == len(kb) == ledger_write.KEY_BYTES
    if a >> ledger_write.BUCKET_SHIFT != b >> ledger_write.BUCKET_SHIFT:
        assert (ka < kb) == (a < b)


def test_a_write_of_time_ordered_debits_puts_its_index_rows_side_by_side(tmp_path):
    store = open_ledger(tmp_path)
    account = fresh("acc", store)
    earlier = IdGenerator(clock=lambda: time.time() - 5)
    for _ in range(3):  # earlier messages: the new rows must go after theirs, not among them
        store.write([(DEBIT, account, -1, earlier.new(), time.time(), "", "") for _ in range(300)],
                    durable=False, answers=False)
    batch = [IdGenerator().new() for _ in range(300)]
    store.write([(DEBIT, account, -1, mid, time.time(), "", "") for mid in batch],
                durable=False, answers=False)
    mine = {store.natural_key(DEBIT, mid) for mid in batch}
    with store.env.begin() as txn:
        order = [bytes(k) for k, _ in txn.cursor(db=store._idem)]
    positions = sorted(order.index(k) for k in mine)
    assert positions == list(range(len(order) - len(batch), len(order)))  # one run, at the end
    store.env.close()


def _legacy_keys(monkeypatch) -> None:
    """Write as the version before did: the plain keyed hash for every debit and refund."""
    of = ledger_write.NaturalKeys.of

    def old(self, kind, reference, scope=""):
        if not scope and kind in (DEBIT, REFUND):
            return self.legacy_of(kind, reference)
        return of(self, kind, reference, scope)

    monkeypatch.setattr(ledger_write.NaturalKeys, "of", old)


def test_a_debit_or_refund_recorded_by_the_version_before_is_not_billed_again(tmp_path, monkeypatch):
    with monkeypatch.context() as old:
        _legacy_keys(old)
        store = open_ledger(tmp_path)
        store._marked = True  # (the version before kept no cut-over)
        account = fresh("acc", store)
        ids = IdGenerator()
        debited = [ids.new() for _ in range(5)]
        store.write([(DEBIT, account, -100, mid, time.time(), "", "") for mid in debited])
        store.write([(REFUND, account, 100, debited[0], time.time(), "", "")])
        balance = store.balance(account)
        store.env.close()

    store = open_ledger(tmp_path)  # the new version on the same files
    assert store.legacy_before_ms > time.time() * 1000
    again = store.write([(DEBIT, account, -100, mid, time.time(), "", "") for mid in debited]
                        + [(REFUND, account, 100, debited[0], time.time(), "", "")])
    assert [new for _, new in again.results] == [False] * 6
    assert store.balance(account) == balance
    assert all(store.has(DEBIT, mid) and store.recorded(DEBIT, mid) for mid in debited)
    assert store.find(REFUND, debited[0]).amount_micro_usd == 100
    later = ids.new()
    written = store.write([(DEBIT, account, -100, later, time.time(), "", "")])
    assert [new for _, new in written.results] == [True]
    assert store.balance(account) == balance - 100
    store.env.close()

    store = open_ledger(tmp_path)  # the cut-over is recorded: the same after a restart
    again = store.write([(DEBIT, account, -100, mid, time.time(), "", "") for mid in debited + [later]])
    assert [new for _, new in again.results] == [False] * 6
    assert store.balance(account) == balance - 100
    store.env.close()


def test_a_ledger_made_by_this_version_never_looks_for_old_keys(tmp_path):
    store = open_ledger(tmp_path)
    account = fresh("acc", store)
    store.write([(DEBIT, account, -100, IdGenerator().new(), time.time(), "", "")])
    assert store.legacy_before_ms == 0
    store.env.close()
    store = open_ledger(tmp_path)
    assert store.legacy_before_ms == 0
    store.env.close()
