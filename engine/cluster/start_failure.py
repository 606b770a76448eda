"""How a worker or HTTP edge that ``smsroute run`` started tells it why it could not start.

Before, the supervisor saw only the child's exit status and answered every failure the same way,
``smsroute: invalid_config: worker w0 exited with 2 before it was ready``, even when the worker's own
line (lost among the cluster's other output) said its data directory was in use or a store failed. Now
a supervised child (``--parent-pid``) writes its error as one line on its stdout, the pipe the supervisor
already reads for the ready line::

    smsroute worker w0 failed {"code": "data_dir_in_use", "message": "..."}

and the supervisor raises the error of that code (:func:`error_of`), so ``smsroute run`` answers
``smsroute: data_dir_in_use: worker w0: ...`` (exit status 2) like a failure of its own. A child run by
hand prints its usual line on stderr instead.
"""

from __future__ import annotations

import json
import sys

from engine.errors import SmsrouteError, error_from_code

__all__ = ["error_of", "failure_line", "parse", "report"]


def failure_line(kind: str, node: str, code: str, message: str) -> str:
    """The line a supervised ``kind`` (``worker`` / ``edge``) ``node`` writes when it cannot start."""
    return f"smsroute {kind} {node} failed " + json.dumps({"code": code, "message": message})


def report(kind: str, node: str, code: str, message: str, *, supervised: bool) -> None:
    """Say why this child could not start: to the supervisor (stdout) or to whoever ran it (stderr)."""
    if supervised:
        print(failure_line(kind, node, code, message), flush=True)
    else:
        print(f"smsroute {kind} {node}: {code}: {message}", file=sys.stderr)


def parse(line: str, kind: str, node: str) -> tuple[str, str] | None:
    """``(code, message)`` from a failure line of ``kind`` ``node``; None for any other line."""
    prefix = f"smsroute {kind} {node} failed "
    if not line.startswith(prefix):
        return None
    try:
        said = json.loads(line[len(prefix):])
        return str(said["code"]), str(said["message"])
    except (ValueError, KeyError, TypeError):
        return None


def error_of(kind: str, node: str, code: str, message: str) -> SmsrouteError:
    """The child's error as the supervisor raises it: its class and code, the child named."""
    error = error_from_code(code, f"{kind} {node}: {message}")
    if error.code != code:  # a code without a class of its own (os_error): kept as the child said
        error.code = code
    return error
