"""Receipts a POP owes its carriers an answer for: given once what they changed is durable.

An SMSC forgets a delivery receipt once the ``deliver_sm_resp`` says 0, so that answer must not leave before
the POP's commit that holds what the receipt changed (the message's final record, its webhook event). The
carrier hands each receipt over with a token (``ReceiptItem.token``); the POP collects the tokens here and
they ride with the next batch it commits (``StagedBatch.receipts``): that commit succeeding answers them
``stored``, failing - a full disk - answers them not stored, and the carrier refuses them with a temporary
error so the SMSC delivers them again later (``engine.smpp.client``). A receipt that changed nothing (a
duplicate, a message already final) is answered the same way, after whatever was still being written: a
receipt for a message whose final record is waiting for space must not be acknowledged either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pykka

from engine import messages as m

log = logging.getLogger(__name__)

Answers = dict[str, list[int]]  # carrier name -> tokens of its receipts


class ReceiptAnswers:
    """The tokens of the receipts received since the last batch was staged, by carrier."""

    def __init__(self) -> None:
        self._pending: Answers = {}

    def __bool__(self) -> bool:
        return bool(self._pending)

    def add(self, carrier: str, items: Iterable[m.ReceiptItem]) -> None:
        tokens = [it.token for it in items if it.token]
        if tokens:
            self._pending.setdefault(carrier, []).extend(tokens)

    def take(self) -> Answers:
        pending, self._pending = self._pending, {}
        return pending


def merge(into: Answers, more: Answers) -> None:
    """Add ``more``'s tokens to ``into`` (a batch staged earlier takes them along)."""
    for carrier, tokens in more.items():
        into.setdefault(carrier, []).extend(tokens)


def tell_carriers(carriers: dict[str, Any], answers: Answers, stored: bool) -> None:
    """Tell each carrier whether its receipts under these tokens are stored. A carrier that has stopped
    (engine shutdown) is skipped: its binds are closed, and the SMSC delivers what it never had answered
    again on the next bind."""
    for carrier, tokens in answers.items():
        ref = carriers.get(carrier)
        if ref is None:
            continue
        try:
            ref.tell(m.encode(m.ReceiptsStored(tokens, stored)))
        except pykka.ActorDeadError:
            log.info("carrier %s stopped; %d receipt answers left to its SMSC's next delivery",
                     carrier, len(tokens))
