"""The connector's part queue: first in first out, and a withdrawn message's parts never come out."""

from __future__ import annotations

import asyncio

from engine.smpp.queue import PartQueue
from engine.smpp.submit import SubmitPart


def parts(ref: str, n: int) -> list[SubmitPart]:
    return [SubmitPart(ref, i, n) for i in range(n)]


def test_parts_come_out_in_the_order_they_were_queued():
    q = PartQueue()
    for part in parts("a", 2) + parts("b", 3):
        q.put(part, 0.0)
    out = [q.pop() for _ in range(5)]
    assert [(p.ref, p.part) for p in out] == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2)]
    assert q.pop() is None and len(q) == 0


def test_withdrawing_a_message_takes_back_every_queued_part_and_only_those():
    q = PartQueue()
    for part in parts("a", 2) + parts("b", 3) + parts("c", 1):
        q.put(part, 0.0)
    assert q.pop().ref == "a"  # written: no longer withdrawable
    assert [p.part for p in q.withdraw("b")] == [0, 1, 2]
    assert "b" not in q and q.withdraw("b") == [] and len(q) == 2
    assert [(p.ref, p.part) for p in (q.pop(), q.pop())] == [("a", 1), ("c", 0)]


def test_expiry_takes_out_the_messages_queued_before_a_time_and_keeps_the_rest():
    q = PartQueue()
    for ref, at in (("old", 1.0), ("mid", 2.0), ("new", 3.0)):
        for part in parts(ref, 2):
            q.put(part, at)
    assert [p.ref for p in q.expire(2.0)] == ["old", "old", "mid", "mid"]
    assert len(q) == 2 and "new" in q


def test_a_waiting_reader_gets_the_next_part_put():
    async def run():
        q = PartQueue()
        reader = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        assert not reader.done()
        q.put(SubmitPart("a", 0, 1), 0.0)
        return await asyncio.wait_for(reader, 5)

    assert asyncio.run(run()).ref == "a"
