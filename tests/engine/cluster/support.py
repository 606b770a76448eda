"""A cluster on one machine for the tests: a core engine in the test process and worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine import Engine
from engine.cluster.local import LocalCluster
from engine.cluster.nats_server import NatsServer
from engine.cluster.placement import core_placement
from engine.config import load_settings
from tests.engine.crash_support import delivering_carriers
from tests.engine.disk_full_support import run_on_tiny_tmpfs
from tests.waiting import wait_for

DEPOSIT_USD = "1000"


class Finals:
    """The final statuses the core hears of (status events may be lost with a NATS server: the
    stores are the truth, see ``Cluster.final_in_store``)."""

    def __init__(self) -> None:
        self.statuses: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    def __call__(self, item: Any) -> None:
        if item.status != "accepted":
            with self.lock:
                self.statuses.setdefault(item.message_id, []).append(item.status)


def funded_accounts(engine: Engine, n: int = 0, usd: str = DEPOSIT_USD) -> list[Any]:
    """At least ``n`` accounts funded with ``usd`` and sender ACME, and at least one on every worker of
    the cluster ``engine`` is the core of (account ids are random; their partition follows from them)."""
    out: list[Any] = []
    place = engine.runtime.placement
    i = 0
    while len(out) < n or {place.worker_of(a.id) for a in out} != set(place.workers):
        i += 1
        acct = engine.create_account(email=f"c{i}@example.com")
        if len(out) >= n and place.worker_of(acct.id) in {place.worker_of(a.id) for a in out}:
            continue  # enough of this worker's: looking for another worker's
        engine.register_sender(acct.id, "ACME")
        engine.deposit(acct.id, usd=usd, chain="test", tx_hash=f"0xc{i}", from_address="addr")
        out.append(acct)
    return out


class Cluster:
    def __init__(self, data_dir: Path, workers: int = 2, *, overrides: dict | None = None,
                 nats: list[str] | None = None, worker_nats: list[list[str]] | None = None,
                 core_nats: list[str] | None = None, http: bool = False) -> None:
        self.overrides = overrides or delivering_carriers()
        self.cluster = LocalCluster(data_dir, workers, overrides=self.overrides, nats=nats,
                                    worker_nats=worker_nats)
        placement = (core_placement(workers, core_nats) if core_nats
                     else self.cluster.core_placement())
        self.finals = Finals()
        self.engine = Engine.start(data_dir=data_dir / "core",
                                   settings=load_settings(None, self.overrides),
                                   placement=placement, on_status=self.finals, http=http,
                                   cluster=self.cluster)
        try:
            self.cluster.start_workers()
        except BaseException:
            self.stop()
            raise

    def accounts(self, n: int) -> list[Any]:
        """At least ``n`` funded accounts with sender ACME, and at least one on every worker."""
        return funded_accounts(self.engine, n)

    def final_in_store(self, message_id: str) -> str | None:
        rec = self.engine.status(message_id)
        return rec.status if rec is not None and rec.status != "accepted" else None

    def stop(self) -> None:
        self.engine.stop(drain_seconds=0)
        self.cluster.stop()


def stop_process(pid: int, timeout: float = 5.0) -> None:
    """SIGSTOP ``pid`` and return once every thread of it is stopped (a hung worker, for a test).

    ``kill()`` returns as soon as the signal is queued: the kernel wakes one thread to stop the whole
    group, and the others - a worker's NATS loop, the threads answering the core's questions - run on
    until that thread has been scheduled. On a loaded host that is milliseconds, and a question the test
    sends right after the kill is answered by the process it believes stopped (measured on a 2-core
    host at load 6: after half of 300 kills a thread still ran, for up to 7 ms, and 5 of 300 questions
    sent right after were answered)."""
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: all(state in "TtZX" for state in _thread_states(pid)),
             f"every thread of process {pid} stopped", timeout)


def _thread_states(pid: int) -> list[str]:
    """The state letter of each thread of ``pid`` (``/proc/<pid>/task/*/stat``; ``T``: stopped)."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError):  # (a thread that ended meanwhile)
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
    return states


@contextmanager
def worker_down(c: Cluster, index: int) -> Iterator[None]:
    """Worker ``index`` stopped (SIGTERM, waited for) for the body of the ``with``, then started again
    and waited for until ready. The supervisor is held off meanwhile, so it neither restarts the worker
    early nor counts this as a crash."""
    cluster = c.cluster
    w = cluster.workers[index]
    with cluster._lock:
        assert w.proc is not None
        w.proc.send_signal(signal.SIGTERM)
        w.proc.wait(30)
        yield
        cluster._spawn(w)
        cluster._wait_ready(w, time.monotonic() + 60)


class LinkCutter:
    """A loopback TCP relay in front of a NATS server, for one process's link: :meth:`cut` closes every
    connection through it and refuses new ones (the process is cut off while the others stay
    connected); :meth:`restore` listens again on the same port. A standalone server advertises no other
    URL, so the cut-off client cannot go round it. :meth:`hold` instead keeps the connections open but
    forwards nothing until :meth:`release` (a link that stalls unnoticed: what is sent meanwhile arrives
    late, all at once)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self.restore()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self.release()
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b, self._flowing), daemon=True).start()


@contextmanager
def cluster_with_a_cuttable_link(data_dir: Path, cut: str, **cluster: Any
                                 ) -> Iterator[tuple[Cluster, LinkCutter]]:
    """Two workers on one NATS server; ``cut`` (``"core"`` or ``"w1"``) reaches it through a
    :class:`LinkCutter`, the others directly (``cluster``: more arguments of :class:`Cluster`, e.g.
    ``http=True``). Everything is stopped on the way out."""
    server = NatsServer(log_dir=data_dir / "nats-log").start()
    link = LinkCutter(server.port)
    c = None
    try:
        if cut == "core":
            c = Cluster(data_dir, workers=2, nats=[server.url], core_nats=[link.url], **cluster)
        else:
            c = Cluster(data_dir, workers=2, nats=[server.url],
                        worker_nats=[[server.url], [link.url]], **cluster)
        yield c, link
    finally:
        if c is not None:
            c.stop()
        link.close()
        server.stop()


def _pipe(src: socket.socket, dst: socket.socket, flowing: threading.Event) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            flowing.wait()
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


class Later:
    """An executor whose leases run when the test says (a real one runs them on its threads)."""

    def __init__(self) -> None:
        self.tasks: list = []

    def submit(self, fn, *args):
        self.tasks.append((fn, args))

    def run(self) -> None:
        tasks, self.tasks = self.tasks, []
        for fn, args in tasks:
            fn(*args)


def run_on_a_tiny_worker_disk(tmp_path: Path, child: str) -> tuple[dict, str]:
    """Run the Python source ``child`` (given ``<tmp_path>/data`` as its argument) in a private mount
    namespace where worker w0's data directory is a 4 MiB tmpfs, and return the JSON object its last line
    of output prints, with its standard error (the log). (Needs root and ``unshare -m``: skip with
    ``tests.engine.disk_full_support.needs_tiny_tmpfs``.)"""
    data = tmp_path / "data"
    return run_on_tiny_tmpfs(data / "workers" / "w0", child, arg=data, timeout=60)
