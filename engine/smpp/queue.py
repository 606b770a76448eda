"""The parts of one carrier waiting for a bind's window slot: first in, first out, withdrawable by ref.

Why not ``asyncio.Queue``: a part that is still here has not been written to any socket, so it can be taken
back. When the POP abandons an attempt (or another part of the same message failed) every part of that
message still queued is withdrawn and answered ``withdrawn``; only parts already written can reach the SMSC.

Parts are kept per message ref in arrival order (an ``OrderedDict`` of ref -> parts), so taking the next part,
withdrawing a whole message and expiring what has waited too long are each O(parts touched). The parts of
one message arrive together, so the order is the same as one FIFO of parts.

Plain data plus one ``asyncio.Event`` that wakes the binds' send loops; everything runs on the connector's
event loop thread.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque

from engine.smpp.submit import SubmitPart


class PartQueue:
    """Parts waiting to be written, by message ref. Not thread-safe: the connector's loop owns it."""

    def __init__(self) -> None:
        self._by_ref: OrderedDict[str, tuple[float, deque[SubmitPart]]] = OrderedDict()
        self._size = 0
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return self._size

    def __contains__(self, ref: object) -> bool:
        """Is any part of message ``ref`` still queued?"""
        return ref in self._by_ref

    def put(self, part: SubmitPart, queued_at: float) -> None:
        """Queue ``part`` behind everything already queued (``queued_at``: monotonic seconds)."""
        entry = self._by_ref.get(part.ref)
        if entry is None:
            self._by_ref[part.ref] = (queued_at, deque((part,)))
        else:
            entry[1].append(part)
        self._size += 1
        self._ready.set()

    def pop(self) -> SubmitPart | None:
        """The next part to write, or None when nothing is queued."""
        if not self._by_ref:
            return None
        ref, (_, parts) = next(iter(self._by_ref.items()))
        part = parts.popleft()
        if not parts:
            del self._by_ref[ref]
        self._size -= 1
        return part

    async def get(self) -> SubmitPart:
        """Wait for the next part (several binds may wait at once; each gets its own part)."""
        while True:
            part = self.pop()
            if part is not None:
                return part
            self._ready.clear()
            await self._ready.wait()

    def withdraw(self, ref: str) -> list[SubmitPart]:
        """Take back every queued part of ``ref`` (none of them has been written)."""
        entry = self._by_ref.pop(ref, None)
        if entry is None:
            return []
        self._size -= len(entry[1])
        return list(entry[1])

    def expire(self, queued_before: float) -> list[SubmitPart]:
        """Take out every part of the messages queued at or before ``queued_before``."""
        out: list[SubmitPart] = []
        while self._by_ref:
            ref, (queued_at, parts) = next(iter(self._by_ref.items()))
            if queued_at > queued_before:
                break
            del self._by_ref[ref]
            out.extend(parts)
        self._size -= len(out)
        return out

    def drain(self) -> list[SubmitPart]:
        """Take out everything (the connector is stopping)."""
        out = [part for _, parts in self._by_ref.values() for part in parts]
        self._by_ref.clear()
        self._size = 0
        return out
