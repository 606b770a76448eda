"""Test-only entry point: a worker or edge process that speaks another cluster protocol.

Run as ``python other_protocol.py <protocol> <module> <the module's arguments...>``: it sets
``engine.cluster.protocol.PROTOCOL`` in this child before any other engine module is imported (so every
``from ... import PROTOCOL`` there sees it too), then runs ``<module>`` (``engine.cluster.worker`` or
``engine.cluster.edge``) as ``__main__``. Tests put it in front of a node's command with
:func:`speaking` (``LocalCluster.child_command``), so production code reads no test-only setting.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from engine.cluster.local import LocalCluster

_ORIGINAL = LocalCluster.child_command


def speaking(protocols: Mapping[str, int]) -> Callable[[LocalCluster, str, str], list[str]]:
    """A ``LocalCluster.child_command`` that starts the nodes named in ``protocols`` (``{"w1": 3}``)
    speaking that protocol, and every other node as usual; monkeypatch it onto ``LocalCluster``."""

    def child_command(cluster: LocalCluster, node: str, module: str) -> list[str]:
        if node not in protocols:
            return _ORIGINAL(cluster, node, module)
        return [sys.executable, str(Path(__file__).resolve()), str(protocols[node]), module]

    return child_command


def _main() -> None:
    number, module = int(sys.argv[1]), sys.argv[2]
    del sys.argv[1:3]  # the module sees its own arguments only
    from engine.cluster import protocol

    protocol.PROTOCOL = number
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main()
