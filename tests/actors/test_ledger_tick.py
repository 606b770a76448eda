"""The ledger's clock tick and the debits' shared write (actors/ledger.py).

Debits wait up to ``DEBIT_WAIT_S`` for others to share one transaction; the clock's tick makes what was
written durable (one fsync) and tells each POP which batches it no longer owes. A tick that also wrote the
debits still waiting for their timer split that shared write in two: one transaction (and its fsync) more
on the actors' thread five times a second, the longest turn the ledger takes under load.
"""

from __future__ import annotations

from types import SimpleNamespace

from actors.ledger import DEBIT_WAIT_S, LedgerActor
from engine import messages as m
from tests.storage.test_ledger_store import fresh, open_ledger


class _Clock:
    """Holds what the ledger schedules; the test fires it."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[float, bytes]] = []

    def schedule(self, delay: float, _target, message: bytes) -> None:
        self.scheduled.append((delay, message))


class _Pop:
    def __init__(self) -> None:
        self.told: list[m.Message] = []

    def tell(self, raw: bytes) -> None:
        self.told.append(m.decode(raw))


def _ledger(tmp_path):
    store = open_ledger(tmp_path)
    pop = _Pop()
    directory = SimpleNamespace(pop_ref=lambda address: pop if address == "fra" else None)
    actor = LedgerActor(store, directory, accounts=None, clock=_Clock())
    return actor, store, pop


def _debits(account: str, batch: int, n: int) -> bytes:
    items = [m.DebitItem(f"msg_{batch}_{i}", account, 1000, 1_700_000_000.0) for i in range(n)]
    return m.encode(m.DebitMessages("fra", batch, items))


def test_a_tick_leaves_debits_waiting_for_their_timer_to_it_and_confirms_them_after_it(tmp_path):
    actor, store, pop = _ledger(tmp_path)
    account = fresh("acc", store)
    actor.on_receive(_debits(account, 1, 3))
    [(delay, timer)] = actor.clock.scheduled
    assert delay == DEBIT_WAIT_S

    actor.on_receive(m.encode(m.Tick(0.0)))  # before the timer: nothing written, nothing confirmed
    assert store.writes == 0
    assert pop.told == []

    actor.on_receive(timer)  # the timer: all of them in one transaction
    assert store.writes == 1
    assert store.balance(account) == -3000
    actor.on_receive(m.encode(m.Tick(0.0)))  # the next tick makes them durable and says so
    assert pop.told == [m.DebitsRecorded([1])]
    store.env.close()


def test_a_tick_writes_debits_no_timer_covers_any_more(tmp_path):
    """A write that failed (a full store) leaves its debits queued with no timer: the tick retries."""
    actor, store, pop = _ledger(tmp_path)
    account = fresh("acc", store)
    actor.on_receive(_debits(account, 7, 2))
    actor._debit_timer = False  # as after a Flush whose write failed and put the debits back
    actor.on_receive(m.encode(m.Tick(0.0)))
    assert store.writes == 1
    assert pop.told == [m.DebitsRecorded([7])]
    store.env.close()


def _refunds(account: str, ids: list[str]) -> bytes:
    return m.encode(m.RefundMessages("fra", [m.RefundItem(i, account, 1000, 1_700_000_000.0)
                                             for i in ids]))


def test_refunds_wait_with_the_debits_for_one_shared_write_and_are_then_durable_and_confirmed(tmp_path):
    """A refund used to be written (and fsynced) at once, after a write of the debits queued before it:
    two synced transactions per refund batch, ~60 per 1,000 messages over HTTP at 3 % refunds. Now it
    waits for the debits' timer like a debit; the refunds of that window then share one write."""
    actor, store, pop = _ledger(tmp_path)
    account = fresh("acc", store)
    actor.on_receive(_debits(account, 1, 2))  # billed first: never refunded before it is billed
    actor.on_receive(_refunds(account, ["msg_1_0"]))
    actor.on_receive(_refunds(account, ["msg_1_1"]))
    [(delay, timer)] = actor.clock.scheduled  # one timer for all of them
    assert delay == DEBIT_WAIT_S
    assert store.writes == 0 and pop.told == []

    actor.on_receive(m.encode(m.Tick(0.0)))  # a tick leaves them to their timer
    assert store.writes == 0

    actor.on_receive(timer)  # the debits, then every refund of the window in one fsynced write
    assert store.writes == 2
    assert store.balance(account) == 0
    assert pop.told == [m.RefundsRecorded(["msg_1_0", "msg_1_1"])]
    store.env.close()


def test_a_tick_writes_refunds_no_timer_covers_any_more(tmp_path):
    """A refund write that failed (a full store) leaves its refunds queued with no timer: the tick
    retries."""
    actor, store, pop = _ledger(tmp_path)
    account = fresh("acc", store)
    actor.on_receive(_refunds(account, ["msg_9"]))
    actor._debit_timer = False  # as after a Flush whose write failed and put the refunds back
    actor.on_receive(m.encode(m.Tick(0.0)))
    assert store.writes == 1
    assert pop.told == [m.RefundsRecorded(["msg_9"])]
    store.env.close()
