"""``smsroute bench``: the command line of the benchmark harness.

``engine/cli.py`` builds the ``bench`` sub-command from :func:`add_bench_arguments` and calls
:func:`run_bench`; ``python -m bench`` runs the same thing standalone. With no arguments it runs the short
built-in ``default`` scenario across the three POPs and prints the per-corridor table.

Examples::

    smsroute bench                                      # default scenario, embedded, simulated carriers
    smsroute bench --scenario saturation --json sat.json --chart sat.png
    smsroute bench --mode throughput --messages 200000  # as fast as the in-flight cap allows
    smsroute bench --rate 12500 --duration 20           # open loop at half the 25k/s target
    smsroute bench --path http --rate 5000              # the customer API over loopback + webhooks
    smsroute bench --smsc 127.0.0.1:2775                # carriers are SMPP binds to that SMSC
    smsroute bench --smsc hostile --duration 10         # an in-process faulty SMSC, then a check
    smsroute bench --soak 10 --rate 12000               # memory-flat check
    smsroute bench --linearity 20000                    # 10x the messages should cost <= 10.5x CPU
    smsroute bench --compare before.json after.json
    smsroute bench --compare a1.json,a2.json,a3.json b1.json,b2.json,b3.json   # with run-to-run noise
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from bench.scenario import ARRIVALS, PATHS, Scenario, builtin_names, load_scenario
from engine.cli import add_smsc_password_arguments, count_from, smsc_password
from engine.errors import SmsrouteError

MODES = ("open", "saturation", "throughput")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bench options to ``parser`` (the ``smsroute bench`` sub-parser)."""
    g = parser.add_argument_group("scenario")
    g.add_argument(
        "--scenario",
        default="default",
        metavar="NAME|FILE",
        help=f"built-in scenario ({', '.join(builtin_names())}) or a TOML file",
    )
    g.add_argument("--list", action="store_true", help="list the built-in scenarios and exit")
    g.add_argument("--mode", choices=MODES, help="override the scenario's mode")
    g.add_argument("--path", choices=PATHS, help="embedded (in-process) or http (loopback API)")
    g.add_argument("--rate", type=float, help="offered messages/s (open mode)")
    g.add_argument("--arrival", choices=ARRIVALS, help="fixed spacing or Poisson arrivals")
    g.add_argument("--duration", type=float, metavar="S", help="measured seconds (open mode)")
    g.add_argument("--warmup", type=float, metavar="S", help="unmeasured seconds before")
    g.add_argument("--messages", type=count_from(1), help="measured messages (throughput mode)")
    g.add_argument("--max-in-flight", type=int, help="the bench's own in-flight cap")
    g.add_argument("--p99-bound-ms", type=float, help="saturation: the p99 bound on submit->final")
    g.add_argument("--start-rate", type=float, help="saturation: the first offered rate")
    g.add_argument("--step", type=float, metavar="S", help="saturation: seconds per step")
    g.add_argument("--seed", type=int, help="workload seed")
    g.add_argument(
        "--reuse-numbers",
        action="store_true",
        help="send to a pool of numbers per country instead of a distinct number per message "
        "(the default, except for --soak)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="run the engine as a cluster: N worker processes joined by a local NATS server "
        "(the bench drives it through its own ingress in the core process)",
    )
    g.add_argument(
        "--accounts",
        type=count_from(1),
        metavar="K",
        help="spread the traffic over K customer accounts (default: one per engine process - 1, "
        "or N with --workers N - so each worker serves as many accounts as the single process)",
    )
    c = parser.add_argument_group("carriers")
    c.add_argument("--smsc", metavar="HOST:PORT|PROFILE",
                   help="use SMPP carriers bound to this SMSC; a profile name (default, hostile) "
                        "runs the simulated SMSC in-process and checks every status against it")
    c.add_argument("--smsc-system-id", default="smsroute")
    add_smsc_password_arguments(c)
    c.add_argument("--smsc-window", type=count_from(1), help="submits in flight per bind")
    c.add_argument("--webhook-batch", type=count_from(1), default=1, metavar="N",
                   help="http path: up to N events per webhook POST (the opt-in batching; default 1)")
    c.add_argument("--smsc-binds", type=count_from(1), help="binds per carrier")
    x = parser.add_argument_group("extra checks")
    x.add_argument("--soak", type=float, metavar="MINUTES", help="long run sampling RSS")
    x.add_argument("--linearity", type=count_from(1), metavar="N", help="N vs 10N messages: CPU ratio")
    x.add_argument(
        "--profile-stages",
        action="store_true",
        help="CPU µs per message by stage (embedded path; with --workers, each worker's stages too), "
        "printed and in --json under 'stages'",
    )
    o = parser.add_argument_group("output")
    o.add_argument("--json", metavar="PATH", help="write the result as JSON")
    o.add_argument("--chart", metavar="PATH", help="write a PNG of the latency distributions")
    o.add_argument(
        "--compare",
        nargs=2,
        metavar=("A.json", "B.json"),
        help="print the ratios B/A between two results and exit; each side may be several runs, "
        "comma-separated (A1.json,A2.json), to show the run-to-run noise",
    )
    o.add_argument(
        "--allow-different-scenarios",
        action="store_true",
        help="--compare runs of different scenarios anyway (with a warning)",
    )
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("--data-dir", help="engine data directory (default: a temporary one)")
    o.add_argument(
        "--engine-in-process",
        action="store_true",
        help="http path: run the engine in the bench's process (default: a child)",
    )


