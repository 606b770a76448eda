"""What a local cluster hands a worker or an edge on its stdin, not on its command line.

A child's command line and environment are readable by other local users (``ps``, ``/proc/<pid>``), so
``smsroute run --workers N`` writes what must stay private to the child's stdin at every spawn, one line
each (``engine.cluster.local._hand_lines``): an edge's token first (``engine.cluster.edge.read_token``),
then the settings overrides, which may hold an SMSC password (``--smsc-password``). A process run by hand
may take its overrides as ``--overrides-json`` too, but never a password there: it is refused.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from engine.errors import ConfigError

SECRET_KEYS = frozenset({"password"})  # settings whose value is a credential (an SMPP bind's password)


def overrides_from(args: argparse.Namespace, stdin: TextIO) -> dict | None:
    """The settings overrides: one JSON line on ``stdin`` with ``--overrides-stdin``, else
    ``--overrides-json`` (a process run by hand; refused if it holds a password), else none."""
    if getattr(args, "overrides_stdin", False):
        line = stdin.readline()
        return json.loads(line) if line.strip() else None
    if not args.overrides_json:
        return None
    try:
        overrides = json.loads(args.overrides_json)
    except ValueError as exc:
        raise ConfigError(f"--overrides-json is not JSON: {exc}") from None
    found = _secret_setting(overrides)
    if found:  # the value is never echoed: it is a credential
        raise ConfigError(
            f"--overrides-json holds a password ({found}), which every local user can read on a "
            "command line (ps, /proc/<pid>/cmdline): give the overrides as one JSON line on stdin "
            "with --overrides-stdin instead (smsroute run --role worker: --smsc-password-file)")
    return overrides


def _secret_setting(doc: Any, path: str = "") -> str:
    """The dotted name of the first credential setting in ``doc`` ("" if none)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            name = f"{path}.{key}" if path else str(key)
            if key in SECRET_KEYS and value not in ("", None):
                return name
            found = _secret_setting(value, name)
            if found:
                return found
    return ""
