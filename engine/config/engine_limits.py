"""``[engine]``: the bounds of the engine itself — messages in flight, segments, validity and retries,
the body TTL and retention sweeps, the LMDB map sizes, and how ``smsroute run --workers/--edges``
supervises its children.

The defaults are the embedded default's (``engine/default.toml``, tuned for trying the engine out: every
message reaches a final status within seconds, with short retry windows); production values come from a
config file. Two bounds are promises rather than sizes: ``body_ttl_seconds`` is at most 86,400 (the privacy
policy keeps bodies 24 hours at most) and ``sweep_interval_seconds`` at most 3,600 (a body past its TTL is
shredded within one sweep interval). ``tick_ms`` is at least 5: 0 would re-arm the housekeeping clock in a
tight loop. A child is reported hung before it is killed, so ``child_kill_after_seconds`` must be longer
than ``child_hung_after_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from engine.config.bounds import MIB, TIMEOUT
from engine.errors import ConfigError
from engine.typed_tables import Range, typed_table

MAX_SWEEP_INTERVAL_SECONDS = 3600  # a body past its TTL is shredded within one sweep interval
MAX_BODY_TTL_SECONDS = 86400  # the policy's 24 hours
# 4 TiB each: the core, each POP, and the http, mail and privacy stores together stay well inside a
# 64-bit process's 128 TiB of address space (LMDB reserves the whole map at open)
MAP_SIZE_RANGE = Range(1, 4 * MIB)


@dataclass(frozen=True)
class EngineLimits:
    max_in_flight: Annotated[int, Range(1, 10_000_000)] = 20000
    max_segments: Annotated[int, Range(1, 255)] = 10
    default_validity_seconds: Annotated[int, Range(1, 86400)] = 30
    expiry_grace_seconds: Annotated[float, Range(0, 3600)] = 2.0
    retry_window_seconds: Annotated[float, Range(0, 86400)] = 10.0
    retry_base_ms: Annotated[float, Range(0, 60_000)] = 20.0
    retry_cap_ms: Annotated[float, Range(0, 3_600_000)] = 1000.0
    max_attempts: Annotated[int, Range(1, 100)] = 4
    resp_timeout_seconds: Annotated[float, TIMEOUT] = 3.0
    # accept per route what its carriers take in this long
    admission_horizon_seconds: Annotated[float, Range(0, 86400)] = 30.0
    body_ttl_seconds: Annotated[int, Range(
        1, MAX_BODY_TTL_SECONDS, why="the privacy policy keeps bodies 24 hours at most")] = 86400
    tick_ms: Annotated[int, Range(5, 60_000)] = 200  # 0 would re-arm the housekeeping clock in a tight loop
    sweep_interval_seconds: Annotated[float, Range(0, MAX_SWEEP_INTERVAL_SECONDS, open_low=True,
                                                   why="bodies must be shredded within the 24-hour limit")] = 60.0
    # the retention sweeper is hung (/readyz 503; a worker stops beating) after this long without
    # finishing a store's sweep, or this long past its interval without starting one (actors.sweep_watch)
    sweep_stall_seconds: Annotated[float, Range(0, 86400, open_low=True)] = 900.0
    map_size_mb: Annotated[int, MAP_SIZE_RANGE] = 1024  # the core's and each POP's LMDB map
    # the other stores' maps (each names itself when full: 503 store_full, smsroute_store_full_refusals_total)
    # idempotency records (24 h), request log (90 d), control audit (1 y), tokens
    http_map_size_mb: Annotated[int, MAP_SIZE_RANGE] = 256
    mail_map_size_mb: Annotated[int, MAP_SIZE_RANGE] = 256  # the customer mail outbox
    # data-subject requests, incidents, support cases, links, challenges
    privacy_map_size_mb: Annotated[int, MAP_SIZE_RANGE] = 256
    # no analytics cell where one account has more than this
    analytics_max_account_share: Annotated[float, Range(0, 1, open_low=True)] = 0.5
    gc_tuning: bool = True  # a long-running engine's GC: freeze start-up objects, rarer collections
    ledger_reconcile_at_start: bool = True  # reconcile records and ledger in the background at start-up
    shared_pop_store: bool = True  # a new data directory: the POPs of a process in one environment
    # smsroute run --workers/--edges: a child without a heartbeat this long is hung (/readyz 503), and
    # this long is killed and restarted (engine.cluster.liveness)
    child_hung_after_seconds: Annotated[float, Range(0, 3600, open_low=True)] = 10.0
    child_kill_after_seconds: Annotated[float, Range(0, 86400, open_low=True)] = 30.0


def limits_from_table(table: Any) -> EngineLimits:
    """``[engine]``, typed and checked across keys."""
    limits = typed_table(EngineLimits, table, "engine")
    if limits.child_kill_after_seconds <= limits.child_hung_after_seconds:
        raise ConfigError("config: engine.child_kill_after_seconds must be longer than "
                          "engine.child_hung_after_seconds (a child is reported hung before it is killed)")
    return limits
