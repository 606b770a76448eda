"""Asking a process's actors for their ``stats()`` under one deadline, for the operator's views.

Why: the actors of a process share one dispatcher thread (``actors.dispatch``), so one busy handler delays
every answer; asked one after the other with a deadline each, a few busy actors made a whole worker miss
the core's own deadline (``engine.cluster.cluster_shards.STATS_TIMEOUT_S``), and a POP that did not answer was
left out of the view without a word. Here every actor is asked at once and all answers are waited for
under one deadline; an actor that does not answer in time (or has stopped) is a row ``{key: name,
"error": why}``, never a shorter list.
"""

from __future__ import annotations

import time
from typing import Any

ACTOR_STATS_TIMEOUT_S = 1.0  # a process's POPs and carriers, asked at once: well within the core's 2 s


def ask_stats(refs: dict[str, Any], key: str, timeout: float = ACTOR_STATS_TIMEOUT_S
              ) -> dict[str, dict]:
    """Every actor of ``refs`` asked for its ``stats()`` at once, with one deadline for all: the actors
    share a dispatcher thread, so one busy handler delays them all, and asking one after the other (2 s
    each) made a worker miss the core's ``STATS_TIMEOUT_S`` by itself. An actor that does not answer by
    ``timeout`` (or has stopped) gets the row ``{key: name, "error": why}``."""
    return stats_answers(ask_stats_later(refs), key, time.monotonic() + timeout)


def ask_stats_later(refs: dict[str, Any]) -> dict[str, Any]:
    """The ``stats()`` question sent to every actor of ``refs``: a future (or the error) by name, for
    :func:`stats_answers` - several groups asked first, then all waited for under one deadline."""
    asked: dict[str, Any] = {}
    for name, ref in refs.items():
        try:
            asked[name] = ref.proxy().stats()
        except Exception as exc:  # a stopped actor
            asked[name] = exc
    return asked


def stats_answers(asked: dict[str, Any], key: str, deadline: float) -> dict[str, dict]:
    """The answers of :func:`ask_stats_later` by ``deadline`` (``time.monotonic()``); one not in by then
    (or a stopped actor) is the row ``{key: name, "error": why}``."""
    rows: dict[str, dict] = {}
    for name, future in asked.items():
        try:
            if isinstance(future, Exception):
                raise future
            rows[name] = future.get(timeout=max(0.0, deadline - time.monotonic()))
        except Exception as exc:  # a stopped or busy actor still shows up
            rows[name] = {key: name, "error": type(exc).__name__}
    return rows
