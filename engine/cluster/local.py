"""``smsroute run --workers N`` on one host: a NATS server, N worker processes, and their supervision.

:class:`LocalCluster` starts (unless ``nats`` URLs are given) a local ``nats-server`` on a free loopback
port, then the workers (``python -m engine.cluster.worker``), each with its own data directory
``<data_dir>/workers/w<k>``, and waits until each says it is ready. A supervisor thread restarts a worker
that exits when it should not (backoff 0.5 s doubling to 10 s; each restart is counted and logged): the
restarted worker resumes its accepted messages from its own stores (crash recovery, per worker).
Each child's ready line names its cluster protocol (``engine.cluster.protocol``): one of another protocol
than this process (started from another install) is handed no work - :meth:`not_answering` names it,
``protocol 3, core 4``, so its submits are refused and it is asked nothing - with one ALARM line.
It also restarts one that no longer works: each child beats on its stdout (``engine.cluster.heartbeat``),
and one silent past ``[engine] child_hung_after_seconds`` is reported hung, past
``child_kill_after_seconds`` killed (SIGKILL) and restarted the same way (``engine.cluster.liveness``).
:meth:`stop` sends SIGTERM to every worker (each finishes its last group commit), then stops the NATS
server it started. That server is started under the lock of ``<data_dir>/nats``, after stopping one a
killed earlier run left there (``engine.cluster.nats_leftover``). The core (accounts, ledger, ingress)
runs in the calling process: an ``Engine`` started with ``placement=core_placement(...)``.

HTTP edges (:meth:`LocalCluster.start_edges`) are supervised the same way. Each is handed the core's edge
token on a pipe - the first line of its stdin, written at every spawn, restarts included - and nowhere
else: not the environment, which the workers and nats-server would inherit too (and which anyone who may
read ``/proc/<pid>/environ`` or a crash report sees), and not the command line (``ps``). A pipe needs no
file to clean up after a crash and is readable by the one child it was made for; the cluster keeps the
token in memory for the restarts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.cluster import nats_leftover
from engine.cluster.heartbeat import BEAT, full_stores_of
from engine.cluster.liveness import ALIVE, HUNG, KILL, Deadlines, Liveness
from engine.cluster.nats_server import NatsServer
from engine.cluster.placement import Placement, core_placement
from engine.cluster.protocol import PROTOCOL, mismatch, of_ready_line
from engine.cluster.start_failure import error_of, parse
from engine.config import load_settings
from engine.errors import ConfigError, SmsrouteError, StartupError
from storage.datadir import LOCK_FILE, NatsDirLock
from storage.keys import KEY_STORE_FILE, RESERVE_FILE

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
RESTART_BACKOFF_S = (0.5, 10.0)


def _copy_shared_keys(shared: Path, own: Path, node: str) -> None:
    """A worker that ran before workers had key stores of their own sealed its stores under the shared
    one: it starts on a copy of it (master key, key store, account keys; not the other workers' own
    directories), so what it sealed still opens. From then on each copy changes on its own."""
    import shutil

    tmp = own.with_name(own.name + ".copying")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700, parents=True)
    for entry in shared.iterdir():
        if entry.is_dir() and entry.name[:1] in "we" and entry.name[1:].isdigit():
            continue  # another worker's (or an edge's) own directory
        if entry.name in (LOCK_FILE, RESERVE_FILE):
            continue  # the core's hold on the shared directory; the core's space for shreds: not keys
        if entry.is_dir():
            shutil.copytree(entry, tmp / entry.name, copy_function=shutil.copy2)
        else:
            shutil.copy2(entry, tmp / entry.name)
    os.replace(tmp, own)  # whole or not at all: a half copy is never taken for the worker's store
    log.warning("worker %s: its key store is now %s, a copy of the shared %s it sealed under before",
                node, own, shared)


class _Worker:
    """A supervised process: a worker (``w<k>``) or an HTTP edge (``e<k>``)."""

    def __init__(self, index: int, kind: str = "w") -> None:
        self.index = index
        self.kind = kind
        self.node = f"{kind}{index}"
        self.proc: subprocess.Popen | None = None
        self.life = Liveness()  # this spawn's heartbeat, as its stdout reader sees it
        self.restarts = 0
        self.hung_kills = 0  # restarts because it was killed for hanging (also counted in restarts)
        self.started_at = 0.0
        self.backoff = RESTART_BACKOFF_S[0]
        self.next_start = 0.0


class LocalCluster:
    def __init__(self, data_dir: Path, workers: int, *, config: str | None = None,
                 overrides: dict[str, Any] | None = None, nats: list[str] | None = None,
                 worker_nats: list[list[str]] | None = None) -> None:
        if workers < 1:
            raise ConfigError("--workers must be at least 1")
        self.data_dir = Path(data_dir)
        stranded = sorted(int(p.parent.name[1:]) for p in self.data_dir.glob("workers/w*/pops")
                          if p.parent.name[1:].isdigit() and int(p.parent.name[1:]) >= workers)
        if stranded:  # a worker not started never resumes, bills or shows its messages
            raise ConfigError(
                f"{self.data_dir / 'workers'} holds the messages of worker(s) "
                f"{', '.join(f'w{k}' for k in stranded)}, which --workers {workers} would not start: "
                f"run with --workers {stranded[-1] + 1} or more")
        self.config = config
        self.overrides = overrides
        self.deadlines = Deadlines.of(load_settings(config, overrides))
        self.nats_server: NatsServer | None = None
        self._nats_lock: NatsDirLock | None = None  # held while our own NATS server may run
        self.nats_urls = list(nats or [])
        self.nats_token_file = ""  # our own server's token (engine.cluster.nats_security); its path
        self.workers = [_Worker(i) for i in range(workers)]
        self._by_node = {w.node: w for w in self.workers}  # (refusal: the workers, not the edges)
        self.edges: list[_Worker] = []
        self._edge_at: tuple[str, str, int] = ("", "127.0.0.1", 0)  # core URL, host, port
        self._edge_token = ""  # the secret the edges prove themselves to the core with; never logged
        self.worker_nats = worker_nats  # per worker, the servers it tries first (e.g. one each)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        # told the node of a child killed for hanging (the core's transport gives up on its requests)
        self.on_killed: Callable[[str], Any] | None = None
        # told the node of a child judged hung (the core's transport gives up on its reads: its
        # questions hold no thread until the kill)
        self.on_hung: Callable[[str], Any] | None = None
        # told the node of a worker seen to exit (the core announces it down: engine.cluster.presence)
        self.on_down: Callable[[str], Any] | None = None
        self._supervisor: threading.Thread | None = None

    # --- start ---------------------------------------------------------------------------------------

    def start_nats(self) -> list[str]:
        """The NATS URLs of the cluster: the ones given, or a local server started now, with a token
        of this run that every process of the cluster reads from ``nats_token_file``."""
        if not self.nats_urls:  # its log beside the data it serves
            self._start_own_nats(self.data_dir / "nats")
        return self.nats_urls

    def _start_own_nats(self, here: Path) -> None:
        """Under the lock of ``here`` (a second ``smsroute run`` on the data directory is refused before
        it touches the first's server or token): stop a server a killed earlier run left there, start
        ours and record its pid for the next start (``engine.cluster.nats_leftover``)."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        here.mkdir(exist_ok=True, mode=0o700)
        lock = NatsDirLock(here, "nats")
        lock.acquire()
        pid_file = here / nats_leftover.PID_FILE
        try:
            nats_leftover.stop_leftover(pid_file)
            server = NatsServer(log_dir=here, token_file=here / "client.token").start()
            assert server.proc is not None
            nats_leftover.record(pid_file, server.proc.pid)
        except BaseException:
            lock.release()
            raise
        self._nats_lock, self.nats_server = lock, server
        self.nats_urls = [server.url]
        self.nats_token_file = str(here / "client.token")

    def core_placement(self) -> Placement:
        """The placement of the process that runs the core beside these workers (starts NATS if need be)."""
        return core_placement(len(self.workers), self.start_nats(), self.nats_token_file)

    def start_workers(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Start every worker and wait until each is ready; then supervise them."""
        for w in self.workers:
            self._spawn(w)
        deadline = time.monotonic() + timeout
        for w in self.workers:
            self._wait_ready(w, deadline, timeout)
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name="smsroute-workers")
        self._supervisor.start()

    def start_edges(self, count: int, core_url: str, host: str, port: int, token: str,
                    timeout: float = READY_TIMEOUT_S) -> None:
        """``count`` HTTP edge processes on ``host:port`` (SO_REUSEPORT), forwarding to ``core_url``
        what they do not serve themselves (``engine.cluster.edge``); supervised like the workers.
        ``token`` is the edge token the core at ``core_url`` believes forwarded addresses with: each
        edge gets it on its stdin, now and whenever it is restarted."""
        if not token:
            raise ConfigError("HTTP edges need an edge token")
        self._edge_at = (core_url, host, port)
        self._edge_token = token
        self.edges = [_Worker(i, "e") for i in range(count)]
        for e in self.edges:
            self._spawn(e)
        deadline = time.monotonic() + timeout
        for e in self.edges:
            self._wait_ready(e, deadline, timeout)

    def child_command(self, node: str, module: str) -> list[str]:
        """How the worker or edge ``node`` is started (before its arguments): this Python running
        ``module``. One place, so a test can start a child another way (as another version:
        ``tests/engine/cluster/other_protocol.py``) without production code reading a test-only
        setting."""
        return [sys.executable, "-m", module]

    def _spawn(self, w: _Worker) -> None:
        if w.kind == "e":
            return self._spawn_edge(w)
        data = self.data_dir / "workers" / w.node
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        args = [*self.child_command(w.node, "engine.cluster.worker"), "--index", str(w.index),
                "--workers", str(len(self.workers)), "--nats", ",".join(self._nats_for(w)),
                "--data-dir", str(data), "--parent-pid", str(os.getpid()),
                "--beat-every", repr(self.deadlines.beat_every)]
        if self.config:
            args += ["--config", str(self.config)]
        if self.nats_token_file:  # the file's path: the token itself never goes on a command line
            args += ["--nats-token-file", self.nats_token_file]
        overrides = self._worker_overrides(w, data)
        if overrides:  # on stdin, not the command line: they may hold an SMSC password (--smsc-password)
            args += ["--overrides-stdin"]
        w.life = Liveness()
        w.proc = subprocess.Popen(args, stdin=subprocess.PIPE if overrides else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
        if overrides:
            _hand_lines(w.proc, [json.dumps(overrides)])
        w.started_at = time.monotonic()

    def _worker_overrides(self, w: _Worker, data: Path) -> dict[str, Any] | None:
        """The overrides a worker starts with. A ``[keys] dir`` outside the worker's own data directory
        (an absolute path, as policy 9 suggests) would be one key store for the core and every worker:
        each rewrites the whole ``keys.store`` with what it knows, so one worker's body window key (or
        the core's newest named key) was dropped by another's write, and what it sealed no longer
        opened after a restart. Each worker gets its own ``<dir>/w<k>`` there instead."""
        from engine.config import load_settings

        configured = load_settings(self.config, self.overrides).keys.dir
        if not configured:
            return self.overrides
        keys = (data / configured).resolve()
        if keys.is_relative_to(data.resolve()):
            return self.overrides  # already the worker's own
        own = keys / w.node
        if not own.exists() and (data / "pops").exists() and (keys / KEY_STORE_FILE).exists():
            _copy_shared_keys(keys, own, w.node)
        overrides = dict(self.overrides or {})
        overrides["keys"] = {**overrides.get("keys", {}), "dir": str(own)}
        return overrides

    def _spawn_edge(self, e: _Worker) -> None:
        core_url, host, port = self._edge_at
        args = [*self.child_command(e.node, "engine.cluster.edge"), "--index", str(e.index),
                "--workers", str(len(self.workers)), "--edges", str(len(self.edges)),
                "--nats", ",".join(self.nats_urls),
                "--data-dir", str(self.data_dir / "edges" / e.node), "--host", host,
                "--port", str(port), "--core-url", core_url, "--parent-pid", str(os.getpid()),
                "--beat-every", repr(self.deadlines.beat_every)]
        if self.config:
            args += ["--config", str(self.config)]
        if self.nats_token_file:
            args += ["--nats-token-file", self.nats_token_file]
        if self.overrides:  # after the token, on stdin too (never on a command line: see _spawn)
            args += ["--overrides-stdin"]
        e.life = Liveness()
        e.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        _hand_lines(e.proc, [self._edge_token, *([json.dumps(self.overrides)] if self.overrides else [])])
        e.started_at = time.monotonic()

    def _nats_for(self, w: _Worker) -> list[str]:
        if self.worker_nats:
            return self.worker_nats[w.index]
        return self.nats_urls

    def _wait_ready(self, w: _Worker, deadline: float, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until ``w`` prints its ready line, at most until ``deadline``. Its stdout is read by a
        thread of its own (which then keeps draining it), so a worker that hangs silently while it
        starts cannot hold this wait past the deadline: it is killed and reported."""
        proc = w.proc
        assert proc is not None and proc.stdout is not None
        # True: ready; (code, message): it said why it could not start; False: its stdout closed
        seen: queue.SimpleQueue[bool | tuple[str, str]] = queue.SimpleQueue()
        threading.Thread(target=_read_until_ready, args=(proc.stdout, w.node, seen, w.life),
                         daemon=True, name=f"smsroute-{w.node}-stdout").start()
        kind = "worker" if w.kind == "w" else "edge"
        try:
            ready = seen.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()  # stuck while starting: not left behind (the supervisor restarts it, if running)
            proc.wait(5)
            raise ConfigError(f"worker {w.node} was not ready within {timeout:g} s "
                              f"(killed)") from None
        if isinstance(ready, tuple):  # its own error, as it said it (engine.cluster.start_failure)
            proc.wait()
            raise error_of(kind, w.node, *ready)
        if not ready:
            code = proc.wait()
            raise StartupError(f"{kind} {w.node} exited with {code} before it was ready (without "
                               "saying why: see its output above)")

    # --- supervision ---------------------------------------------------------------------------------

    def _supervise(self) -> None:
        watched = time.monotonic()  # until when the supervisor has watched the children
        while not self._stopping.wait(0.2):
            for w in [*self.workers, *self.edges]:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    now = time.monotonic()
                    if now - watched > max(1.0, self.deadlines.hung_after / 2):
                        w.life.excuse(now)  # we were stopped or starved: their silence went unseen
                    self._check(w)
            watched = time.monotonic()

    def _check(self, w: _Worker) -> None:
        proc = w.proc
        if proc is not None and proc.poll() is None:
            if time.monotonic() - w.started_at > 30:
                w.backoff = RESTART_BACKOFF_S[0]  # it stayed up: the next failure starts over
            self._judge(w, proc)
            return
        now = time.monotonic()
        if proc is not None:  # it just died
            log.error("worker %s exited with %s; restarting in %.1f s", w.node, proc.returncode,
                      w.backoff)
            w.proc = None
            w.next_start = now + w.backoff
            w.backoff = min(RESTART_BACKOFF_S[1], w.backoff * 2)
            if w.kind == "w" and self.on_down is not None:
                self.on_down(w.node)
            return
        if now >= w.next_start:
            w.restarts += 1
            self._spawn(w)
            threading.Thread(target=self._wait_ready_quietly, args=(w,), daemon=True).start()

    def _judge(self, w: _Worker, proc: subprocess.Popen) -> None:
        """Act on ``w``'s heartbeat: one log line per change (hung, answering again, killed); a child
        killed here is seen dead by the next round and restarted like a crashed one."""
        now = time.monotonic()
        state = w.life.judge(now, self.deadlines)
        if state is None:
            return
        fields = {"node": w.node, "pid": proc.pid, "role": "edge" if w.kind == "e" else "worker",
                  "silent_seconds": round(w.life.silent_for(now) or 0.0, 1), "state": state}
        if state == HUNG:
            log.error("%s %s is hung: no heartbeat for %.1f s; killed after %g s", fields["role"],
                      w.node, fields["silent_seconds"], self.deadlines.kill_after, extra=fields)
            if self.on_hung is not None:
                self.on_hung(w.node)
        elif state == ALIVE:
            log.warning("%s %s answers again", fields["role"], w.node, extra=fields)
        elif state == KILL:
            log.error("%s %s killed (SIGKILL): no heartbeat for %.1f s; restarting it", fields["role"],
                      w.node, fields["silent_seconds"], extra=fields)
            w.hung_kills += 1
            proc.kill()  # our child, not yet waited for: its pid cannot be another process's
            if self.on_killed is not None:
                self.on_killed(w.node)

    def _wait_ready_quietly(self, w: _Worker) -> None:
        try:
            self._wait_ready(w, time.monotonic() + READY_TIMEOUT_S)
            log.warning("worker %s restarted (restart %d)", w.node, w.restarts)
        except SmsrouteError as exc:  # it said why (start_failure), or exited, or hung: logged, retried
            log.error("%s: %s", exc.code, exc.message)

    def status(self) -> list[dict[str, Any]]:
        """Every worker and HTTP edge: node, pid, whether it runs, whether it is ready (runs and said so:
        not while a restart starts it), whether it is hung (runs but its heartbeat is over
        ``child_hung_after_seconds`` late), seconds since its last heartbeat (None while it starts), how
        often it was restarted, how often of those it was killed for hanging, and the stores its last
        heartbeat named full (``message:fra``: refusing new messages for lack of space)."""
        out = []
        now = time.monotonic()
        for w in [*self.workers, *self.edges]:
            proc, life = w.proc, w.life
            alive = proc is not None and proc.poll() is None
            silent = life.silent_for(now) if alive else None
            other = _other_protocol(life) if alive else None
            out.append({"node": w.node, "pid": proc.pid if proc else None, "alive": alive,
                        "ready": alive and life.last_beat is not None and other is None,
                        "hung": alive and life.state != ALIVE,
                        "silent_seconds": None if silent is None else round(silent, 1),
                        "restarts": w.restarts, "hung_kills": w.hung_kills,
                        "full_stores": list(life.full_stores) if alive else [],
                        "protocol": life.protocol if alive else None, "protocol_mismatch": other})
        return out

    def not_answering(self, node: str) -> str | None:
        """Why worker ``node`` will take no submit and answer no question now - ``"down"`` (exited, or
        killed, and not started again yet), ``"starting"`` (a spawn that has not said ready: not
        subscribed yet), ``"protocol 3, core 4"`` (its ready line named another cluster protocol than
        ours: ``engine.cluster.protocol``) or ``"hung"`` (its heartbeat is over
        ``child_hung_after_seconds`` late) - or None
        (also for a node this cluster does not run). Read for every submit the core hands to a worker
        (``engine.cluster.presence``, as :meth:`refusal`) and by the core's query threads before each
        question (``ClusterShards``), so a worker known not to answer holds no thread for a question's
        time-out; the same verdicts as :meth:`status` and ``/readyz``. It reads what the supervisor and
        the stdout reader keep and makes no system call: a worker that exited counts as down once the
        supervisor saw it (within a round, 0.2 s)."""
        w = self._by_node.get(node)
        if w is None:
            return None
        proc, life = w.proc, w.life
        if proc is None or proc.returncode is not None:
            return "down"
        if life.last_beat is None:
            return "starting"
        if life.protocol != PROTOCOL:  # (one compare: this is read for every submit)
            return _other_protocol(life)
        if life.state != ALIVE:
            return "hung"
        return None

    refusal = not_answering  # (the name Transport.readiness asks: engine.cluster.presence)

    def kill_worker(self, index: int, kind: str = "w") -> int:
        """SIGKILL one worker (or edge: ``kind="e"``) for fault tests; the supervisor restarts it.
        Returns the pid killed."""
        proc = (self.workers if kind == "w" else self.edges)[index].proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        return proc.pid

    # --- stop ----------------------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every worker and wait for it (each writes its last commits), then stop NATS."""
        self.stop_workers(timeout)
        if self.nats_server is not None:
            self.nats_server.stop()
            nats_leftover.forget(self.data_dir / "nats" / nats_leftover.PID_FILE)
        if self._nats_lock is not None:
            self._nats_lock.release()

    def stop_workers(self, timeout: float = 30.0) -> None:
        """SIGTERM every worker and wait for it (each writes its last commits); idempotent."""
        with self._lock:
            self._stopping.set()
        procs = [w.proc for w in [*self.edges, *self.workers] if w.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _hand_lines(proc: subprocess.Popen, lines: list[str]) -> None:
    """Write what a just-spawned worker or edge must not get on its command line or in its environment
    (both readable by other local users: ``ps``, ``/proc``) to its stdin, one line each, and close it:
    an edge's token, then the settings overrides (which may hold an SMSC password). A few short lines fit
    the pipe's buffer, so this never waits for the child; one that died before reading them (a broken
    pipe) is seen by the supervisor and restarted, with the lines written again."""
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        try:
            proc.stdin.write("".join(line + "\n" for line in lines))
        finally:
            proc.stdin.close()  # flushes: a broken pipe shows here, and the fd is closed regardless


def _other_protocol(life: Liveness) -> str | None:
    """``protocol 3, core 4`` for a spawn whose ready line named another protocol than ours."""
    return None if life.protocol is None else mismatch(life.protocol, PROTOCOL)


def _read_until_ready(stream, node: str, seen: queue.SimpleQueue, life: Liveness) -> None:
    """Read a worker's (or edge's) stdout: say when its ready line comes (True), or its failure line
    (``(code, message)``, ``engine.cluster.start_failure``), or the pipe closes first (False); keep
    reading after the ready line so the process never blocks on a full pipe; the ready line and every
    beat line after it go to ``life``, with the protocol the ready line names (an ALARM line when it is
    not ours)."""
    prefixes = (f"smsroute worker {node} ready", f"smsroute edge {node} ready")
    beat = f"{BEAT} {node}"
    said = ready = False
    with contextlib.suppress(ValueError, OSError):  # (the pipe closed under us)
        for line in stream:
            if ready:
                if line.startswith(beat):
                    life.beat(time.monotonic(), full_stores_of(line))
                continue
            if said:  # it said why it could not start: the rest is drained
                continue
            failure = parse(line.rstrip("\n"), "worker", node) or parse(line.rstrip("\n"), "edge", node)
            if failure is not None:
                said = True
                seen.put(failure)
            elif line.startswith(prefixes):
                said = ready = True
                life.protocol = of_ready_line(line)  # (before the beat: never ready without it)
                _alarm_other_protocol(line.split()[1], node, life)
                life.beat(time.monotonic())
                seen.put(True)
    if not said:
        seen.put(False)


def _alarm_other_protocol(role: str, node: str, life: Liveness) -> None:
    """One ALARM line for a spawn of another protocol (a restart logs its own)."""
    other = _other_protocol(life)
    if other is not None:
        log.error("cluster: ALARM %s %s speaks another cluster protocol (%s): it is handed no work "
                  "(its submits refused, no query sent) and /readyz names it; it was started from "
                  "another smsroute install than this core's (README: upgrading a cluster)", role,
                  node, other,
                  extra={"node": node, "role": role, "protocol": life.protocol,
                         "own_protocol": PROTOCOL})
