"""One SMPP bind: a TCP (or TLS) connection to the SMSC, kept bound, with its window and pacing.

A bind runs :meth:`SmppBind.run` on the connector's event loop: connect, bind, then three tasks until the
connection dies - the reader (answers ``enquire_link``/``deliver_sm``/``data_sm``, matches
``submit_sm_resp``), the sender (takes parts from the connector's shared queue when a window slot is free and the pace allows) and
the keep-alive (``enquire_link`` when idle; no answer within the resp timeout closes the bind - a
``generic_nack`` is an answer: SMSCs that lack ``enquire_link`` send one). When the connection dies
every in-flight submit is resolved as ``offline`` (it may have reached the SMSC: see the duplicate
window in :mod:`engine.smpp.client`) and the bind reconnects with exponential backoff (with
jitter) from ``reconnect_min_seconds`` up to ``reconnect_max_seconds`` (1 s by default, so a bind is back
within about a second of its SMSC); a successful bind resets the backoff.

A bind the SMSC *refuses* (a ``bind_*_resp`` with an error status) is retried by what the status says:

- refused for good - :data:`REFUSED_FOR_GOOD`: 0x0E ESME_RINVPASWD, 0x0F ESME_RINVSYSID, 0x53
  ESME_RINVSYSTYP, 0x0D ESME_RBINDFAIL, 0x05 ESME_RALYBND (the SMSC still holds a session of this
  account), 0x03 ESME_RINVCMDID (it lacks this bind command: ``bind_mode``), 0x04 ESME_RINVBNDSTS, and
  any status we do not know (vendor codes such as "IP not allowed" or "too many binds"): retrying every
  second would not fix it and gets the address blocked by many SMSCs (Kannel stops on a bad system id or
  password). The bind waits ``auth_retry_min_seconds`` (jittered down by at most a quarter), doubling per
  consecutive refusal up to ``auth_retry_max_seconds``; state ``refused``, ``last_error`` the status name;
  one ``smpp_bind_refused`` warning per refusal, hence one per backoff step (carrier, bind, status,
  attempt, the next delay; never the credentials). A successful bind resets it; :meth:`SmppBind.retry_now`
  (the operator resumed the carrier) ends the wait at once without resetting it.
- transient - :data:`BIND_TRANSIENT`: 0x08 ESME_RSYSERR, 0x58 ESME_RTHROTTLED, 0x14 ESME_RMSGQFUL, 0x64
  ESME_RX_T_APPN: the fast reconnect of a dropped connection, logged ``smpp_bind_failed`` on the 1st,
  2nd, 4th, 8th... consecutive failure only.

Every refusal is counted by status name (``SmppConnector.bind_refusals``) and as the ``bind_refused`` error.

Pacing: ``throughput`` caps submits per second; an ``ESME_RTHROTTLED`` (0x58) answer (a ``submit_sm_resp``
or a ``generic_nack``) pauses the whole bind
(0.2 s, doubling per consecutive 0x58 up to 5 s) and halves its rate, which recovers as submits succeed.
Malformed input from the SMSC: a PDU whose ``command_length`` cannot be trusted (below 16, oversized,
or the stream ends inside it) is answered ``generic_nack`` and closes the bind, which reconnects - the
stream has lost its framing. A PDU with a good header and a bad body (unknown command, truncated or
unterminated fields) was consumed whole, so the bind stays up: closing it would answer every part in
flight ``offline`` and get parts the SMSC accepted sent twice. Such a request is answered
``generic_nack``; a ``submit_sm_resp`` still answers its part by the header's status (without a message
id: its receipt cannot be matched). Each is logged (kind, command, sequence; never the body).
An unexpected exception (a bug) is logged by type and place and handled like a dropped connection: the
bind reconnects rather than ending for good.

Every wait with a deadline here is an ``asyncio.timeout`` block, not ``asyncio.wait_for``: on Python 3.11
``wait_for`` drops a cancellation that arrives in the loop iteration in which its awaitable completes (it
returns the result instead), and a bind whose stop was dropped so went on binding while
``SmppConnector.stop`` waited for it for ever.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import ssl
import traceback
from typing import TYPE_CHECKING

from engine.messages import OFFLINE, RETRY, THROTTLED
from engine.smpp import pdu as p
from engine.smpp.receipts import bounded_id
from engine.smpp.stream import read_pdu
from engine.smpp.submit import SubmitPart

if TYPE_CHECKING:
    from engine.smpp.client import SmppConnector

log = logging.getLogger("engine.smpp.bind")
THROTTLE_PAUSE_MIN = 0.2
THROTTLE_PAUSE_MAX = 5.0
#: Answers (deliver_sm_resp, enquire_link_resp...) waiting in the write buffer beyond which the bind stops
#: reading until the SMSC takes them: an SMSC that floods us and never reads is held back by TCP, not
#: by our memory. The same mark bounds submits (``_send_loop``).
READ_PAUSE_BYTES = 1 << 16
# Pushback, not an error: in a submit_sm_resp or a generic_nack to a submit (as Kannel reads the nack).
CONGESTED = frozenset({p.ESME_RTHROTTLED, p.ESME_RMSGQFUL})
#: Bind refusals a retry within seconds will not fix (module doc); any status not in BIND_TRANSIENT is one.
REFUSED_FOR_GOOD = frozenset({p.ESME_RINVPASWD, p.ESME_RINVSYSID, p.ESME_RINVSYSTYP, p.ESME_RBINDFAIL,
                              p.ESME_RALYBND, p.ESME_RINVCMDID, p.ESME_RINVBNDSTS})
#: Bind refusals of an SMSC that is busy or failing for a moment: the fast reconnect.
BIND_TRANSIENT = frozenset({p.ESME_RSYSERR, p.ESME_RTHROTTLED, p.ESME_RMSGQFUL, p.ESME_RX_T_APPN})
_BIND_COMMAND = {
    "transceiver": p.BIND_TRANSCEIVER, "transmitter": p.BIND_TRANSMITTER, "receiver": p.BIND_RECEIVER,
}


class BindClosed(Exception):
    """The connection ended; ``args[0]`` is the reason (an error kind for ``stats``)."""


class BindRefused(Exception):
    """The SMSC answered the bind with ``status`` (not 0)."""

    def __init__(self, status: int) -> None:
        super().__init__(p.status_name(status))
        self.status = status


def refused_for_good(status: int) -> bool:
    """Whether a bind refused with ``status`` backs off to ``auth_retry_max_seconds`` (module doc)."""
    return status not in BIND_TRANSIENT


class Backoff:
    """Exponential delays: ``first``, doubling per step up to ``cap``, each multiplied by a jitter drawn
    from ``jitter`` (``rng`` injectable for tests). ``steps`` counts the delays taken since ``reset``."""

    def __init__(self, first: float, cap: float, jitter: tuple[float, float] = (0.5, 1.0),
                 rng: random.Random | None = None) -> None:
        self.first, self.cap, self.jitter = first, cap, jitter
        self.rng = rng or random.Random()
        self.steps = 0

    def next(self) -> float:
        nominal = min(self.first * 2 ** min(self.steps, 64), self.cap)
        self.steps += 1
        return nominal * self.rng.uniform(*self.jitter)

    def reset(self) -> None:
        self.steps = 0


class SmppBind:
    """One connection. ``mode`` is transceiver | transmitter | receiver."""

    def __init__(self, connector: SmppConnector, index: int, mode: str) -> None:
        self.connector = connector
        self.index = index
        self.mode = mode
        self.transmits = mode != "receiver"
        s = connector.settings
        self.window_size = int(s["window"])
        self.rate = float(s["throughput"])
        self.resp_timeout = float(s["resp_timeout_seconds"])
        self.bound = False
        # connecting | bound | reconnecting (after last_error) | refused (last_error: the status) | closed
        self.state = "connecting"
        self.last_error = ""
        self.inflight: dict[int, tuple[SubmitPart, asyncio.TimerHandle]] = {}
        self._seq = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._slots = asyncio.Semaphore(self.window_size)
        self._enquire: asyncio.Future | None = None
        self._enquire_seq = -1
        self._unbound: asyncio.Future | None = None
        self._closed: asyncio.Future | None = None
        self._eff_rate = self.rate
        self._next_send = 0.0
        self._pause_until = 0.0
        self._throttle_pause = THROTTLE_PAUSE_MIN
        self._last_rx = 0.0
        self._failures = 0  # consecutive connect/bind failures (only some are logged)
        self.reconnect = Backoff(float(s["reconnect_min_seconds"]), float(s["reconnect_max_seconds"]))
        self.refusals = Backoff(float(s["auth_retry_min_seconds"]), float(s["auth_retry_max_seconds"]),
                                jitter=(0.75, 1.0))
        self._wake: asyncio.Event | None = None  # set by retry_now to end a refusal's wait

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, bind and serve until cancelled, reconnecting with backoff (module doc); then
        ``closed``, whether cancelled while bound, connecting or waiting after a refusal."""
        try:
            await self._keep_bound()
        finally:
            self.state = "closed"

    async def _keep_bound(self) -> None:
        """The reconnect loop of :meth:`run`. A connector that is stopping gets no further attempt, even
        if its cancellation was lost on the way (see ``SmppConnector.stop``)."""
        self._wake = asyncio.Event()
        while not self.connector.stopping:
            reason = "stopped"  # stays so only when cancelled
            refused: int | None = None
            try:
                await self._connect_and_bind()
                self.reconnect.reset()
                self.refusals.reset()
                self._failures = 0
                self.bound, self.state = True, "bound"
                self.connector.bind_changed(self, True, "bound")
                reason = await self._serve()
            except BindRefused as exc:
                reason, refused = "bind_refused", exc.status
            except BindClosed as exc:
                reason = str(exc)
            except (TimeoutError, OSError, EOFError) as exc:
                reason = "connect_failed" if not self.bound else "connection_lost"
                self._failures += 1
                if self.bound or _logged(self._failures):
                    log.warning("smpp_bind_error carrier=%s bind=%d error=%s failures=%d",
                                self.connector.name, self.index, type(exc).__name__,
                                self._failures)
            except p.PduError as exc:  # the stream lost its framing, or we could not encode a PDU
                reason = f"pdu_{exc.kind}"
                self._failures += 1
                if _logged(self._failures):
                    log.warning("smpp_bind_pdu_error carrier=%s bind=%d kind=%s failures=%d",
                                self.connector.name, self.index, exc.kind, self._failures)
            except Exception as exc:  # a bug of ours must not end this bind's task for good
                reason = "internal_error"
                frames = traceback.extract_tb(exc.__traceback__)
                at = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"
                # the type and the place only: an exception's text may quote what it was handling
                log.error("smpp_bind_internal_error carrier=%s bind=%d error=%s at=%s",
                          self.connector.name, self.index, type(exc).__name__, at)
            finally:
                self._teardown(reason)
                self.state, self.last_error = ("closed", self.last_error) if reason == "stopped" \
                    else ("reconnecting", reason)
            self.connector.count_error(reason)
            self.connector.reconnects += 1
            if refused is not None:
                self.connector.bind_refused(refused)
                self.last_error = p.status_name(refused)
            if refused is not None and refused_for_good(refused):
                await self._wait_refused(refused)
            else:
                if refused is not None:
                    self._failures += 1
                    if _logged(self._failures):
                        log.warning("smpp_bind_failed carrier=%s bind=%d status=%s failures=%d",
                                    self.connector.name, self.index, self.last_error,
                                    self._failures)
                await asyncio.sleep(self.reconnect.next())
            self.state = "connecting"

    async def _wait_refused(self, status: int) -> None:
        """After a refusal for good: state ``refused``, one log line, the long backoff (or retry_now)."""
        delay = self.refusals.next()
        self.state = "refused"
        log.warning("smpp_bind_refused carrier=%s bind=%d status=%s attempt=%d retry_in_seconds=%.3f",
                    self.connector.name, self.index, p.status_name(status), self.refusals.steps,
                    delay)
        self._wake.clear()
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
            log.info("smpp_bind_retry_now carrier=%s bind=%d", self.connector.name, self.index)
        except TimeoutError:
            pass

    def retry_now(self) -> None:
        """End the wait after a refusal now (loop thread): the next bind attempt starts at once."""
        if self.state == "refused" and self._wake is not None:
            self._wake.set()

    def view(self) -> dict:
        """This bind as the control port shows it."""
        return {"index": self.index, "mode": self.mode, "state": self.state,
                "window": self.window_size if self.transmits else 0,
                "window_in_use": len(self.inflight), "last_error": self.last_error}

    async def _connect_and_bind(self) -> None:
        s = self.connector.settings
        ctx = None
        if s["tls"]:
            ctx = ssl.create_default_context(cafile=s.get("tls_ca_file") or None)
            if not s.get("tls_verify", True):
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        async with asyncio.timeout(self.resp_timeout):
            reader, writer = await asyncio.open_connection(s["host"], int(s["port"]), ssl=ctx)
        self._writer, self._reader = writer, reader
        command = _BIND_COMMAND[self.mode]
        self._send(p.Pdu(command, self._next_seq(), 0, {
            "system_id": s["system_id"], "password": s["password"],
            "system_type": s.get("system_type", ""), "interface_version": 0x34,
        }))
        async with asyncio.timeout(self.resp_timeout):
            resp = await read_pdu(reader)
        if resp is None or resp.command_id != command | p.RESP:
            raise BindClosed("bind_failed")
        if resp.status != p.ESME_ROK:
            raise BindRefused(resp.status)  # logged by run(), by what the status says
        if self.refusals.steps:
            log.info("smpp_bound carrier=%s bind=%d mode=%s after_refusals=%d", self.connector.name,
                     self.index, self.mode, self.refusals.steps)
        else:
            log.info("smpp_bound carrier=%s bind=%d mode=%s", self.connector.name, self.index,
                     self.mode)

    async def _serve(self) -> str:
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        self._slots = asyncio.Semaphore(self.window_size)  # a fresh window per connection
        self._last_rx = loop.time()
        tasks = [asyncio.create_task(self._read_loop()), asyncio.create_task(self._keepalive())]
        if self.transmits:
            tasks.append(asyncio.create_task(self._send_loop()))
        try:
            done, _ = await asyncio.wait([*tasks, self._closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for d in done:
            exc = d.exception()
            if exc is not None:
                raise exc
        return self._closed.result() if self._closed.done() else "closed"

    def close(self, reason: str) -> None:
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(reason)

    def _teardown(self, reason: str) -> None:
        was_bound, self.bound = self.bound, False
        if self._writer is not None:
            self._writer.transport.abort()
            self._writer = None
        inflight, self.inflight = self.inflight, {}
        for part, timer in inflight.values():
            timer.cancel()
            self.connector.resolve(part, OFFLINE, "", reason)
        if self._enquire is not None and not self._enquire.done():
            self._enquire.cancel()
        if was_bound:
            log.warning("smpp_bind_down carrier=%s bind=%d reason=%s inflight=%d",
                        self.connector.name, self.index, reason, len(inflight))
            self.connector.bind_changed(self, False, reason)

    async def unbind(self, timeout: float) -> None:
        """Graceful close: wait for in-flight resps (up to ``timeout``), then unbind."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.inflight and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self._writer is None or not self.bound:
            return
        self._unbound = loop.create_future()  # the unbind_resp resolves it
        self._send(p.Pdu(p.UNBIND, self._next_seq()))
        try:
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                await self._unbound
        except TimeoutError:
            pass

    # --- the three tasks ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                pdu = await read_pdu(self._reader)
            except p.PduError as exc:
                if exc.fatal:
                    self._send(p.generic_nack(exc.sequence, exc.status))
                    raise  # counted by run() as the reason the bind closed
                self._last_rx = loop.time()
                self._on_bad_pdu(exc)
                continue
            if pdu is None:
                raise BindClosed("peer_closed")
            self._last_rx = loop.time()
            self._dispatch(pdu)
            writer = self._writer
            if writer is not None and writer.transport.get_write_buffer_size() > READ_PAUSE_BYTES:
                self.connector.count_error("read_paused")  # TCP backpressure on an SMSC not reading
                await writer.drain()

    def _on_bad_pdu(self, exc: p.PduError) -> None:
        """A PDU read whole whose body (or command) we cannot use; the bind stays up (module doc)."""
        self.connector.count_error(f"pdu_{exc.kind}")
        cid = exc.command_id
        log.warning("smpp_bad_pdu carrier=%s bind=%d command=%s seq=%s error=%s",
                    self.connector.name, self.index,
                    "unknown" if cid is None else p.COMMAND_NAMES.get(cid, f"0x{cid:08x}"),
                    exc.sequence, exc)  # our own wording: kind and field, never the octets
        if cid is not None and cid & p.RESP:  # a response (or a nack) is not answered
            if cid == p.SUBMIT_SM | p.RESP and exc.sequence in self.inflight:
                self._on_submit_resp(exc.sequence, exc.command_status, "")
            return
        self._send(p.generic_nack(exc.sequence, exc.status))

    def _dispatch(self, pdu: p.Pdu) -> None:
        cid = pdu.command_id
        if cid == p.SUBMIT_SM | p.RESP:
            self._on_submit_resp(pdu.sequence, pdu.status,
                                 bounded_id(str(pdu.params.get("message_id", ""))))
        elif cid == p.DELIVER_SM or cid == p.DATA_SM:  # data_sm: receipts from some SMSCs
            self.connector.on_deliver(pdu, self._answer_on_this_connection(pdu))
        elif cid == p.ENQUIRE_LINK:
            self._send(p.response_to(pdu))
        elif cid == p.ENQUIRE_LINK | p.RESP:
            if self._enquire is not None and not self._enquire.done():
                self._enquire.set_result(pdu.status)
        elif cid == p.UNBIND | p.RESP:
            if self._unbound is not None and not self._unbound.done():
                self._unbound.set_result(pdu.status)
        elif cid == p.UNBIND:
            self._send(p.response_to(pdu))
            self.close("peer_unbind")
        elif cid == p.GENERIC_NACK:
            self.connector.count_error("generic_nack")
            if pdu.sequence == self._enquire_seq and self._enquire is not None \
                    and not self._enquire.done():
                self._enquire.set_result(pdu.status)  # an SMSC without enquire_link: still alive
            elif pdu.sequence in self.inflight:
                self._on_submit_resp(pdu.sequence, None, "", nack_status=pdu.status)
        else:
            self.connector.count_error("unexpected_pdu")

    def _answer_on_this_connection(self, pdu: p.Pdu):
        """How to answer ``pdu`` later (a receipt is answered once it is stored: ``engine.smpp.client``):
        on the connection it came on only - on a new one its sequence number means nothing, and the
        SMSC delivers what a dropped connection never answered again anyway."""
        writer = self._writer

        def answer(status: int) -> None:
            if writer is not None and self._writer is writer:
                self._send(p.response_to(pdu, status, message_id=""))

        return answer

    def _on_submit_resp(self, seq: int, status: int | None, message_id: str,
                        nack_status: int = 0) -> None:
        entry = self.inflight.pop(seq, None)
        if entry is None:
            self.connector.count_error("late_resp")  # after its timeout: already resolved retry
            return
        part, timer = entry
        timer.cancel()
        self._slots.release()
        if status is None:  # a generic_nack: retry, unless it says what a congested SMSC says
            error = f"generic_nack:{p.status_name(nack_status)}"
            if nack_status == p.ESME_RTHROTTLED:
                self._on_throttled()
            outcome = THROTTLED if nack_status in CONGESTED else RETRY
            self.connector.resolve(part, outcome, "", error)
            return
        if status == p.ESME_RTHROTTLED:
            self._on_throttled()
        elif status == p.ESME_ROK:
            self._throttle_pause = THROTTLE_PAUSE_MIN
            if self.rate > 0 and self._eff_rate < self.rate:
                self._eff_rate = min(self.rate, self._eff_rate + self.rate / 50)
        self.connector.on_submit_resp(part, status, message_id)

    def _on_throttled(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._pause_until <= now:
            self._pause_until = now + self._throttle_pause
            self._throttle_pause = min(THROTTLE_PAUSE_MAX, self._throttle_pause * 2)
            self.connector.throttle_pauses += 1
        if self.rate > 0:
            self._eff_rate = max(1.0, self._eff_rate / 2)

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self.connector.queue
        while True:
            await self._slots.acquire()
            await self._pace(loop)
            part = await queue.get()
            seq = self._next_seq()
            timer = loop.call_later(self.resp_timeout, self._on_resp_timeout, seq)
            self.inflight[seq] = (part, timer)
            self._send(p.Pdu(p.SUBMIT_SM, seq, 0, part.params, part.tlvs))
            self.connector.submitted += 1
            if self._writer is not None and self._writer.transport.get_write_buffer_size() > READ_PAUSE_BYTES:
                await self._writer.drain()

    async def _pace(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            now = loop.time()
            wait = self._pause_until - now
            if self._eff_rate > 0:
                wait = max(wait, self._next_send - now)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        if self._eff_rate > 0:
            self._next_send = max(self._next_send, loop.time() - 1.0 / self._eff_rate)
            self._next_send += 1.0 / self._eff_rate

    def _on_resp_timeout(self, seq: int) -> None:
        entry = self.inflight.pop(seq, None)
        if entry is None:
            return
        self._slots.release()
        self.connector.count_error("resp_timeout")
        log.warning("smpp_resp_timeout carrier=%s bind=%d seq=%d", self.connector.name,
                    self.index, seq)
        self.connector.resolve(entry[0], RETRY, "", "resp_timeout")

    async def _keepalive(self) -> None:
        loop = asyncio.get_running_loop()
        interval = float(self.connector.settings["enquire_link_seconds"])
        while True:
            idle = loop.time() - self._last_rx
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            self._enquire, self._enquire_seq = loop.create_future(), self._next_seq()
            self._send(p.Pdu(p.ENQUIRE_LINK, self._enquire_seq))
            try:
                async with asyncio.timeout(self.resp_timeout):
                    await self._enquire
            except TimeoutError:
                raise BindClosed("enquire_link_timeout") from None
            self._last_rx = loop.time()

    # --- helpers --------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = next(self._seq)
        if seq >= 0x7FFFFFFF:
            self._seq = itertools.count(1)
        return seq

    def _send(self, pdu: p.Pdu) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(p.encode_pdu(pdu))


def _logged(failures: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th... consecutive failure only."""
    return failures & (failures - 1) == 0
