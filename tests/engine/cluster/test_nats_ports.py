"""The ports of a local NATS cluster are distinct: chosen together, not one at a time."""

from __future__ import annotations

import engine.cluster.nats_server as nats_server


class _KernelThatReusesPorts:
    """A socket module whose kernel hands out the lowest port not bound right now: a port given back is
    handed out again at once (real kernels may do that too, rarely; the suite once saw a server whose
    client and cluster ports were equal)."""

    def __init__(self) -> None:
        self.bound: set[int] = set()
        kernel = self

        class Socket:
            def __init__(self, *args) -> None:
                self.port = 0

            def bind(self, address) -> None:
                self.port = min(p for p in range(40000, 41000) if p not in kernel.bound)
                kernel.bound.add(self.port)

            def getsockname(self):
                return ("127.0.0.1", self.port)

            def close(self) -> None:
                kernel.bound.discard(self.port)

            def __enter__(self):
                return self

            def __exit__(self, *exc) -> None:
                self.close()

        self.socket = Socket


def test_the_client_and_cluster_ports_of_a_local_cluster_are_all_distinct(monkeypatch):
    monkeypatch.setattr(nats_server, "socket", _KernelThatReusesPorts())
    servers = nats_server.local_cluster(3)
    ports = [s.port for s in servers] + [s.cluster_port for s in servers]
    assert len(set(ports)) == 6, ports
