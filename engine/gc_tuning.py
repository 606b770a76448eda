"""Garbage-collector settings for a long-running engine (``[engine] gc_tuning``, on by default).

Why: CPython's cyclic collector runs a young collection every 700 net allocations and, now and then, a
full one that walks every live container object. An engine holds tens of thousands of objects for the
messages in flight and allocates several per message, so with the defaults the collector took ~18-38 µs of
CPU per message at saturation (measured with ``smsroute bench --profile-stages``), a third of the total.
Almost nothing the engine allocates on its hot path is cyclic garbage: records, items and messages are
freed by reference counting. So:

* the young generation is collected after 100,000 net allocations instead of 700, and the older ones
  rarely (50 and 100 younger collections) — collections still happen, so a reference cycle is still freed;
* once start-up is over, :func:`gc.freeze` moves everything allocated so far (modules, settings, stores,
  actors) to a permanent generation that no collection walks again.

Both are process-wide: an embedding host that tunes its own collector sets ``gc_tuning = false``.
Memory stays flat (``smsroute bench --soak``: see bench/RESULTS.md).
"""

from __future__ import annotations

import gc

THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    """Collect the young generation less often (see the module docstring)."""
    gc.set_threshold(*THRESHOLDS)


def freeze_start_up_objects() -> None:
    """Exclude every object alive now from future collections (call once start-up is done)."""
    gc.collect()
    gc.freeze()
