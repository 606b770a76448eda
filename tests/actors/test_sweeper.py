"""SweeperActor: ticks run every retention sweep, failures are contained, stats are visible."""

from __future__ import annotations

import pykka
import pytest

from actors.sweeper import SweeperActor
from engine import messages as m
from engine.errors import ConfigError, CorruptRecord, StorageError
from engine.ids import IdGenerator
from storage.audit import AuditLog
from storage.bodies import BodyStore
from storage.env import open_env
from storage.holds import Holds
from storage.keys import KeyRing, LocalKeyProvider
from storage.retention import with_body_ttl

DAY = 86400
T0 = 1_790_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def stop_all_actors():
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def pops(tmp_path, clock):
    keys = KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"), clock=clock)
    envs = {name: open_env(tmp_path / name, map_size=16 << 20) for name in ("fra", "sin")}
    yield {name: BodyStore(env, keys, clock=clock) for name, env in envs.items()}
    for env in envs.values():
        env.close()


def fill(store, ids, clock, n, ttl):
    mids = [ids.new() for _ in range(n)]
    with store.env.begin(write=True) as txn:
        store.put_many(txn, [(mid, "body", clock.now + ttl) for mid in mids])
    return mids


class CountingLogs:
    category = "api_request_logs"

    def __init__(self) -> None:
        self.calls: list[float] = []

    def sweep(self, now: float) -> int:
        self.calls.append(now)
        return 3


class BrokenStore:
    def sweep(self, now: float) -> int:
        raise StorageError("disk on fire")


def test_a_tick_sweeps_every_pops_bodies_and_every_sweepable(pops, clock):
    ids = IdGenerator(clock)
    fill(pops["fra"], ids, clock, 40, ttl=60)
    keep = fill(pops["sin"], ids, clock, 10, ttl=3600)
    fill(pops["sin"], ids, clock, 5, ttl=60)
    logs = CountingLogs()
    ref = SweeperActor.start(pops, clock=clock, sweepables=[logs])
    clock.now += 61
    ref.tell(m.encode(m.Tick(now=1.0)))
    stats = ref.proxy().stats().get(timeout=10)  # processed after the Tick: mailbox order
    assert stats["last"]["bodies:fra"]["purged"] == 40
    assert stats["last"]["bodies:sin"]["purged"] == 5
    assert stats["last"]["api_request_logs"] == {"removed": 3}
    assert logs.calls == [clock.now]
    assert list(pops["sin"].pending_ids()) == keep and pops["fra"].count() == 0


def test_ticks_closer_than_the_interval_do_not_sweep_again(pops, clock):
    ref = SweeperActor.start(pops, clock=clock, interval_seconds=60)
    sweeps = []
    for step in (0, 30, 59, 60, 61):
        clock.now = T0 + step
        ref.tell(m.encode(m.Tick(now=float(step))))
        sweeps.append(ref.proxy().stats().get(timeout=10)["totals"]["sweeps"])  # tick processed
    assert sweeps == [1, 1, 1, 2, 2]


def test_a_failing_store_is_counted_and_the_others_still_sweep(pops, clock):
    logs = CountingLogs()
    ref = SweeperActor.start(pops, clock=clock, sweepables={"broken": BrokenStore(),
                                                            "logs": logs})
    stats = ref.proxy().sweep_now().get(timeout=10)
    assert stats["last"]["broken"] == {"error": "StorageError"}
    assert stats["totals"]["failures"] == 1 and logs.calls == [clock.now]
    assert ref.is_alive()


def test_a_malformed_message_is_dropped_and_the_actor_lives_on(pops, clock):
    ref = SweeperActor.start(pops, clock=clock)
    ref.tell(b"\x93garbage")
    ref.tell(m.encode(m.Flush()))
    assert ref.proxy().stats().get(timeout=10)["totals"]["sweeps"] == 0
    assert ref.is_alive()


def test_expired_holds_end_on_a_tick_when_passed_as_sweepables(pops, clock, tmp_path):
    store = pops["fra"]
    holds = Holds(store, store.keys, AuditLog(store.env, clock=clock), clock=clock)
    hold = holds.open_debug_window("acct", actor="customer:acct", reason="debug", reference="T",
                                   until=clock.now + DAY)
    ref = SweeperActor.start(pops, clock=clock, sweepables={"holds:fra": holds})
    clock.now += DAY
    stats = ref.proxy().sweep_now().get(timeout=10)
    assert stats["last"]["holds:fra"] == {"removed": 1}
    assert holds.get(hold.hold_id).ended_at is not None


def test_a_store_whose_body_ttl_exceeds_the_table_is_refused(pops, clock):
    with pytest.raises(ConfigError, match="exceeds"):
        SweeperActor(pops, with_body_ttl(3600), clock)


def test_stats_carry_the_retention_view_for_the_control_port(pops, clock):
    stats = SweeperActor.start(pops, clock=clock).proxy().stats().get(timeout=10)
    categories = [row["category"] for row in stats["retention"]]
    assert "message_bodies" in categories and "billing_ledger" in categories


