"""The ledger of a real engine under any interleaving (hypothesis stateful test, issue 14): deposits (new,
replayed, conflicting), submits whose carriers deliver, reject (refunded) or never answer, operator
adjustments (credits, debits, replays, conflicts, overdrafts), erasure, and simulated crashes in which the
ledger's writes of debits and refunds are lost.

After every step: each account's balance equals the sum of its ledger items and the model's own sum, and
is never negative; no message is debited or refunded twice; the hash chain verifies; reconciliation of
records and ledger finds no difference.

A crash is simulated in-process: the ledger's writes of debits and refunds fail (as on a full disk) while
messages are accepted, answered and refunded by their POPs, and the engine then stops with those writes
still failing — exactly what a kill -9 after the POPs' commits leaves. The next start must bill and
refund what was lost, once.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine import Engine
from engine.config import default_document
from engine.errors import (
    AdjustmentConflict,
    AuthError,
    DepositConflict,
    InsufficientBalance,
    StorageError,
)
from storage.ledger import DEBIT, REFUND
from tests.waiting import wait_for

# destination -> (price, what its POP's carriers do)
DESTINATIONS = {"+4915112345678": (75_000, "delivered"), "+6591234567": (35_000, "rejected"),
                "+5511987654321": (28_000, "no_answer")}
TXS = ["0xa", "0xb", "0xc"]
KEYS = ["k1", "k2"]
REASONS = ["goodwill", "correction"]
AMOUNTS = st.sampled_from([50_000, 100_000, 250_000])


def overrides() -> dict:
    doc = default_document()
    outcome = {"fra": "delivered", "sin": "rejected", "gru": "no_answer"}
    carriers = {}
    for name, table in doc["carriers"].items():
        carriers[name] = {**table, "outcomes": {outcome[table["pop"]]: 1.0}, "throughput": 0,
                          "window": 100_000, "latency": {"distribution": "fixed", "ms": 0},
                          "receipt_delay": {"distribution": "fixed", "ms": 0},
                          "late_receipt_rate": 0.0, "duplicate_receipt_rate": 0.0}
    return {"carriers": carriers, "routes": doc["routes"],
            "engine": {"default_validity_seconds": 600, "tick_ms": 20,
                       "ledger_reconcile_at_start": False}}


@dataclass
class Account:
    id: str
    api_key: str
    pseudonym: str
    erased: bool = False
    balance: int = 0  # the model's: what the ledger must say
    messages: list[str] = field(default_factory=list)
    refunded: set[str] = field(default_factory=set)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="smsroute-ledger-sm-"))
        self.engine = Engine.start(self.dir / "data", overrides=overrides())
        self.accounts: list[Account] = []
        self.deposits: dict[tuple[str, str], tuple[str, int, str]] = {}  # (chain, tx) -> details
        self.adjustments: dict[tuple[str, str], tuple[int, str]] = {}  # (account, key) -> details

    def teardown(self) -> None:
        self.engine.stop(drain_seconds=0)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- accounts ---------------------------------------------------------------------------------

    @initialize()
    def open_two_accounts(self) -> None:
        for _ in range(2):
            self._new_account()

    @rule()
    def open_an_account(self) -> None:
        self._new_account()

    def _new_account(self) -> None:
        acct = self.engine.create_account(email="sm@example.com")
        self.engine.register_sender(acct.id, "ACME")
        self.accounts.append(Account(acct.id, acct.api_key,
                                     self.engine.runtime.pseudonyms.pseudonym(acct.id)))

    def _live(self, data) -> Account:
        return data.draw(st.sampled_from([a for a in self.accounts if not a.erased]))

    def _has_live(self) -> bool:
        return any(not a.erased for a in self.accounts)

    # --- deposits: new, replayed, conflicting ---------------------------------------------------------

    @precondition(_has_live)
    @rule(data=st.data(), tx=st.sampled_from(TXS), amount=AMOUNTS,
          address=st.sampled_from(["T1", "T2"]))
    def deposit(self, data, tx: str, amount: int, address: str) -> None:
        acct = self._live(data)
        usd = f"{amount / 1e6:.6f}"
        recorded = self.deposits.get(("tron", tx))
        if recorded is not None and recorded != (acct.id, amount, address):
            with pytest.raises(DepositConflict):
                self.engine.deposit(acct.id, usd, "tron", tx, address)
            return
        self.engine.deposit(acct.id, usd, "tron", tx, address)
        if recorded is None:
            self.deposits[("tron", tx)] = (acct.id, amount, address)
            acct.balance += amount

    # --- submits and their carrier outcomes ---------------------------------------------------------

    @precondition(_has_live)
    @rule(data=st.data(), to=st.sampled_from(sorted(DESTINATIONS)))
    def submit(self, data, to: str) -> None:
        acct = self._live(data)
        price, _ = DESTINATIONS[to]
        if price > acct.balance:
            with pytest.raises(InsufficientBalance):
                self.engine.submit(acct.api_key, to, "ACME", "state machine")
            return
        self._accepted(acct, to, self.engine.submit(acct.api_key, to, "ACME", "sm").message_id)
        self._settle()

    def _accepted(self, acct: Account, to: str, message_id: str) -> None:
        price, outcome = DESTINATIONS[to]
        acct.messages.append(message_id)
        acct.balance -= price
        if outcome == "rejected":  # no carrier acknowledged it: refunded
            acct.refunded.add(message_id)
            acct.balance += price

    def _settle(self) -> None:
        """Wait until every delivered or rejected message is final and every refund is written."""
        def settled() -> bool:
            for acct in self.accounts:
                if acct.erased:
                    continue
                for mid in acct.messages:
                    rec = self.engine.status(mid)
                    if mid in acct.refunded and (rec is None or rec.refunded_micro_usd == 0):
                        return False
                if self.engine.balance(acct.id) != acct.balance:
                    return False
            return True

        wait_for(settled, "messages to settle and refunds to be written", 10)

    # --- operator adjustments -----------------------------------------------------------------------

    @precondition(_has_live)
    @rule(data=st.data(), key=st.sampled_from(KEYS), amount=st.sampled_from([-300_000, -40_000,
                                                                           60_000]),
          reason=st.sampled_from(REASONS))
    def adjust(self, data, key: str, amount: int, reason: str) -> None:
        acct = self._live(data)
        usd = f"{amount / 1e6:.6f}"
        recorded = self.adjustments.get((acct.id, key))
        if recorded is not None and recorded != (amount, reason):
            with pytest.raises(AdjustmentConflict):
                self.engine.billing.adjust(acct.id, usd, reason, key)
            return
        if recorded is None and acct.balance + amount < 0:
            with pytest.raises(InsufficientBalance):
                self.engine.billing.adjust(acct.id, usd, reason, key)
            return
        done = self.engine.billing.adjust(acct.id, usd, reason, key)
        assert done.duplicate == (recorded is not None)
        if recorded is None:
            self.adjustments[(acct.id, key)] = (amount, reason)
            acct.balance += amount
        assert done.balance_micro_usd == acct.balance

    # --- erasure ----------------------------------------------------------------------------------

    @precondition(_has_live)
    @rule(data=st.data())
    def erase(self, data) -> None:
        acct = self._live(data)
        self.engine.erase_account(acct.id)
        acct.erased = True
        with pytest.raises(AuthError):
            self.engine.submit(acct.api_key, "+4915112345678", "ACME", "after erasure")

    # --- a crash that loses the ledger's writes of debits and refunds --------------------------------

    @precondition(_has_live)
    @rule(data=st.data(), tos=st.lists(st.sampled_from(sorted(DESTINATIONS)), min_size=1,
                                       max_size=3))
    def crash_losing_debits_and_refunds(self, data, tos: list[str]) -> None:
        acct = self._live(data)
        store = self.engine.runtime.ledger_store
        real_write = store.write

        def failing(rows, **kw):
            rows = list(rows)
            if any(r[0] in (DEBIT, REFUND) for r in rows):
                raise StorageError("simulated: lost in the crash")
            return real_write(rows, **kw)

        store.write = failing
        spendable = acct.balance  # no refund lands while the ledger cannot write
        for to in tos:
            price = DESTINATIONS[to][0]
            if price > spendable:
                with pytest.raises(InsufficientBalance):
                    self.engine.submit(acct.api_key, to, "ACME", "sm")
                break
            spendable -= price
            self._accepted(acct, to, self.engine.submit(acct.api_key, to, "ACME", "sm").message_id)
        wait_for(lambda: all(self.engine.status(m).refunded_micro_usd for m in acct.refunded
                             if self.engine.status(m) is not None), "refunds owed by the POPs", 20)
        self.engine.stop(drain_seconds=0)  # the ledger's last writes fail: lost, as in a kill -9
        self.engine = Engine.start(self.dir / "data", overrides=overrides())
        self._settle()

    # --- what must hold after every step ------------------------------------------------------------

    @invariant()
    def balances_are_the_sum_of_their_items_and_never_negative(self) -> None:
        self.engine.runtime.sync_ledger()
        ledger = self.engine.runtime.ledger_store
        for acct in self.accounts:
            name = acct.pseudonym if acct.erased else acct.id
            items = list(ledger.entries(name))
            assert ledger.balance(name) == sum(i.amount_micro_usd for i in items) == acct.balance
            assert acct.balance >= 0

    @invariant()
    def no_message_is_debited_or_refunded_twice(self) -> None:
        ledger = self.engine.runtime.ledger_store
        for acct in self.accounts:
            items = list(ledger.entries(acct.pseudonym if acct.erased else acct.id))
            per_kind = Counter(i.kind for i in items)
            assert per_kind[DEBIT] == len(acct.messages)
            assert per_kind[REFUND] == len(acct.refunded)
            if not acct.erased:  # (an erased account's message ids are shredded: counted above)
                debited = Counter(i.reference for i in items if i.kind == DEBIT)
                refunded = Counter(i.reference for i in items if i.kind == REFUND)
                assert set(debited) == set(acct.messages) and max(debited.values(), default=1) == 1
                assert set(refunded) == acct.refunded and max(refunded.values(), default=1) == 1

    @invariant()
    def the_chain_verifies_and_reconciliation_finds_no_difference(self) -> None:
        report = self.engine.runtime.ledger_store.verify()
        assert report.ok, report.as_dict()
        reconciliation = self.engine.billing.reconcile(settle_seconds=0.0)
        assert reconciliation.ok, reconciliation.as_dict()


LedgerMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_the_ledger_holds_under_any_interleaving = LedgerMachine.TestCase
