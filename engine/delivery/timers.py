"""The POP's two kinds of deadline: an attempt's response deadline and a message's validity deadline.

Both are heaps of plain tuples, checked on every tick; an entry whose message is already final (or whose
attempt is over) is skipped when it falls due. So that the heaps follow what is in flight rather than what
has ever been (a validity deadline can be 24 h away), :meth:`Timers.compact` drops stale entries whenever a
heap holds more than twice as many entries as there are live messages.
"""

from __future__ import annotations

import heapq
from collections.abc import Container, Iterator


class Timers:
    def __init__(self) -> None:
        self.responses: list[tuple[float, str, str]] = []  # (monotonic deadline, message id, ref)
        self.validity: list[tuple[float, str]] = []  # (unix deadline, message id)

    def __len__(self) -> int:
        return len(self.responses) + len(self.validity)

    def expect_answer(self, deadline: float, message_id: str, ref: str) -> None:
        heapq.heappush(self.responses, (deadline, message_id, ref))

    def expire_at(self, deadline: float, message_id: str) -> None:
        heapq.heappush(self.validity, (deadline, message_id))

    def due_answers(self, now: float) -> Iterator[tuple[str, str]]:
        """(message id, ref) of every response deadline at or before ``now`` (monotonic)."""
        heap = self.responses
        while heap and heap[0][0] <= now:
            _, message_id, ref = heapq.heappop(heap)
            yield message_id, ref

    def due_expiries(self, now: float) -> Iterator[str]:
        """Message ids whose validity deadline is at or before ``now`` (unix time)."""
        heap = self.validity
        while heap and heap[0][0] <= now:
            yield heapq.heappop(heap)[1]

    def compact(self, live: Container[str], n_live: int) -> None:
        """Drop the entries of messages no longer live once a heap is over twice the live count."""
        if len(self.validity) > 2 * n_live:
            self.validity = [e for e in self.validity if e[1] in live]
            heapq.heapify(self.validity)
        if len(self.responses) > 2 * n_live:
            self.responses = [e for e in self.responses if e[1] in live]
            heapq.heapify(self.responses)
