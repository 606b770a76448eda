"""A test harness: an SmppConnector and a SimulatedSmsc on one event loop, with collected results."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from bench.smsc import SimulatedSmsc, SmscConfig
from engine.smpp import smsc_carrier_settings
from engine.smpp.client import SmppConnector
from engine.smpp.submit import SubmitBuilder


class Harness:
    def __init__(self, smsc_config: SmscConfig | None = None, **overrides) -> None:
        self.smsc = SimulatedSmsc(smsc_config or SmscConfig(seed=7))
        self.overrides = overrides
        self.responses = []
        self.receipts = []
        self.states = []
        # how receipts are answered, as a POP would: True stored, False not (a full disk), None never
        self.store_receipts: bool | None = True
        self.builder = SubmitBuilder(
            gsm7_packed=overrides.get("gsm7_packed", False),
            use_message_payload=overrides.get("use_message_payload", False),
        )
        self.connector: SmppConnector | None = None

    async def __aenter__(self) -> Harness:
        await self.smsc.start()
        settings = smsc_carrier_settings("127.0.0.1", self.smsc.port, **{
            "reconnect_min_seconds": 0.05, "reconnect_max_seconds": 0.2,
            "resp_timeout_seconds": 5.0, **self.overrides})
        self.connector = SmppConnector("c1", settings, self.responses.extend, self._on_receipts,
                                       lambda up, why: self.states.append((up, why)))
        await self.connector.start()
        await self.until(lambda: self.connector.available)
        return self

    def _on_receipts(self, items) -> None:
        self.receipts.extend(items)
        tokens = [it.token for it in items if it.token]
        if tokens and self.store_receipts is not None:
            self.connector.answer_receipts(tokens, self.store_receipts)

    async def __aexit__(self, *exc) -> None:
        await self.connector.stop(timeout=1.0)
        await self.smsc.stop()

    async def until(self, predicate, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met before the deadline")
            await asyncio.sleep(0.002)

    def submit(self, messages: list[tuple[str, str, str, str]]) -> int:
        """Submit (ref, to, sender, body) messages; return the number of parts."""
        parts = []
        for ref, to, sender, body in messages:
            parts.extend(self.builder.build(ref, to, sender, body))
        self.connector.submit(parts)
        return len(parts)

    def by_part(self) -> dict[tuple[str, int], list]:
        out = defaultdict(list)
        for item in self.responses:
            out[(item.ref, item.part)].append(item)
        return out
