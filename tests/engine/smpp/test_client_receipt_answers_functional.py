"""A receipt's ``deliver_sm_resp`` says 0 only once its POP has stored what it changed.

The SMSC forgets a receipt answered 0. Before, the bind answered every ``deliver_sm`` 0 as it read it, before
the receipt was even matched, so a receipt whose commit then failed (a full disk) was lost for good: its
message ended ``expired``. Now the POP's word decides (``SmppConnector.answer_receipts``): stored -> 0; not
stored -> ``receipt_retry_status`` (0x64 ESME_RX_T_APPN), which the SMSC delivers again later.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.smsc import SmscConfig
from engine.smpp import pdu as p
from tests.engine.smpp.harness import Harness

pytestmark = pytest.mark.functional

RETRY_FAST = (0.1, 0.2)  # the simulated SMSC's backoff before it delivers a refused receipt again


def test_a_receipt_is_answered_only_when_its_pop_says_it_is_stored():
    async def run():
        async with Harness(SmscConfig(seed=1, receipt_retry_seconds=RETRY_FAST)) as h:
            h.store_receipts = None  # the POP has not committed yet
            h.submit([("a", "+491510000001", "ACME", "hi")])
            await h.until(lambda: h.receipts)
            await asyncio.sleep(0.2)  # time enough for an answer to arrive, were one sent
            unanswered = h.smsc.counters["deliver_sm_resp"]
            h.connector.answer_receipts([h.receipts[0].token], True)
            await h.until(lambda: h.smsc.counters["deliver_sm_resp"] == 1)
            await asyncio.sleep(0.3)  # nothing is delivered again (a 0 answer ends it)
            return h, unanswered

    h, unanswered = asyncio.run(run())
    assert unanswered == 0
    assert [(r.ref, r.state) for r in h.receipts] == [("a", "DELIVRD")]
    assert h.smsc.counters["receipts_retried"] == 0 and h.connector.stats()["receipts_unanswered"] == 0


def test_a_receipt_its_pop_could_not_store_is_refused_delivered_again_and_still_matched():
    """Refused with 0x64: the SMSC delivers it again after its backoff, and the id of the part is still
    known (the final receipt was not stored), so the second delivery reaches the POP as well."""
    async def run():
        async with Harness(SmscConfig(seed=1, receipt_retry_seconds=RETRY_FAST)) as h:
            h.store_receipts = False  # the disk is full
            h.submit([("a", "+491510000001", "ACME", "hi")])
            await h.until(lambda: h.smsc.counters["receipts_retried"] == 2)
            h.store_receipts = True  # space again
            await h.until(lambda: h.smsc.counters["deliver_sm_resp"] == 3)
            await asyncio.sleep(0.4)
            return h

    h = asyncio.run(run())
    assert [(r.ref, r.part, r.state) for r in h.receipts] == [("a", 0, "DELIVRD")] * 3
    assert h.smsc.counters["receipts_sent"] == 3 and h.smsc.counters["receipts_retried"] == 2
    stats = h.connector.stats()
    assert stats["receipts_refused"] == 2 and stats["receipts_unanswered"] == 0
    assert stats["awaiting_receipt"] == 0  # stored at last: the part's id is forgotten


def test_the_retry_status_is_the_carriers_own():
    async def run():
        async with Harness(SmscConfig(seed=1, receipt_retry_seconds=RETRY_FAST),
                           receipt_retry_status=p.ESME_RSYSERR) as h:
            h.store_receipts = False
            h.submit([("a", "+491510000001", "ACME", "hi")])
            await h.until(lambda: h.smsc.counters["receipts_retried"] == 1)
            return h

    h = asyncio.run(run())
    assert h.smsc.counters["receipts_refused"] == 0  # 0x08 is one of the statuses it retries


def test_a_receipt_its_pop_never_answers_gets_the_temporary_error_after_the_response_timeout():
    async def run():
        async with Harness(SmscConfig(seed=1, receipt_retry_seconds=(30.0, 30.0)),
                           resp_timeout_seconds=0.3) as h:
            h.store_receipts = None  # a POP that never answers (stuck)
            h.submit([("a", "+491510000001", "ACME", "hi")])
            await h.until(lambda: h.smsc.counters["receipts_retried"] == 1, timeout=5.0)
            return h

    h = asyncio.run(run())
    stats = h.connector.stats()
    assert stats["receipts_refused"] == 1 and stats["errors"]["receipt_answer_timeout"] == 1
    assert stats["awaiting_receipt"] == 1  # it comes again and is matched then


def test_a_receipt_held_for_an_unknown_id_is_answered_0_after_the_response_timeout():
    """Nothing of ours to store: refusing it would only make the SMSC deliver it again and again."""
    async def run():
        async with Harness(SmscConfig(seed=1, receipts=False, receipt_retry_seconds=RETRY_FAST),
                           resp_timeout_seconds=0.3) as h:
            h.smsc.send_receipt_text(b"id:12345 sub:001 dlvrd:001 stat:DELIVRD err:000")
            await h.until(lambda: h.smsc.counters["deliver_sm_resp"] == 1, timeout=5.0)
            return h

    h = asyncio.run(run())
    assert h.receipts == [] and h.smsc.counters["receipts_retried"] == 0
    assert h.connector.stats()["receipts_held"] == 1  # still matched if its id turns up in time
