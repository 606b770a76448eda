"""What a local cluster hands a worker or an edge on its stdin, not on its command line.

A child's command line and environment are readable by other local users (``ps``, ``/proc/<pid>``), so
``smsroute run --workers N`` writes what must stay private to the child's stdin at every spawn, one line
each (``engine.cluster.local._hand_lines``): an edge's token first (``engine.cluster.edge.read_token``),
then the settings overrides, which may hold an SMSC password (``--smsc-password``).
"""

from __future__ import annotations

import argparse
import json
from typing import TextIO


def overrides_from(args: argparse.Namespace, stdin: TextIO) -> dict | None:
    """The settings overrides: one JSON line on ``stdin`` with ``--overrides-stdin``, else
    ``--overrides-json`` (a process run by hand), else none."""
    if getattr(args, "overrides_stdin", False):
        line = stdin.readline()
        return json.loads(line) if line.strip() else None
    return json.loads(args.overrides_json) if args.overrides_json else None