def test_stats_show_each_pops_body_store_alarms(pops, clock):
    ids = IdGenerator(clock)
    mid = fill(pops["fra"], ids, clock, 1, ttl=60)[0]
    with pops["fra"].env.begin(write=True, db=pops["fra"]._bodies) as txn:
        txn.put(bytes.fromhex(mid[4:]), b"\x7f" * 8 + b"\x01garbage-garbage-garbage-garbage-xx")
    with pytest.raises(CorruptRecord):
        pops["fra"].get(mid)
    stats = SweeperActor.start(pops, clock=clock).proxy().stats().get(timeout=10)
    assert stats["alarms"] == {"fra": {"corrupt_record": 1}, "sin": {}}


class FlakyStore:
    """Raises an unexpected exception (a bug) on its first sweep, then works."""

    def __init__(self) -> None:
        self.calls = 0

    def sweep(self, now: float) -> int:
        self.calls += 1
        if self.calls == 1:
            raise KeyError("a bug in one store's sweep")
        return 2


def test_any_exception_in_one_stores_sweep_is_counted_and_that_store_is_retried_next_tick(pops, clock):
    flaky, logs = FlakyStore(), CountingLogs()
    ref = SweeperActor.start(pops, clock=clock, interval_seconds=3600,
                             sweepables={"flaky": flaky, "logs": logs})
    ref.tell(m.encode(m.Tick(now=0.0)))
    stats = ref.proxy().stats().get(timeout=10)
    assert ref.is_alive() and stats["last"]["flaky"] == {"error": "KeyError"}
    assert stats["totals"]["failures"] == 1 and stats["failures"] == {"flaky": 1}
    assert stats["retrying"] == ["flaky"] and logs.calls == [clock.now]
    clock.now += 1  # the next tick, long before the next interval
    ref.tell(m.encode(m.Tick(now=1.0)))
    stats = ref.proxy().stats().get(timeout=10)
    assert flaky.calls == 2 and stats["last"]["flaky"] == {"removed": 2}
    assert stats["retrying"] == [] and len(logs.calls) == 1  # only the failed store ran again
    assert stats["totals"]["sweeps"] == 1


def test_a_store_added_after_a_sweep_is_swept_on_the_next_tick_not_an_interval_later(pops, clock):
    """The engine adds stores after the sweeper's first sweep (the account sweep waits for the privacy
    stores): an engine restarted more often than the interval must still sweep them."""
    logs, late = CountingLogs(), CountingLogs()
    ref = SweeperActor.start(pops, clock=clock, interval_seconds=3600, sweepables={"logs": logs})
    ref.tell(m.encode(m.Tick(now=0.0)))  # the first sweep, without the late store
    assert ref.proxy().add_sweepables({"late": late}).get(timeout=10) == [
        "bodies:fra", "bodies:sin", "late", "logs"]
    clock.now += 1  # the next tick, long before the next interval
    ref.tell(m.encode(m.Tick(now=1.0)))
    stats = ref.proxy().stats().get(timeout=10)
    assert late.calls == [clock.now] and stats["last"]["late"] == {"removed": 3}
    assert logs.calls == [T0] and stats["totals"]["sweeps"] == 1  # the others wait for the interval
    clock.now += 1
    ref.tell(m.encode(m.Tick(now=2.0)))
    ref.proxy().stats().get(timeout=10)
    assert len(late.calls) == 1  # once: then with the others, every interval


def test_a_sweep_refused_for_lack_of_space_is_one_alarm_not_a_traceback_every_tick(
        pops, clock, tmp_path, monkeypatch, caplog):
    """On a full disk the body sweep cannot save the key store while it makes the next window's key;
    the sweep is retried every tick. Before, each retry logged a full traceback for every POP
    (``retention sweep failed ... error=OSError``); now one ALARM per store, and one line once it sweeps
    again (the next window's key made then)."""
    import logging

    from tests.storage.test_keys_disk_full import FullDisk

    disk = FullDisk(monkeypatch, tmp_path / "keys")
    keys = pops["fra"].keys
    ref = SweeperActor.start(pops, clock=clock, interval_seconds=3600)
    ref.tell(m.encode(m.Tick(now=0.0)))  # the first sweep makes the next window's key
    ref.proxy().stats().get(timeout=10)
    caplog.set_level(logging.INFO)
    caplog.clear()
    disk.on = True
    clock.now += 3600  # the next window is in force: the one after it needs a key now
    for tick in range(1, 21):  # 20 retries, one per tick
        ref.tell(m.encode(m.Tick(now=float(tick))))
    stats = ref.proxy().stats().get(timeout=10)
    assert stats["retrying"] == ["bodies:fra", "bodies:sin"] and stats["failures"]["bodies:fra"] >= 20
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any(r.exc_info for r in problems)
    assert sorted(r.getMessage() for r in problems) == [
        f"retention sweep bodies:{pop}: ALARM store keys is full (disk or LMDB map): swept again every "
        "tick until it can write, retried until it takes writes again; nothing stored is lost"
        for pop in ("fra", "sin")]
    disk.on = False
    ref.tell(m.encode(m.Tick(now=21.0)))
    stats = ref.proxy().stats().get(timeout=10)
    assert stats["retrying"] == [] and keys.body_window(clock.now) + 1 in keys.live_windows()
    assert "retention sweep bodies:fra: store keys takes writes again" in caplog.text
