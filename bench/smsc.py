"""A simulated SMPP 3.4 SMSC: an asyncio server the connector tests and ``smsroute bench`` talk to.

It accepts ``bind_transceiver``/``bind_transmitter``/``bind_receiver`` (credentials checked; ``bind_status``
refuses every bind with a given status, counted ``binds_refused`` like every refusal), answers
``submit_sm`` after a configurable latency with a configurable error mix and per-bind throttling, and sends
delivery receipts (``deliver_sm``) after a configurable delay with a configurable outcome mix, so they arrive
out of order; optionally *before* the ``submit_sm_resp``. Receipt ids can be written in another format than
the resp ids (hex vs decimal, zero padded) to exercise id normalisation. Fault injection: close every socket
(mid-window), stop answering, send a malformed PDU, close at the N-th submit (once, or every N submits), go
down (stop listening) and come back on the same port, answer single parts by a script, send receipts early
or twice (:mod:`bench.smsc_faults`, which also holds the named profiles, e.g. ``hostile``).

Everything received is recorded (``parts``: one :class:`ReceivedPart` per ``submit_sm``, status -1 for one
never answered) and counted (``counters``), so tests can assert that nothing was lost or duplicated.
:class:`SmscThread` runs one in its own thread for synchronous code (tests, the bench harness, a third-party
client). Run standalone with ``python -m bench.smsc --port 2775 [--profile hostile]``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import ssl as ssl_module
import struct
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from bench.smsc_faults import DROP, PROFILES, SILENT, UNTERMINATED, PartScript, part_number
from bench.smsc_receipts import receipt_id, receipt_pdu, receipt_with
from engine.smpp import pdu as p
from engine.smpp.stream import read_pdu

log = logging.getLogger("bench.smsc")
_MAX_HELD_RECEIPTS = 100_000
UNANSWERED = -1  # ReceivedPart.status of a part that got no submit_sm_resp
UNKNOWN_COMMAND = 0x00000104  # a command_id no SMPP version assigns (send_malformed("unknown"))


@dataclass
class SmscConfig:
    """What the simulator does; change fields at any time (from its loop thread: ``SmscThread.call``)."""

    system_id: str = "smsroute"
    password: str = "secret"
    accounts: dict[str, str] = field(default_factory=dict)  # more system_id -> password accepted
    bind_status: int = 0  # non-zero: every bind is refused with this command_status (e.g. 0x0D)
    latency: tuple[float, float] = (0.0, 0.0)  # seconds before a submit_sm_resp, uniform
    error_rates: dict[int, float] = field(default_factory=dict)  # command_status -> probability
    nack_rate: float = 0.0  # probability of answering a submit_sm with generic_nack
    nack_status: int = p.ESME_RSYSERR  # the command_status of those generic_nacks
    throttle: float = 0.0  # submit_sm per second per bind beyond which 0x58 is answered; 0 = none
    receipts: bool = True
    receipt_delay: tuple[float, float] = (0.0, 0.0)
    receipt_states: dict[str, float] = field(default_factory=lambda: {"DELIVRD": 1.0})
    receipts_before_resp: bool = False
    id_format: str = "decimal"  # submit_sm_resp message ids: decimal | hex | long (150 characters,
    # beyond SMPP 3.4's 65 octets, as a non-conforming SMSC sends)
    receipt_id_format: str = "same"  # same | decimal | hex | padded_hex | padded_decimal
    receipt_tlvs: bool = False  # also send receipted_message_id / message_state TLVs
    receipt_command: str = "deliver_sm"  # or "data_sm" (its text in message_payload), as some SMSCs do
    receipt_date_digits: int = 10
    receipt_text_label: str = "text:"
    resp_tlvs: dict[int, bytes] = field(default_factory=dict)  # TLVs appended to each submit_sm_resp
    # the body of an error submit_sm_resp: "message_id" (an empty message_id, then resp_tlvs: SMPP 5.0),
    # "none" (no body at all: SMPP 3.4) or "tlvs" (resp_tlvs without the message_id: some SMSCs)
    error_resp_body: str = "message_id"
    answer: bool = True  # False: read and count everything, answer nothing
    nack_enquire_link: bool = False  # answer enquire_link with generic_nack (SMSCs without it do)
    close_after_submits: int | None = None  # one-shot: drop every connection at the N-th submit
    close_every_submits: int | None = None  # drop every connection at every N-th submit
    part_script: dict[int, list] = field(default_factory=dict)  # see bench.smsc_faults.PartScript
    early_receipt_rate: float = 0.0  # share of receipts sent before their submit_sm_resp
    duplicate_receipt_rate: float = 0.0  # share of receipts sent twice
    # deliver_sm_resp statuses after which a receipt is delivered again (module doc), and the backoff:
    # first delay, doubled per refusal up to the cap
    receipt_retry_statuses: frozenset[int] = frozenset(
        {p.ESME_RX_T_APPN, p.ESME_RSYSERR, p.ESME_RMSGQFUL, p.ESME_RTHROTTLED})
    receipt_retry_seconds: tuple[float, float] = (1.0, 60.0)
    seed: int | None = None

    @classmethod
    def profile(cls, name: str, **overrides) -> SmscConfig:
        """A named profile from ``bench.smsc_faults.PROFILES`` (``default``, ``hostile``)."""
        if name not in PROFILES:
            raise ValueError(f"unknown SMSC profile {name!r} (known: {', '.join(sorted(PROFILES))})")
        return cls(**{**PROFILES[name], **overrides})


@dataclass(frozen=True, slots=True)
class ReceivedPart:
    """One ``submit_sm`` as received, with what was answered."""

    message_id: str
    status: int
    system_id: str
    params: dict
    tlvs: dict
    at: float


class _Session:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.mode = ""  # "", "transceiver", "transmitter", "receiver"
        self.system_id = ""
        self.seq = itertools.count(1)
        self.window_start = 0.0
        self.window_count = 0
        self.unacked: dict[int, p.Pdu] = {}  # receipts sent, deliver_sm_resp not yet received

    @property
    def receives(self) -> bool:
        return self.mode in ("transceiver", "receiver")

    @property
    def transmits(self) -> bool:
        return self.mode in ("transceiver", "transmitter")

    def send(self, pdu: p.Pdu) -> None:
        self.send_raw(p.encode_pdu(pdu))

    def send_raw(self, raw: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(raw)


_BIND_MODES = {
    p.BIND_TRANSCEIVER: "transceiver",
    p.BIND_TRANSMITTER: "transmitter",
    p.BIND_RECEIVER: "receiver",
}


class SimulatedSmsc:
    """The server. ``await start()``, read ``port``, ``await stop()``."""

    def __init__(self, config: SmscConfig | None = None) -> None:
        self.config = config or SmscConfig()
        self.parts: list[ReceivedPart] = []
        self.counters: Counter[str] = Counter()
        self.receipt_log: dict[str, str] = {}  # resp message id -> receipt state sent for it
        self.port = 0
        self._rng = random.Random(self.config.seed)
        self._ids = itertools.count(self._rng.randrange(1, 10**6) * 1000)
        self._sessions: set[_Session] = set()
        self._held: dict[str, deque[p.Pdu]] = {}  # system_id -> receipts waiting for a receiver
        self._refusals: dict[int, int] = {}  # id() of a receipt refused temporarily -> its refusals
        self._server: asyncio.AbstractServer | None = None
        self._script = PartScript(self.config.part_script)
        self._submits = 0
        self._listen: tuple = ("127.0.0.1", None)

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl: ssl_module.SSLContext | None = None
    ) -> None:
        self._server = await asyncio.start_server(
            self._serve, host, port, reuse_address=True, ssl=ssl
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._listen = (host, ssl)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.close_connections()
        if self._server is not None:
            await self._server.wait_closed()

    # --- fault injection ------------------------------------------------------------------------

    def close_connections(self) -> None:
        """Drop every connection now (abort: unanswered submits stay unanswered)."""
        for s in list(self._sessions):
            s.writer.transport.abort()
        self.counters["closed_by_fault"] += 1

    async def go_down(self) -> None:
        """An outage: stop listening and drop every connection; binds cannot reconnect until
        :meth:`come_back` (what was received stays recorded)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.close_connections()
        if server is not None:
            await server.wait_closed()
        self.counters["outages"] += 1

    async def come_back(self) -> None:
        """Listen again on the same port after :meth:`go_down`."""
        host, ssl = self._listen
        await self.start(host, self.port, ssl)

    def set_part_script(self, script: dict[int, list]) -> None:
        """Replace the part script (from the SMSC's loop thread: ``SmscThread.call``)."""
        self.config.part_script = script
        self._script = PartScript(script)

    def send_malformed(self, kind: str = "truncated") -> None:
        """Send each session a bad PDU: ``truncated`` body, ``oversized`` length, ``unknown`` command."""
        bad = {
            "truncated": p.HEADER.pack(20, p.DELIVER_SM, 0, 999_999) + b"\x00\x01\x01\x31",
            "oversized": p.HEADER.pack(p.MAX_PDU_LEN + 1, p.DELIVER_SM, 0, 999_998),
            "unknown": p.HEADER.pack(16, UNKNOWN_COMMAND, 0, 999_997),
        }[kind]
        for s in list(self._sessions):
            s.writer.write(bad)

    def send_receipt_text(self, text: bytes, tlvs: dict[int, bytes] | None = None, *,
                          command: str = "deliver_sm", esm_class: int = 0x04) -> None:
        """Send each receiving session a receipt ``deliver_sm`` (or ``data_sm``: the text, if any, in
        message_payload) with exactly this text and these TLVs (a vendor's odd receipt, for tests; with
        ``esm_class`` 0 a mobile-originated message); it is resent after a reconnect until answered,
        like every receipt."""
        receipt = receipt_with(command, {"esm_class": esm_class}, text, dict(tlvs or {}))
        for s in list(self._sessions):
            self._deliver(s, receipt)

    @property
    def bound_sessions(self) -> int:
        return sum(1 for s in self._sessions if s.mode)

    # --- connection handling --------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer)
        self._sessions.add(session)
        self.counters["connections"] += 1
        try:
            while True:
                try:
                    pdu = await read_pdu(reader)
                except p.PduError as exc:
                    self.counters[f"malformed_{exc.kind}"] += 1
                    session.send(p.generic_nack(exc.sequence, exc.status))
                    if exc.fatal:
                        break
                    continue
                if pdu is None or self._handle(session, pdu):
                    break
        except (ConnectionError, OSError):
            self.counters["connection_errors"] += 1
        finally:
            self._sessions.discard(session)
            writer.close()
            for receipt in session.unacked.values():  # never answered: send again later
                self._hold(session.system_id, receipt)
            self.counters["receipts_resent"] += len(session.unacked)

    def _handle(self, session: _Session, pdu: p.Pdu) -> bool:
        """Act on one PDU; True when the session must close."""
        cid = pdu.command_id
        self.counters[pdu.name] += 1
        if cid in _BIND_MODES:
            self._on_bind(session, pdu)
        elif cid == p.SUBMIT_SM:
            self._on_submit(session, pdu)
        elif cid == p.ENQUIRE_LINK:
            if self.config.nack_enquire_link:
                session.send(p.generic_nack(pdu.sequence, p.ESME_RINVCMDID))
            elif self.config.answer:
                session.send(p.response_to(pdu))
        elif cid == p.UNBIND:
            session.send(p.response_to(pdu))
            return True
        elif cid == p.DELIVER_SM or cid == p.DATA_SM:
            session.send(p.response_to(pdu, p.ESME_RINVBNDSTS))
        elif cid == p.DELIVER_SM | p.RESP or cid == p.DATA_SM | p.RESP:
            receipt = session.unacked.pop(pdu.sequence, None)
            if receipt is not None:
                self._receipt_answered(session, receipt, pdu.status)
        return session.writer.is_closing()  # dropped by a fault: what is still buffered is lost

    def _on_bind(self, session: _Session, pdu: p.Pdu) -> None:
        cfg = self.config
        accounts = {**cfg.accounts, cfg.system_id: cfg.password}
        if cfg.bind_status:
            status = cfg.bind_status
        elif session.mode:
            status = p.ESME_RALYBND
        elif pdu.get("system_id") not in accounts:
            status = p.ESME_RINVSYSID
        elif pdu.get("password") != accounts[pdu.get("system_id")]:
            status = p.ESME_RINVPASWD
        else:
            status = p.ESME_ROK
            session.mode = _BIND_MODES[pdu.command_id]
            session.system_id = str(pdu.get("system_id"))
        if status != p.ESME_ROK:
            self.counters["binds_refused"] += 1
        session.send(p.response_to(pdu, status, system_id="smsc-sim"))
        held = self._held.get(session.system_id)
        if status == p.ESME_ROK and session.receives and held:
            while held:
                self._deliver(session, held.popleft())

    def _on_submit(self, session: _Session, pdu: p.Pdu) -> None:
        cfg = self.config
        if not session.transmits:
            session.send(p.response_to(pdu, p.ESME_RINVBNDSTS))
            return
        if self._drops_now():
            return
        scripted = self._script.next_for(part_number(pdu)) if self._script else None
        if scripted == DROP or scripted == SILENT or not cfg.answer:
            self._unanswered(session, pdu, "scripted_" + scripted if scripted else "unanswered")
            return
        if scripted is None and cfg.nack_rate and self._rng.random() < cfg.nack_rate:
            self.counters["nacked"] += 1
            session.send(p.generic_nack(pdu.sequence, cfg.nack_status))
            return
        if scripted == UNTERMINATED:
            self._unterminated(session, pdu)
            return
        status = self._choose_status(session) if scripted is None else int(scripted)
        n = next(self._ids)
        mid = format(n, "X") if cfg.id_format == "hex" else str(n)
        if cfg.id_format == "long":
            mid = "Z" * 142 + f"{n:08d}"
        mid = mid if status == p.ESME_ROK else ""
        self.parts.append(
            ReceivedPart(mid, status, session.system_id, pdu.params, pdu.tlvs, time.time())
        )
        self.counters[f"status_0x{status:02x}"] += 1
        resp = p.response_to(pdu, status, message_id=mid)
        resp.tlvs.update(cfg.resp_tlvs)
        if status != p.ESME_ROK and cfg.error_resp_body != "message_id":
            raw_resp = self._bare_error_resp(resp)
        elif len(mid) >= 65:  # beyond SMPP 3.4 (id_format "long"): written by hand, as such an SMSC does
            raw_resp = self._oversize_id_resp(resp, mid)
        else:
            raw_resp = p.encode_pdu(resp)
        want_receipt = status == p.ESME_ROK and cfg.receipts and pdu.get("registered_delivery", 0)
        receipt = self._receipt_for(pdu, n, mid) if want_receipt else None
        copies = 2 if cfg.duplicate_receipt_rate and self._rng.random() < cfg.duplicate_receipt_rate \
            else 1
        early = cfg.receipts_before_resp or (
            cfg.early_receipt_rate and self._rng.random() < cfg.early_receipt_rate)
        if receipt is not None and early:
            for _ in range(copies):
                self._send_receipt(session, receipt)
            receipt = None
        self._later(self._rng.uniform(*cfg.latency), session.send_raw, raw_resp)
        if receipt is not None:
            for _ in range(copies):
                self._later(self._rng.uniform(*cfg.receipt_delay), self._send_receipt, session,
                            receipt)

    def _drops_now(self) -> bool:
        """Close every connection at the configured submit counts; True if it did."""
        cfg = self.config
        self._submits += 1
        if cfg.close_every_submits and self._submits % cfg.close_every_submits == 0:
            self.close_connections()
            return True
        if cfg.close_after_submits is not None:
            cfg.close_after_submits -= 1
            if cfg.close_after_submits <= 0:
                cfg.close_after_submits = None
                self.close_connections()
                return True
        return False

    def _unanswered(self, session: _Session, pdu: p.Pdu, why: str) -> None:
        """Record a part that gets no answer; a scripted drop closes its connection."""
        self.counters[why] += 1
        self.parts.append(ReceivedPart("", UNANSWERED, session.system_id, pdu.params, pdu.tlvs,
                                       time.time()))
        if why == "scripted_" + DROP:
            session.writer.transport.abort()

    def _unterminated(self, session: _Session, pdu: p.Pdu) -> None:
        """Accept a part with a submit_sm_resp whose message_id has no NUL (framed correctly)."""
        mid = str(next(self._ids))
        self.counters["scripted_" + UNTERMINATED] += 1
        self.parts.append(ReceivedPart(mid, p.ESME_ROK, session.system_id, pdu.params, pdu.tlvs,
                                       time.time()))
        raw = p.HEADER.pack(p.HEADER_LEN + len(mid), p.SUBMIT_SM | p.RESP, p.ESME_ROK,
                            pdu.sequence) + mid.encode()
        self._later(self._rng.uniform(*self.config.latency), session.send_raw, raw)

    @staticmethod
    def _oversize_id_resp(resp: p.Pdu, mid: str) -> bytes:
        body = mid.encode("latin-1") + b"\x00" + b"".join(
            struct.pack(">HH", tag, len(value)) + value for tag, value in resp.tlvs.items())
        return p.HEADER.pack(p.HEADER_LEN + len(body), resp.command_id, resp.status,
                             resp.sequence) + body

    def _bare_error_resp(self, resp: p.Pdu) -> bytes:
        """An error resp without its mandatory message_id: no body, or only the TLVs."""
        tlvs = b"" if self.config.error_resp_body == "none" else b"".join(
            struct.pack(">HH", tag, len(value)) + value for tag, value in resp.tlvs.items())
        return p.HEADER.pack(p.HEADER_LEN + len(tlvs), resp.command_id, resp.status,
                             resp.sequence) + tlvs

    def _choose_status(self, session: _Session) -> int:
        cfg = self.config
        if cfg.throttle > 0:
            now = time.monotonic()
            if now - session.window_start >= 1.0:
                session.window_start, session.window_count = now, 0
            session.window_count += 1
            if session.window_count > cfg.throttle:
                return p.ESME_RTHROTTLED
        roll = self._rng.random()
        for status, rate in cfg.error_rates.items():
            if roll < rate:
                return status
            roll -= rate
        return p.ESME_ROK

    def _later(self, delay: float, fn, *args) -> None:
        """Run now or after ``delay``; a late send to a closed session is a no-op."""
        if delay <= 0:
            fn(*args)
        else:
            asyncio.get_running_loop().call_later(delay, fn, *args)

    # --- receipts -------------------------------------------------------------------------------

    def _receipt_for(self, submit: p.Pdu, n: int, mid: str) -> p.Pdu:
        cfg = self.config
        states, weights = zip(*cfg.receipt_states.items(), strict=True)
        state = self._rng.choices(states, weights)[0]
        self.counters[f"receipt_{state}"] += 1
        self.receipt_log[mid] = state
        return receipt_pdu(submit, receipt_id(n, mid, cfg.receipt_id_format), state,
                           date_digits=cfg.receipt_date_digits, text_label=cfg.receipt_text_label,
                           tlvs=cfg.receipt_tlvs, command=cfg.receipt_command)

    def _send_receipt(self, session: _Session, receipt: p.Pdu) -> None:
        """Send a receipt to a receiver of the account that submitted the message; it counts as
        delivered once the ESME answers it (a session that drops first gives its unanswered receipts
        back, to be sent when a receiver of that account binds again)."""
        if self._deliver(session, receipt):
            return
        account = session.system_id
        if not any(s.system_id == account and self._deliver(s, receipt) for s in self._sessions):
            self._hold(account, receipt)

    def _receipt_answered(self, session: _Session, receipt: p.Pdu, status: int) -> None:
        """The ESME answered a receipt: delivered (0), to deliver again after a backoff (a temporary
        error), or refused for good (module doc)."""
        if status == p.ESME_ROK:
            self._refusals.pop(id(receipt), None)
            return
        cfg = self.config
        if status not in cfg.receipt_retry_statuses:
            self._refusals.pop(id(receipt), None)
            self.counters["receipts_refused"] += 1
            return
        refusals = self._refusals[id(receipt)] = self._refusals.get(id(receipt), 0) + 1
        first, cap = cfg.receipt_retry_seconds
        self.counters["receipts_retried"] += 1
        self._later(min(cap, first * 2 ** (refusals - 1)), self._send_receipt, session, receipt)

    def _hold(self, account: str, receipt: p.Pdu) -> None:
        self._held.setdefault(account, deque(maxlen=_MAX_HELD_RECEIPTS)).append(receipt)
        self.counters["receipts_held"] += 1

    def _deliver(self, session: _Session, receipt: p.Pdu) -> bool:
        if session not in self._sessions or not session.receives or session.writer.is_closing():
            return False
        seq = next(session.seq)
        session.unacked[seq] = receipt
        session.send(p.Pdu(receipt.command_id, seq, 0, receipt.params, receipt.tlvs))
        self.counters["receipts_sent"] += 1
        return True


class SmscThread:
    """A :class:`SimulatedSmsc` on its own event loop thread, driven from synchronous code."""

    def __init__(
        self,
        config: SmscConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.smsc = SimulatedSmsc(config)
        self.host, self._want_port, self._ssl = host, port, ssl
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="smsc", daemon=True)

    @property
    def port(self) -> int:
        return self.smsc.port

    def start(self, timeout: float = 10.0) -> SmscThread:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            self.smsc.start(self.host, self._want_port, self._ssl), self._loop
        )
        fut.result(timeout)
        return self

    def call(self, fn, *args, timeout: float = 10.0):
        """Run ``fn(*args)`` in the SMSC's loop thread and return its result."""

        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def go_down(self, timeout: float = 10.0) -> None:
        asyncio.run_coroutine_threadsafe(self.smsc.go_down(), self._loop).result(timeout)

    def come_back(self, timeout: float = 10.0) -> None:
        asyncio.run_coroutine_threadsafe(self.smsc.come_back(), self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.smsc.stop(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop.close()

    def __enter__(self) -> SmscThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    from bench.smsc_cli import main

    main()
