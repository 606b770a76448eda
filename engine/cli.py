"""The ``smsroute`` command: ``run``, ``segments``, ``webhook-receiver``, ``ledger``, ``compact`` and ``bench``.

``smsroute run`` starts the engine on its embedded default (three POPs, simulated carriers, data in
``./data``) or on ``--config FILE``, with the customer API and the control port, prints where they listen,
and stops cleanly on Ctrl-C or SIGTERM. ``--host``, ``--customer-port`` and ``--control-port`` override the
config's binds; ``--smsc HOST:PORT`` replaces every carrier with SMPP binds to that SMSC. ``smsroute
segments TEXT`` prints how a text is encoded and split. ``smsroute ledger verify|reconcile`` checks the
ledger of a stopped engine's data directory (``engine.billing.offline``); ``smsroute compact`` rewrites its
LMDB files without their freed pages (``storage.compaction``).

A start-up failure an operator can fix (a busy port, a data directory that is locked, unreadable or on a
full disk, a missing config file, a TLS file that does not load) is one line on stderr,
``smsroute: <code>: <what to do>``, and exit status 2 — never a traceback. Each sub-command is one
``cmd_*`` function and one ``_add_*_parser``, so adding one (or a flag) touches nothing else.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from engine import log_format
from engine.cluster.protocol import PROTOCOL
from engine.errors import ConfigError, SmsrouteError

DESCRIPTION = "smsroute: a transit-layer A2P SMS gateway engine."
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def smsc_overrides(settings_doc: dict[str, Any], hostport: str, system_id: str,
                   password: str) -> dict[str, Any]:
    """Config overrides that turn every configured carrier into an SMPP bind to ``hostport``."""
    from engine.smpp import smsc_carrier_settings

    host, _, port = hostport.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        # the documented start-up failure (one line, exit 2), not a bare SystemExit (exit 1)
        raise ConfigError(f"--smsc wants HOST:PORT (a port 1-65535), got {hostport!r}")
    carriers = {}
    for name, table in settings_doc.get("carriers", {}).items():
        options = smsc_carrier_settings(host, int(port), system_id=system_id, password=password)
        carriers[name] = {"pop": table["pop"], "kind": "smpp", **options}
    return {"carriers": carriers, "routes": settings_doc.get("routes", [])}


def http_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``[http]`` overrides from ``--host``, ``--customer-port`` and ``--control-port``."""
    http: dict[str, Any] = {}
    if args.host is not None:
        http.update(customer_host=args.host, control_host=args.host)
    if args.customer_port is not None:
        http["customer_port"] = args.customer_port
    if args.control_port is not None:
        http["control_port"] = args.control_port
    return {"http": http} if http else {}


def _settings(args: argparse.Namespace):
    return _settings_and_overrides(args)[0]


