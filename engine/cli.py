"""The ``smsroute`` command: ``run``, ``segments`` and ``bench``.

``smsroute run`` starts the engine on its embedded default (three POPs, simulated carriers, data in
``./data``) or on ``--config FILE``, with the customer API and the control port, prints where they listen,
and stops cleanly on Ctrl-C or SIGTERM. ``--smsc HOST:PORT`` replaces every carrier with SMPP binds to that
SMSC. ``smsroute segments TEXT`` prints how a text is encoded and split.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from engine.errors import SmsrouteError


def smsc_overrides(settings_doc: dict[str, Any], hostport: str, system_id: str,
                   password: str) -> dict[str, Any]:
    """Config overrides that turn every configured carrier into an SMPP bind to ``hostport``."""
    from engine.smpp import smsc_carrier_settings

    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"--smsc wants HOST:PORT, got {hostport!r}")
    carriers = {}
    for name, table in settings_doc.get("carriers", {}).items():
        options = smsc_carrier_settings(host, int(port), system_id=system_id, password=password)
        carriers[name] = {"pop": table["pop"], "kind": "smpp", **options}
    return {"carriers": carriers, "routes": settings_doc.get("routes", [])}


def _settings(args: argparse.Namespace):
    from engine.config import load_settings

    settings = load_settings(args.config)
    if getattr(args, "smsc", None):
        overrides = smsc_overrides(settings.raw, args.smsc, args.smsc_system_id, args.smsc_password)
        settings = load_settings(args.config, overrides)
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    from engine import Engine

    settings = _settings(args)
    # Block SIGTERM/SIGINT before any thread exists (every engine thread inherits the mask) and take
    # them with sigwait below: no Python signal handler runs, so none can deadlock on a lock the main
    # thread holds, and a signal that arrives while the engine starts is kept until we wait for it.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    engine = Engine.start(data_dir=args.data_dir, settings=settings, http=not args.no_http)
    data_dir = Path(args.data_dir).resolve()
    print(f"smsroute running: data in {data_dir}; POPs {', '.join(settings.pops)}; "
          f"carriers {len(settings.carriers)}", flush=True)
    if engine.http is not None:
        h, srv = settings.http, engine.http
        scheme = "https" if srv.ctx is not None and srv.ctx.tls else "http"
        print(f"customer API: {scheme}://{h.customer_host}:{srv.customer_port}/v1", flush=True)
        print(f"control port: {scheme}://{h.control_host}:{srv.control_port}/", flush=True)
    signal.sigwait(stop_signals)
    print("smsroute stopping: draining in-flight messages…", flush=True)
    engine.stop()
    print("smsroute stopped", flush=True)
    return 0


def cmd_segments(args: argparse.Namespace) -> int:
    from engine.segments import plan

    print(plan(args.text, max_segments=255).to_json())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.cli import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsroute", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the engine (embedded default, or --config FILE)")
    run.add_argument("--data-dir", default="./data", help="where stores and keys live (./data)")
    run.add_argument("--config", default=None, help="a TOML config merged over the embedded default")
    run.add_argument("--no-http", action="store_true", help="do not start the HTTP servers")
    _add_smsc_arguments(run)
    run.set_defaults(func=cmd_run)

    seg = sub.add_parser("segments", help="print the encoding and segments of a text as JSON")
    seg.add_argument("text")
    seg.set_defaults(func=cmd_segments)

    bench = sub.add_parser("bench", help="run the benchmark harness")
    try:
        from bench.cli import add_bench_arguments

        add_bench_arguments(bench)
    except ImportError:  # pragma: no cover - the harness ships with the package
        pass
    if not any(a.dest == "smsc" for a in bench._actions):
        _add_smsc_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def _add_smsc_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smsc", default=None, metavar="HOST:PORT",
                   help="replace every carrier with SMPP binds to this SMSC")
    p.add_argument("--smsc-system-id", default="smsroute")
    p.add_argument("--smsc-password", default="secret")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return args.func(args)
    except SmsrouteError as exc:
        print(f"smsroute: {exc.code}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
