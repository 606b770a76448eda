"""SmppCarrierActor: a carrier link that is a set of SMPP 3.4 binds to a real (or simulated) SMSC.

Constructed like every carrier, ``SmppCarrierActor(name, settings, pop_ref, clock)``: ``settings`` is the
carrier's typed options (:class:`engine.config.SmppCarrierOptions`) or a dict of them (built with
:func:`engine.smpp.smsc_carrier_settings`, validated the same way); ``clock`` is accepted for symmetry
and unused (the connector has its own loop timers).

Messages in (msgpack bytes): ``SubmitToCarrier``, ``WithdrawSubmits``, ``ExpectReceipts`` and
``ReceiptsStored`` (the SMSC's receipts are answered only then: :mod:`engine.smpp.client`) from the POP,
``SetCarrierSuspended`` from the operator (a resume also ends the backoff of binds the SMSC refused: they
try again at once). A withdrawal reaches the connector after every submit the POP
sent before it (both go through ``call_soon_threadsafe`` in mailbox order), so it finds their parts.
Messages out, to ``pop_ref``: ``CarrierResponded`` - one per burst of ``submit_sm_resp`` that arrive
together, one item per part -, ``ReceiptsReceived`` (batched the same way) and ``CarrierStateChanged`` when
the first bind comes up / the last goes down, or on suspend/resume. Outcomes and the ``resp_timeout``
double-delivery trade-off are described in :mod:`engine.smpp.client`.

Threads: pykka's actor thread runs ``on_receive`` (segmenting and building the ``submit_sm`` parameters,
then handing the parts over with ``loop.call_soon_threadsafe``); a second thread owned by this actor runs a
uvloop event loop with the :class:`~engine.smpp.client.SmppConnector`, whose callbacks ``tell`` the POP
(thread-safe). ``on_start`` starts that thread; ``on_stop`` unbinds gracefully and joins it. The loop
stamps ``pulse`` (:class:`engine.loop_pulse.LoopPulse`) every second, so ``/readyz`` and a worker's
heartbeat see a loop that stopped turning (``carrier:<name>`` hung).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pykka
import uvloop

from engine import messages as m
from engine.config import SmppCarrierOptions
from engine.errors import InvalidBody, InvalidNumber, MalformedMessage
from engine.loop_pulse import LoopPulse
from engine.smpp import smpp_settings
from engine.smpp.client import SmppConnector
from engine.smpp.receipts import bounded_id
from engine.smpp.submit import SubmitBuilder, SubmitPart

log = logging.getLogger(__name__)
_START_TIMEOUT = 10.0


class SmppCarrierActor(pykka.ThreadingActor):
    """Runs on a thread of its own (not the dispatcher): its start and graceful stop wait on its SMSC."""

    use_daemon_thread = True  # never keeps a host process alive (the engine's exit hook stops it)

    def __init__(self, name: str, settings: SmppCarrierOptions | dict[str, Any], pop_ref,
                 clock=None, *, pulse: LoopPulse | None = None) -> None:
        super().__init__()
        self.pulse = pulse if pulse is not None else LoopPulse()
        self.name = name
        self.settings = smpp_settings(settings)  # a dict is validated (ConfigError names a bad key)
        self.pop_ref = pop_ref
        self.clock = clock
        self.suspended = False
        self.link_up = False
        self.builder = SubmitBuilder(
            gsm7_packed=bool(self.settings["gsm7_packed"]),
            use_message_payload=bool(self.settings["use_message_payload"]),
            registered_delivery=int(self.settings["registered_delivery"]),
        )
        self.dropped_messages = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connector: SmppConnector | None = None

    def on_start(self) -> None:
        """Actor thread: start the event loop thread and the connector's binds (no waiting for them).

        The POP hears first that the link is not up yet (told before any bind can report "up"), so it
        parks messages for this carrier instead of handing them to a link that may never come up."""
        self._tell(m.CarrierStateChanged(self.name, False, "connecting"))
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"smpp-{self.name}")
        self._thread.start()
        self.pulse.start_on(self._loop)
        self._connector = SmppConnector(self.name, self.settings, self._on_responses,
                                        self._on_receipts, self._on_state)
        asyncio.run_coroutine_threadsafe(self._connector.start(), self._loop).result(_START_TIMEOUT)

    def on_receive(self, raw: bytes) -> None:
        try:
            msg = m.decode(raw)
        except MalformedMessage as exc:
            self.dropped_messages += 1
            log.warning("carrier %s: dropped malformed message: %s", self.name, exc)
            return
        match msg:
            case m.SubmitToCarrier(items=items):
                self._on_submit_to_carrier(items)
            case m.WithdrawSubmits(refs=refs):
                if self._loop is not None and self._connector is not None:
                    self._loop.call_soon_threadsafe(self._connector.withdraw, refs)
            case m.SetCarrierSuspended(suspended=suspended):
                self._on_set_carrier_suspended(suspended)
            case m.ReceiptsStored(tokens=tokens, stored=stored):
                if self._loop is not None and self._connector is not None:
                    self._loop.call_soon_threadsafe(self._connector.answer_receipts, tokens, stored)
            case m.ExpectReceipts(items=items):
                if self._loop is not None and self._connector is not None:
                    for it in items:  # (an id stored whole before ids were bounded matches too)
                        self._loop.call_soon_threadsafe(self._connector.expect,
                                                        bounded_id(it.carrier_message_id), it.ref,
                                                        it.part)
            case _:
                self.dropped_messages += 1
                log.error("carrier %s: unexpected %s", self.name, type(msg).__name__)

    def on_stop(self) -> None:
        """Actor thread: unbind every bind (in-flight resps get a moment), stop the loop thread."""
        self._shutdown()

    def on_failure(self, *_exc_info) -> None:
        self._shutdown()

    def stats(self) -> dict[str, Any]:
        """For the control port: suspension (the operator's), the link (``connected``: a transmitting
        bind is bound), whether it takes traffic (``available``), each bind's state, the counters."""
        stats: dict[str, Any] = {"carrier": self.name, "binds": []}
        if self._connector is not None:
            stats.update(self._connector.stats())
        connected = bool(stats.pop("available", False))
        stats.update(kind="smpp", suspended=self.suspended, connected=connected,
                     available=connected and not self.suspended,
                     dropped_messages=self.dropped_messages)
        return stats

    # --- handlers ---------------------------------------------------------------------------------

    def _on_submit_to_carrier(self, items: list[m.CarrierSubmitItem]) -> None:
        refused: list[m.CarrierResponseItem] = []
        parts: list[SubmitPart] = []
        for item in items:
            if self.suspended:
                refused.append(m.CarrierResponseItem(item.ref, 0, 1, m.OFFLINE, "", "suspended"))
                continue
            try:
                parts.extend(self.builder.build(item.ref, item.to, item.sender, item.body))
            except (InvalidNumber, InvalidBody) as exc:
                refused.append(m.CarrierResponseItem(item.ref, 0, 1, m.REJECT, "", exc.code))
        if refused:
            self._tell(m.CarrierResponded(self.name, refused))
        if parts:
            self._loop.call_soon_threadsafe(self._connector.submit, parts)

    def _on_set_carrier_suspended(self, suspended: bool) -> None:
        self.suspended = suspended
        reason = "suspended" if suspended else "resumed"
        log.info("carrier %s: %s", self.name, reason)
        if not suspended and self._loop is not None and self._connector is not None:
            # an operator who fixed the credentials on the SMSC side resumes to retry refused binds now
            self._loop.call_soon_threadsafe(self._connector.retry_now)
        self._tell(m.CarrierStateChanged(self.name, self.link_up and not suspended, reason))

    # --- connector callbacks (event loop thread) --------------------------------------------------

    def _on_responses(self, items: list[m.CarrierResponseItem]) -> None:
        self._tell(m.CarrierResponded(self.name, items))

    def _on_receipts(self, items: list[m.ReceiptItem]) -> None:
        self._tell(m.ReceiptsReceived(self.name, items))

    def _on_state(self, available: bool, reason: str) -> None:
        self.link_up = available
        log.info("carrier %s: link %s (%s)", self.name, "up" if available else "down", reason)
        if not self.suspended:
            self._tell(m.CarrierStateChanged(self.name, available, reason))

    def _tell(self, msg: m.Message) -> None:
        try:
            self.pop_ref.tell(m.encode(msg))
        except pykka.ActorDeadError:
            log.warning("carrier %s: POP gone, %s not delivered", self.name, type(msg).__name__)

    def _shutdown(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        self.pulse.stop()
        timeout = float(self.settings["resp_timeout_seconds"])
        try:
            asyncio.run_coroutine_threadsafe(self._connector.stop(timeout=min(timeout, 5.0)),
                                             loop).result(timeout + 5.0)
        except Exception:  # the loop may already be broken; we are shutting down either way
            log.exception("carrier %s: connector did not stop cleanly", self.name)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=5.0)
        if not loop.is_running():
            loop.close()
