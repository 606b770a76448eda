"""A worker process: ``python -m engine.cluster.worker --index K --workers N --nats URL --data-dir DIR``.

It runs the sessions of its accounts' partition and a shard of every POP with its carriers
(``engine.cluster.placement``), joined to the core and the other workers over NATS. Started and supervised
by ``smsroute run --workers N`` (``engine.cluster.local``), or by hand on another host with ``--nats`` of a
shared NATS deployment. It prints ``smsroute worker <node> ready protocol=<n>`` once its actors run
(``engine.cluster.protocol``: the core hands a worker of another protocol no work) - then, with
``--beat-every`` (set by ``smsroute run``), a heartbeat line while its actors and NATS loop answer and its
retention sweeper and SMPP carriers' loops work (``engine.cluster.heartbeat``: a hung worker is killed and
restarted) - and stops on
SIGTERM/SIGINT: every actor finishes what it holds, the last group commits are written, and messages still
open resume from its stores the next time a worker with the same index starts on the same data directory.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from actors.supervisor import Runtime
from engine import log_format
from engine.cluster import protocol as cluster_protocol
from engine.cluster.handoff import overrides_from
from engine.cluster.heartbeat import Heartbeat, Probe, actors_probe, loop_probe, parts_probe
from engine.cluster.lifeline import stop_when_parent_exits
from engine.cluster.liveness import Deadlines
from engine.cluster.placement import worker_placement
from engine.cluster.protocol import ready_suffix
from engine.cluster.start_failure import report
from engine.config import load_settings
from engine.errors import SmsrouteError
from engine.gc_tuning import freeze_start_up_objects, tune_gc
from engine.ids import IdGenerator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.cluster.worker",
                                description="One smsroute worker process (see smsroute run --workers).")
    p.add_argument("--index", type=int, required=True, help="this worker's number, 0..N-1")
    p.add_argument("--workers", type=int, required=True, help="how many workers the cluster has")
    p.add_argument("--nats", required=True, help="NATS server URL(s), comma separated")
    p.add_argument("--data-dir", required=True, help="this worker's own data directory")
    p.add_argument("--config", help="the engine's config file (the same for every process)")
    p.add_argument("--nats-token-file", default="",
                   help="the token of a local cluster's own NATS server (smsroute run --workers N "
                        "starts it); a NATS deployment's credentials are set in [nats] instead")
    p.add_argument("--overrides-json", help="settings overrides as JSON (for a worker run by hand; a "
                        "password is refused here: other local users can read a command line)")
    p.add_argument("--overrides-stdin", action="store_true",
                   help="read the settings overrides as one JSON line on stdin (how smsroute run "
                        "--workers hands them over: they may hold a password, never put on a command line)")
    p.add_argument("--parent-pid", type=int, default=0,
                   help="stop once this process (smsroute run, which starts it) is gone "
                        "(engine.cluster.lifeline)")
    p.add_argument("--beat-every", type=float, default=0.0,
                   help="write a heartbeat line to stdout this often, seconds, while the POP actors "
                        "and the NATS loop answer (engine.cluster.heartbeat; 0: none)")
    return p


def worker_probes(node: str, runtime: Runtime) -> list[Probe]:
    """What a worker's beat waits for: its POP actors (the actors' dispatcher thread), its NATS loop,
    and the parts that stamp their progress - the retention sweeper, each SMPP carrier's event loop
    (``Runtime.hung_parts``) - and every long-lived part running (``Runtime.dead_parts``: a sweeper whose
    thread raised and ended is dead, not hung); one hung or dead stops the beat: the worker is restarted
    (``engine.cluster.heartbeat``)."""
    return [actors_probe(lambda: runtime.directory.pops.values()),
            loop_probe(lambda: runtime.transport and runtime.transport.loop),
            parts_probe(node, runtime.hung_parts, runtime.dead_parts)]


def main(argv: list[str] | None = None, overrides: dict | None = None) -> int:
    """Run a worker until SIGTERM/SIGINT. ``overrides``: settings overrides handed over in this process
    (``smsroute run --role worker``), which no other user can read, unlike a command line."""
    args = build_parser().parse_args(argv)
    log_format.configure(logging.WARNING)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # taken with sigwait below (engine.cli)
    placement = worker_placement(args.index, args.workers, args.nats.split(","), args.nats_token_file)
    if args.parent_pid:  # started by smsroute run: not left running, holding its lock, if that dies
        stop_when_parent_exits(args.parent_pid, placement.node)
    try:
        if overrides is None:
            overrides = overrides_from(args, sys.stdin)
        settings = load_settings(args.config, overrides)
        if settings.engine.gc_tuning:
            tune_gc()
        runtime = Runtime(Path(args.data_dir), settings, None, IdGenerator(), placement)
        runtime.start()
    except SmsrouteError as exc:  # to smsroute run, which names it in its own answer (start_failure)
        report("worker", placement.node, exc.code, exc.message, supervised=bool(args.parent_pid))
        return 2
    except OSError as exc:  # the environment, as smsroute run itself reports it: one line
        report("worker", placement.node, "os_error", str(exc), supervised=bool(args.parent_pid))
        return 2
    if settings.engine.gc_tuning:
        freeze_start_up_objects()
    protocol = cluster_protocol.PROTOCOL  # said to smsroute run and on NATS: engine.cluster.protocol
    print(f"smsroute worker {placement.node} ready{ready_suffix(protocol)}", flush=True)
    # announced ready on NATS after every round that beat, for the core and the edges, which refuse
    # this worker's submits while it is not (engine.cluster.presence); the beat line on stdout only
    # for the smsroute run that supervises us (engine.cluster.liveness)
    deadlines = Deadlines.of(settings)
    every = args.beat_every if args.beat_every > 0 else deadlines.beat_every
    announcer = runtime.announcer  # (it asked before the worker took frames: actors.cluster_link)
    assert announcer is not None
    announcer.fresh_for = 2 * every
    Heartbeat(placement.node, every, worker_probes(placement.node, runtime),
              fd=1 if args.beat_every > 0 else None, on_beat=announcer.ready,
              full_stores=runtime.directory.full_stores.names).start()  # the core's /readyz: store_full
    signal.sigwait(stop_signals)
    # before it stops taking frames: its submits are refused from now on (it still beats to the
    # supervisor while it stops, but announces nothing more)
    announcer.stopping()
    runtime.stop()
    runtime.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
