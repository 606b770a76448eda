"""The customer API's door in tests that are not about it: a loop that lags on a loaded machine sheds no one.

The door refuses new requests with ``503 overloaded`` while the HTTP loop runs more than
``queue_delay_target_ms`` (25) behind for three probes in a row with 4 or more requests in progress
(``engine.http.shedding``). On a loaded CI
machine (2 cores shared with other jobs) a test's process is starved that long now and then, and a test
that asserts an exact answer then fails on a refusal that says nothing about what it tests. Tests that
start an engine or an edge take :data:`LAG_NEVER_SHEDS` in their ``[http]`` settings: only a lag of
about 11 days sheds. The bound on requests in progress (``max_pending_requests``) still holds, and the
shedding tests (``tests/engine/http/test_shedding_*``) set their own targets.
"""

from __future__ import annotations

from pathlib import Path

LAG_NEVER_SHEDS = {"queue_delay_target_ms": 1e9}  # the largest target [http] accepts
# the same for ``smsroute run --config FILE``: a line of its [http] table
LAG_NEVER_SHEDS_TOML = f"queue_delay_target_ms = {LAG_NEVER_SHEDS['queue_delay_target_ms']:.0f}\n"


def lag_never_sheds_config(directory: Path) -> str:
    """The path of a config file (written in ``directory``) with :data:`LAG_NEVER_SHEDS` alone, for
    ``smsroute run --config`` in a test that is not about the door."""
    path = directory / "door.toml"
    path.write_text("[http]\n" + LAG_NEVER_SHEDS_TOML)
    return str(path)
