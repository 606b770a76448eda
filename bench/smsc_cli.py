"""``python -m bench.smsc``: run the simulated SMSC standalone (``--profile hostile`` for a faulty one)."""

from __future__ import annotations

import argparse
import asyncio
import logging

import uvloop

from bench.smsc import SimulatedSmsc, SmscConfig
from bench.smsc_faults import PROFILES

log = logging.getLogger("bench.smsc")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Simulated SMPP 3.4 SMSC")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2775)
    ap.add_argument("--system-id", default="smsroute")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="max submit_sm_resp latency")
    ap.add_argument("--receipt-delay-ms", type=float, default=0.0, help="max receipt delay")
    ap.add_argument("--throttle", type=float, default=0.0, help="max submit_sm/s per bind")
    ap.add_argument("--bind-status", type=lambda v: int(v, 0), default=0,
                    help="refuse every bind with this command_status (e.g. 0x0E); 0 = check credentials")
    ap.add_argument("--profile", default="default", choices=sorted(PROFILES),
                    help="a named behaviour (bench/smsc_faults.py); the options above override it")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    overrides = {"system_id": args.system_id, "password": args.password}
    if args.bind_status:
        overrides["bind_status"] = args.bind_status
    if args.throttle:
        overrides["throttle"] = args.throttle
    if args.latency_ms:
        overrides["latency"] = (0.0, args.latency_ms / 1000)
    if args.receipt_delay_ms:
        overrides["receipt_delay"] = (0.0, args.receipt_delay_ms / 1000)
    config = SmscConfig.profile(args.profile, **overrides)

    async def serve() -> None:
        smsc = SimulatedSmsc(config)
        await smsc.start(args.host, args.port)
        log.info("simulated SMSC (%s) listening on %s:%d", args.profile, args.host, smsc.port)
        try:
            await asyncio.Event().wait()
        finally:
            await smsc.stop()

    try:
        uvloop.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
