"""A stopping HTTP edge refuses submits like the one-process engine (503 ``OverloadedError``), instead of
handing them to a worker it is about to stop listening to: their answers would never reach it."""

from __future__ import annotations

import pytest

from engine import apikeys
from engine.cluster.edge_engine import EdgeEngine
from engine.cluster.placement import Placement
from engine.config import load_settings
from engine.errors import OverloadedError


class _Recording:
    """A transport that records what the edge would send a worker."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str]] = []

    def ref(self, node: str, name: str):
        told = self.told

        class _Ref:
            def tell(self, raw: bytes) -> None:
                told.append((node, name))

        return _Ref()

    def stop(self) -> None:
        pass


def test_a_stopping_edge_refuses_submits_and_hands_nothing_to_a_worker(tmp_path):
    edge = EdgeEngine(load_settings(None), Placement(node="edge-0", runs_core=False, runs_pops=False,
                                                     workers=("worker-0",)), tmp_path)
    transport = _Recording()
    edge.transport = transport  # type: ignore[assignment]
    edge._keys[apikeys.digest("sk_test")] = ("acct-1", float("inf"))  # the key already resolved
    edge._stopping = True  # what stop() sets first
    with pytest.raises(OverloadedError):
        edge.submit_many("sk_test", [{"to": "+4915112345678", "sender": "ACME", "body": "hi"}])
    with pytest.raises(OverloadedError):
        edge.submit_future("sk_test", "+4915112345678", "ACME", "hi")
    assert transport.told == []