def _settings_and_overrides(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from engine.config import load_settings

    refuse_smsc_options_without_smsc(args)
    overrides = http_overrides(args)
    settings = load_settings(args.config, overrides)
    if getattr(args, "smsc", None):
        overrides.update(smsc_overrides(settings.raw, args.smsc, args.smsc_system_id or DEFAULT_SYSTEM_ID,
                                        smsc_password(args)))
        settings = load_settings(args.config, overrides)
    return settings, overrides


def cmd_run(args: argparse.Namespace) -> int:
    from engine import Engine

    if args.role == "worker":
        return _run_worker(args)
    settings, overrides = _settings_and_overrides(args)
    public, edge_token = None, ""
    if args.edges:
        if not args.workers or args.no_http:
            raise ConfigError("--edges needs --workers N and the HTTP ports")
        if args.role != "all":  # the edges are a local cluster's: a core alone would leave the port unserved
            raise ConfigError("--edges starts edges beside a local cluster; it does not go with --role")
        settings, public = _core_behind_edges(args, overrides)
        edge_token = secrets.token_hex(16)  # in memory only: to our HTTP context and to each edge
    # Block SIGTERM/SIGINT before any thread exists (every engine thread inherits the mask) and take
    # them with sigwait below: no Python signal handler runs, so none can deadlock on a lock the main
    # thread holds, and a signal that arrives while the engine starts is kept until we wait for it.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    cluster, placement = _cluster_for(args, overrides)
    try:
        engine = Engine.start(data_dir=args.data_dir, settings=settings, http=not args.no_http,
                              placement=placement, edge_token=edge_token, cluster=cluster)
        if cluster is not None:
            cluster.start_workers()
            if public is not None:
                scheme = "https" if settings.http.tls_cert else "http"  # the core's port speaks TLS too
                cluster.start_edges(args.edges, f"{scheme}://127.0.0.1:{engine.http.customer_port}",
                                    *public, token=edge_token)
    except BaseException:
        if cluster is not None:
            cluster.stop()
        raise
    data_dir = Path(args.data_dir).resolve()
    where = (f"{len(cluster.workers) if cluster else args.workers} worker process(es) over NATS "
             f"{','.join(placement.nats)}" if placement is not None else "one process")
    print(f"smsroute running: data in {data_dir}; POPs {', '.join(settings.pops)}; "
          f"carriers {len(settings.carriers)}; {where}", flush=True)
    if engine.http is not None:
        h, srv = settings.http, engine.http
        scheme = "https" if srv.ctx is not None and srv.ctx.tls else "http"
        if public is not None:
            print(f"customer API: {scheme}://{public[0]}:{public[1]}/v1 ({args.edges} edge "
                  f"processes)", flush=True)
        else:
            print(f"customer API: {scheme}://{h.customer_host}:{srv.customer_port}/v1", flush=True)
        print(f"control port: {scheme}://{h.control_host}:{srv.control_port}/", flush=True)
    signal.sigwait(STOP_SIGNALS)
    print("smsroute stopping: draining in-flight messages…", flush=True)
    engine.stop()
    print("smsroute stopped", flush=True)
    return 0


def _cluster_for(args: argparse.Namespace, overrides: dict[str, Any]) -> tuple[Any, Any]:
    """(the LocalCluster this process supervises or None, the core's placement or None)."""
    if not args.workers and args.role == "all":
        return None, None
    from engine.cluster.local import LocalCluster
    from engine.cluster.placement import core_placement

    if args.workers < 1:
        raise ConfigError("--role core needs --workers N (how many workers the cluster has)")
    nats = args.nats.split(",") if args.nats else None
    if args.role == "core":
        if not nats:
            raise ConfigError("--role core needs --nats URL (the workers' NATS deployment)")
        return None, core_placement(args.workers, nats,
                                    accept_fewer_workers=args.accept_fewer_workers)
    if args.accept_fewer_workers:
        raise ConfigError("--accept-fewer-workers goes with --role core (a supervised cluster checks "
                          "its workers' directories itself)")
    cluster = LocalCluster(Path(args.data_dir), args.workers, config=args.config,
                           overrides=overrides or None, nats=nats)
    return cluster, cluster.core_placement()


def _core_behind_edges(args: argparse.Namespace, overrides: dict[str, Any]) -> tuple[Any, Any]:
    """With ``--edges``: the core serves the customer API on a loopback port of its own (for what the
    edges forward), the edges on the configured one. (The edge token is made by ``cmd_run`` and handed
    to the core's HTTP context and to each edge in code, never through the environment.)"""
    from engine.cluster.nats_server import free_port
    from engine.config import load_settings

    configured = load_settings(args.config, overrides).http
    port = configured.customer_port or free_port(configured.customer_host)
    core = {**overrides, "http": {**overrides.get("http", {}), "customer_host": "127.0.0.1",
                                  "customer_port": 0}}
    return load_settings(args.config, core), (configured.customer_host, port)


def _run_worker(args: argparse.Namespace) -> int:
    """``smsroute run --role worker``: one worker of a multi-host cluster, in this process."""
    from engine.cluster import worker

    if args.workers < 1 or not args.nats:
        raise ConfigError("--role worker needs --workers N, --worker-index K and --nats URL")
    if args.edges:  # the edges are a local cluster's (--workers N --edges M); a worker starts none
        raise ConfigError("--edges starts edges beside a local cluster; it does not go with --role worker")
    if args.worker_index >= args.workers:  # "w<K>" would hold no partition, and worker K would be missing
        raise ConfigError(f"--worker-index {args.worker_index} is not a worker of --workers "
                          f"{args.workers}: the workers are numbered 0..{args.workers - 1}")
    _, overrides = _settings_and_overrides(args)  # --smsc: this worker's carriers bind to that SMSC
    argv = ["--index", str(args.worker_index), "--workers", str(args.workers), "--nats", args.nats,
            "--data-dir", args.data_dir]
    if args.config:
        argv += ["--config", args.config]
    return worker.main(argv, overrides or None)  # in this process: never on a command line (ps)


def cmd_segments(args: argparse.Namespace) -> int:
    from engine.segments import plan

    print(plan(args.text, max_segments=255).to_json())
    return 0


def cmd_webhook_receiver(args: argparse.Namespace) -> int:
    from engine.webhook_receiver import start_receiver

    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    server = start_receiver(args.host, args.port, args.secret_file)
    signal.sigwait(STOP_SIGNALS)
    server.shutdown()
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    from engine.billing import offline
    from engine.config import load_settings

    check = offline.verify if args.check == "verify" else offline.reconcile
    return check(args.data_dir, load_settings(args.config))


def cmd_compact(args: argparse.Namespace) -> int:
    from engine.config import load_settings
    from storage.compaction import compact

    data_dir = Path(args.data_dir)
    keys = load_settings(args.config).keys.dir if args.config else None
    done = compact(data_dir, (data_dir / keys,) if keys else ())
    for env in done:
        print(f"{env.name}: {env.before} -> {env.after} bytes", flush=True)
    before, after = sum(e.before for e in done), sum(e.after for e in done)
    print(f"compacted {len(done)} store(s) in {data_dir.resolve()}: {before} -> {after} bytes", flush=True)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.cli import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsroute", description=DESCRIPTION)
    # the cluster protocol too: processes of a cluster work together only when it is the same
    parser.add_argument("--version", action="version",
                        version=f"smsroute {_version()} (cluster protocol {PROTOCOL})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_parser(sub)
    _add_segments_parser(sub)
    _add_webhook_receiver_parser(sub)
    _add_ledger_parser(sub)
    _add_compact_parser(sub)
    _add_bench_parser(sub)
    return parser


def _add_run_parser(sub: Any) -> None:
    run = sub.add_parser("run", help="run the engine (embedded default, or --config FILE)",
                         description="Run the engine until Ctrl-C or SIGTERM (which drain in-flight "
                                     "messages first).")
    run.add_argument("--data-dir", default="./data", help="where stores and keys live (./data)")
    run.add_argument("--config", default=None, help="a TOML config merged over the embedded default")
    run.add_argument("--host", default=None,
                     help="bind both HTTP servers to this address (default 127.0.0.1; beyond "
                          "loopback needs [http] tls_cert and tls_key)")
    run.add_argument("--customer-port", type=_port, default=None, metavar="PORT",
                     help="the customer API's port (default 8080; 0 picks a free one)")
    run.add_argument("--control-port", type=_port, default=None, metavar="PORT",
                     help="the control port's port (default 8081; 0 picks a free one)")
    run.add_argument("--no-http", action="store_true", help="do not start the HTTP servers")
    c = run.add_argument_group("cluster (worker processes joined by NATS)")
    c.add_argument("--workers", type=count_from(0), default=0, metavar="N",
                   help="run the sessions and POPs in N worker processes supervised by this one "
                        "(which keeps the accounts, the ledger and the HTTP ports); starts a local "
                        "nats-server unless --nats is given")
    c.add_argument("--edges", type=count_from(0), default=0, metavar="M",
                   help="with --workers: serve the customer API from M HTTP edge processes sharing its "
                        "port (SO_REUSEPORT); this process keeps the control port")
    c.add_argument("--nats", default=None, metavar="URL[,URL]",
                   help="join this NATS deployment instead of starting a local server")
    c.add_argument("--role", choices=("all", "core", "worker"), default="all",
                   help="multi-host: 'core' runs the accounts, ledger and HTTP ports and expects "
                        "--workers N workers elsewhere; 'worker' runs worker --worker-index of "
                        "--workers N (both need --nats)")
    c.add_argument("--worker-index", type=count_from(0), default=0, metavar="K",
                   help="with --role worker: this worker's number, 0..N-1")
    c.add_argument("--accept-fewer-workers", action="store_true",
                   help="with --role core: start with fewer --workers than the cluster last ran with "
                        "(<data>/topology.json), accepting that the messages the missing workers hold "
                        "are left out of their accounts' reads (refused without it)")
    _add_smsc_arguments(run)
    run.set_defaults(func=cmd_run)


def _add_segments_parser(sub: Any) -> None:
    seg = sub.add_parser("segments", help="print the encoding and segments of a text as JSON")
    seg.add_argument("text")
    seg.set_defaults(func=cmd_segments)


def _add_webhook_receiver_parser(sub: Any) -> None:
    rx = sub.add_parser("webhook-receiver", help="print the webhooks sent to a local port",
                        description="Listen for webhooks, print one line per webhook and check "
                                    "its signature (for trying the engine out).")
    rx.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    rx.add_argument("--port", type=_port, default=9000, help="port to listen on (9000)")
    rx.add_argument("--secret-file", default=None, metavar="FILE",
                    help="a file holding the account's webhook signing secret (read per request)")
    rx.set_defaults(func=cmd_webhook_receiver)


def _add_ledger_parser(sub: Any) -> None:
    ledger = sub.add_parser("ledger", help="verify or reconcile the ledger of a stopped engine",
                            description="Check the billing ledger in a data directory no engine is "
                                        "using; prints a JSON report, exit status 1 if anything is "
                                        "wrong. A running engine answers the same on its control port.")
    checks = ledger.add_subparsers(dest="check", required=True, metavar="CHECK")
    for name, text in (("verify", "walk the hash chain and open every entry; report every broken "
                                  "link (edited, missing or added entries)"),
                       ("reconcile", "compare message records and ledger: a debit per message, at "
                                     "most one refund, a message per debit, balances = sums")):
        check = checks.add_parser(name, help=text, description=text)
        check.add_argument("--data-dir", default="./data", help="the engine's data directory (./data)")
        check.add_argument("--config", default=None,
                           help="the engine's config file (for [keys]: where the keys live, the HSM)")
        check.set_defaults(func=cmd_ledger)


def _add_compact_parser(sub: Any) -> None:
    text = ("Rewrite every LMDB store of a stopped engine's data directory without its freed pages: "
            "what deleted or migrated data they still held is gone, and the files shrink to the data. "
            "Refused while an engine (or a worker) uses the directory; prints each store's size before "
            "and after.")
    compact = sub.add_parser("compact", help="compact the stores of a stopped engine", description=text)
    compact.add_argument("--data-dir", default="./data", help="the engine's data directory (./data)")
    compact.add_argument("--config", default=None,
                         help="the engine's config file (for a [keys] dir outside the data directory, "
                              "locked too)")
    compact.set_defaults(func=cmd_compact)


def _add_bench_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="run the benchmark harness",
                           description="Run a benchmark scenario against the engine and report "
                                       "latency per corridor, throughput and cost.")
    try:
        from bench.cli import add_bench_arguments

        add_bench_arguments(bench)
    except ImportError:  # pragma: no cover - the harness ships with the package
        pass
    if not any(a.dest == "smsc" for a in bench._actions):
        _add_smsc_arguments(bench)
    bench.set_defaults(func=cmd_bench)


DEFAULT_SYSTEM_ID, DEFAULT_PASSWORD = "smsroute", "secret"  # the binds of --smsc without the options
_SMSC_OPTIONS = (("--smsc-system-id", "smsc_system_id"), ("--smsc-password", "smsc_password"),
                 ("--smsc-password-file", "smsc_password_file"))


def refuse_smsc_options_without_smsc(args: argparse.Namespace) -> None:
    """``--smsc-system-id`` / ``--smsc-password[-file]`` without ``--smsc HOST:PORT`` were ignored without
    a word: the carriers stayed the config's - the embedded default's are simulated, so an operator who
    forgot ``--smsc`` had messages "delivered" (and billed) that no SMSC ever saw. Refused instead."""
    given = [flag for flag, dest in _SMSC_OPTIONS if getattr(args, dest, None) is not None]
    if given and not getattr(args, "smsc", None):
        raise ConfigError(f"{', '.join(given)} set the SMPP binds of --smsc HOST:PORT, which is not "
                          "given: without it the carriers are the config's (the embedded default's are "
                          "simulated, reaching no SMSC); add --smsc HOST:PORT, or drop "
                          f"{'them' if len(given) > 1 else 'it'}")


def _add_smsc_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smsc", default=None, metavar="HOST:PORT",
                   help="replace every carrier with SMPP binds to this SMSC")
    p.add_argument("--smsc-system-id", default=None,
                   help=f"the SMPP bind's system_id (default: {DEFAULT_SYSTEM_ID}; only with --smsc)")
    add_smsc_password_arguments(p)


