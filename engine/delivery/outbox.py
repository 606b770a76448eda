"""What a POP tells its carriers once it has handled the current message: submits and withdrawals.

Everything a POP decides while handling one message is collected here and sent when it is done - one
``SubmitToCarrier`` and one ``WithdrawSubmits`` per carrier - so a batch of answers turns into a batch of
submits. A withdrawal of an attempt still waiting here removes it instead: it was never handed over.
"""

from __future__ import annotations

from collections.abc import Container, Iterator

from engine import messages as m


class Outbox:
    def __init__(self) -> None:
        self._submits: dict[str, list[m.CarrierSubmitItem]] = {}
        self._withdrawals: dict[str, list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._submits or self._withdrawals)

    def submit(self, carrier: str, item: m.CarrierSubmitItem) -> None:
        items = self._submits.get(carrier)
        if items is None:
            self._submits[carrier] = [item]
        else:
            items.append(item)

    def withdraw(self, carrier: str, ref: str) -> bool:
        """Withdraw the attempt ``ref``; False if it was still here (now dropped: never handed over)."""
        items = self._submits.get(carrier)
        if items and any(i.ref == ref for i in items):
            self._submits[carrier] = [i for i in items if i.ref != ref]
            return False
        self._withdrawals.setdefault(carrier, []).append(ref)
        return True

    def keep_only(self, live_refs: Container[str]) -> None:
        """Drop pending submits whose attempt is no longer live (erasure)."""
        self._submits = {c: [i for i in items if i.ref in live_refs]
                         for c, items in self._submits.items()}

    def take(self) -> Iterator[tuple[str, m.Message, int]]:
        """(carrier, message, submits in it) for everything collected; the outbox is empty after."""
        submits, self._submits = self._submits, {}
        withdrawals, self._withdrawals = self._withdrawals, {}
        for carrier, items in submits.items():
            if items:
                yield carrier, m.SubmitToCarrier(items), len(items)
        for carrier, refs in withdrawals.items():
            yield carrier, m.WithdrawSubmits(refs), 0