def run_bench(args: argparse.Namespace) -> int:
    """Run what ``args`` asks for; return the process exit code (0 ok, 2 bad input)."""
    from bench import report

    try:
        if args.list:
            for name in builtin_names():
                print(f"{name:<12} {load_scenario(name).description}")
            return 0
        if args.compare:
            from bench.compare import compare, format_compare

            a, b = ([report.read_json(p) for p in side.split(",")] for side in args.compare)
            cmp = compare(a, b, allow_different=args.allow_different_scenarios)
            print(format_compare(cmp, *args.compare))
            return 0
        scenario = scenario_from_args(args)
        if args.profile_stages and scenario.path == "http":  # refused now, not ignored after the run
            raise ValueError("--profile-stages profiles the actors of this process and of its workers; "
                             "with --path http the engine runs in a child process (use the embedded path)")
        smsc, profile = _parse_smsc(args.smsc) if args.smsc else (None, None)
        args.smsc_password = smsc_password(args)  # a bad --smsc-password-file: refused before the run
    except (SmsrouteError, OSError, ValueError) as exc:
        print(f"smsroute bench: {exc}", file=sys.stderr)
        return 2
    result = _run(scenario, args, smsc, profile)
    doc = report.result_json(result)
    print(report.format_table(doc))
    if "smsc_check" in result.notes:
        print(_format_check(result.notes["smsc_check"]))
    if args.json:
        report.write_json(doc, args.json)
        print(f"wrote {args.json}")
    if args.chart:
        from bench.chart import write_chart

        write_chart(doc, args.chart)
        print(f"wrote {args.chart}")
    return 0


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The scenario named by ``--scenario`` with the command line's overrides applied."""
    sc = load_scenario(args.scenario)
    changes = {
        "mode": args.mode if args.mode in ("open", "saturation") else None,
        "rate": args.rate,
        "arrival": args.arrival,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "max_in_flight": args.max_in_flight,
        "p99_bound_ms": args.p99_bound_ms,
        "start_rate": args.start_rate,
        "step_s": args.step,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    for key in ("rate", "duration_s", "max_in_flight", "p99_bound_ms", "start_rate", "step_s"):
        if key in changes and changes[key] <= 0:
            raise ValueError(f"--{key.removesuffix('_s').replace('_', '-')} must be > 0")
    if changes:
        sc = sc.with_load(**changes)
    if args.path:
        sc = replace(sc, path=args.path)
    if args.seed is not None:
        sc = replace(sc, seed=args.seed)
    return sc


def accounts_of(args: argparse.Namespace) -> int:
    """``--accounts``, or by default one account per engine process: 1, or one per worker with
    ``--workers N`` (an account's sessions live on one worker, so each worker needs one). Each worker
    then serves what the single process serves, so their CPU per message compares like with like;
    before, ``--workers`` opened 8 accounts against the single process's 1 (``--workers 2 --accounts 2``
    was 3-4 % cheaper than the 8: more accounts, more sessions and ledger entries per write)."""
    return args.accounts or max(1, args.workers)


def _parse_smsc(text: str) -> tuple[tuple[str, int] | None, str | None]:
    """``(host, port), None`` for an SMSC to bind to, or ``None, profile`` for an in-process one."""
    from bench.smsc_faults import PROFILES

    if text in PROFILES:
        return None, text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--smsc must be HOST:PORT or one of {', '.join(PROFILES)}, got {text!r}")
    return (host, int(port)), None


def _format_check(check: dict) -> str:
    lines = [f"SMSC check: {check['verdict']}  " + "  ".join(
        f"{k}={v}" for k, v in check.items() if k not in ("verdict", "examples", "why"))]
    lines += [f"  {e}" for e in check.get("examples", [])]
    if "why" in check:
        lines.append(f"  {check['why']}")
    return "\n".join(lines)


def _run(scenario: Scenario, args: argparse.Namespace, smsc: tuple[str, int] | None,
         profile: str | None = None):
    from bench import modes, report
    from bench.harness import Bench, RunOptions

    total = args.soak * 60 if args.soak else scenario.load.duration_s + scenario.load.warmup_s
    progress = report.Progress(total_s=total)
    if args.no_progress:
        progress.enabled = False
    overrides = {}
    if args.smsc_window:
        overrides["window"] = args.smsc_window
    if args.smsc_binds:
        overrides["binds"] = args.smsc_binds
    options = RunOptions(
        smsc=smsc,
        smsc_profile=profile,
        smsc_system_id=args.smsc_system_id,
        smsc_password=args.smsc_password,
        smsc_overrides=overrides,
        data_dir=args.data_dir,
        on_tick=progress.tick,
        distinct_numbers=not (args.reuse_numbers or args.soak),
        workers=args.workers,
        accounts=accounts_of(args),
        profile_stages=args.profile_stages,
        webhook_batch=args.webhook_batch,
    )
    mode = args.mode or scenario.load.mode
    _say(
        f"smsroute bench: scenario '{scenario.name}', {scenario.path} path, "
        f"{'SMPP ' + args.smsc if smsc or profile else 'simulated'} carriers, "
        f"{'soak' if args.soak else 'linearity' if args.linearity else mode} mode"
    )
    with Bench(scenario, options) as bench:
        try:
            if args.soak:
                result = modes.run_soak(bench, args.soak, args.rate)
            elif args.linearity:
                result = modes.run_linearity(bench, args.linearity, args.rate)
            elif mode == "saturation":
                result = modes.run_saturation(bench, log=_say)
            elif mode == "throughput":
                result = modes.run_throughput(bench, args.messages)
            else:
                result = modes.run_open(bench)
            if profile:
                result.notes["smsc_check"] = bench.check_smsc()
        finally:
            progress.done()
    result.smsc = args.smsc
    result.notes.update(bench.notes)
    return result


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