def add_smsc_password_arguments(p: Any) -> None:
    """``--smsc-password`` or ``--smsc-password-file`` (read by :func:`smsc_password`), on a parser or an
    argument group: ``smsroute run`` and ``smsroute bench`` take the same two."""
    password = p.add_mutually_exclusive_group()
    password.add_argument("--smsc-password", default=None,
                          help="the SMPP bind's password (default: secret; other local users can read a "
                               "command line: prefer --smsc-password-file)")
    password.add_argument("--smsc-password-file", default=None, metavar="FILE",
                          help="read the SMPP bind's password from the first line of FILE")


def smsc_password(args: argparse.Namespace) -> str:
    """The SMPP bind's password: the first line of ``--smsc-password-file`` (kept off the command line,
    which ``ps`` shows every local user), else ``--smsc-password``."""
    path = getattr(args, "smsc_password_file", None)
    if not path:
        return args.smsc_password if args.smsc_password is not None else DEFAULT_PASSWORD
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--smsc-password-file {path}: cannot be read ({type(exc).__name__})") from None
    if not lines or not lines[0].strip():
        raise ConfigError(f"--smsc-password-file {path}: its first line holds no password")
    return lines[0].strip()


def count_from(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of ``minimum`` or more (processes, messages, accounts...),
    refused at the parser, never replaced by a default or run as nothing (``smsroute bench`` too)."""
    def count(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"not a count of {minimum} or more: {text!r}")
        return int(text)

    return count


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r} (0-65535)")
    return int(text)


def _version() -> str:
    try:
        return metadata.version("smsroute")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_format.configure(logging.INFO if args.verbose else logging.WARNING)
    try:
        return args.func(args)
    except SmsrouteError as exc:
        print(f"smsroute: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not a bug of ours: one line, no traceback
        print(f"smsroute: os_error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
