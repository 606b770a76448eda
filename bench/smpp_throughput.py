"""Measure SMPP throughput on loopback: SmppCarrierActor -> simulated SMSC (in another process).

What is measured: wall time from handing N single-part messages to the actor (one ``SubmitToCarrier`` per
``--batch``) until every ``submit_sm_resp`` and, with receipts, every delivery receipt has come back to the
(fake) POP. Messages/s = N / that time. One run per invocation; the SMSC runs in a child process so the two
sides do not share the interpreter.

    python -m bench.smpp_throughput --messages 20000 --binds 4 --window 50
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time

import pykka

from actors.carrier_smpp import SmppCarrierActor
from engine import messages as m
from engine.smpp import smsc_carrier_settings


class CountingPop:
    def __init__(self) -> None:
        self.responses = 0
        self.ok = 0
        self.receipts = 0
        self.up = threading.Event()
        self.cond = threading.Condition()

    def tell(self, raw: bytes) -> None:
        msg = m.decode(raw)
        with self.cond:
            if isinstance(msg, m.CarrierResponded):
                self.responses += len(msg.items)
                self.ok += sum(1 for i in msg.items if i.outcome == "ok")
            elif isinstance(msg, m.ReceiptsReceived):
                self.receipts += len(msg.items)
            elif isinstance(msg, m.CarrierStateChanged) and msg.available:
                self.up.set()
            self.cond.notify_all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(messages: int, binds: int, window: int, batch: int, receipts: bool) -> float:
    port = _free_port()
    smsc = subprocess.Popen(
        [sys.executable, "-m", "bench.smsc", "--port", str(port)], stderr=subprocess.PIPE, text=True
    )
    try:
        smsc.stderr.readline()  # "listening on ..."
        pop = CountingPop()
        settings = smsc_carrier_settings(
            "127.0.0.1",
            port,
            binds=binds,
            window=window,
            registered_delivery=1 if receipts else 0,
            queue_limit=max(100_000, messages),
        )
        ref = SmppCarrierActor.start("bench", settings, pop, None)
        if not pop.up.wait(10):
            raise SystemExit("could not bind to the simulated SMSC")
        items = [
            m.CarrierSubmitItem(f"r{i}", f"+4915{i:08d}", "ACME", f"Your code is {i:06d}")
            for i in range(messages)
        ]
        start = time.perf_counter()
        for i in range(0, messages, batch):
            ref.tell(m.encode(m.SubmitToCarrier(items[i : i + batch])))
        with pop.cond:
            pop.cond.wait_for(
                lambda: pop.responses >= messages and (not receipts or pop.receipts >= pop.ok),
                timeout=600,
            )
        elapsed = time.perf_counter() - start
        stats = ref.proxy().stats().get()
        ref.stop()
        print(
            f"{messages} messages, {binds} binds x window {window}, receipts={receipts}: "
            f"{elapsed:.2f} s, {messages / elapsed:,.0f} msg/s "
            f"(ok={pop.ok}, receipts={pop.receipts}, errors={stats['errors']})"
        )
        return messages / elapsed
    finally:
        pykka.ActorRegistry.stop_all()
        smsc.terminate()
        smsc.wait(10)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--binds", type=int, default=4)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--no-receipts", action="store_true")
    args = ap.parse_args(argv)
    run(args.messages, args.binds, args.window, args.batch, not args.no_receipts)


if __name__ == "__main__":
    main()
