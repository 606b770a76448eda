"""A hypothesis state machine drives BodyStore against a dict model: put, ack, time, sweep, restart."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.ids import IdGenerator
from storage.bodies import BodyStore
from storage.env import open_env
from storage.keys import KeyRing, LocalKeyProvider

MAX_TTL = 3600
WINDOW = 600


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


class BodyStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="bodies_model_"))
        self.clock = Clock()
        self.ids = IdGenerator(self.clock)
        self.env = open_env(self.dir / "pop", map_size=16 << 20)
        self._open_store()
        self.model: dict[str, tuple[str, int]] = {}  # id -> (body, expiry ms)
        self.counter = 0

    def _open_store(self) -> None:
        keys = KeyRing(self.dir / "keys", LocalKeyProvider(self.dir / "keys"),
                       window_seconds=WINDOW, clock=self.clock)
        self.store = BodyStore(self.env, keys, max_ttl_seconds=MAX_TTL, clock=self.clock)

    @rule(ttls=st.lists(st.integers(1, 2 * MAX_TTL), min_size=1, max_size=20))
    def put(self, ttls):
        items = []
        for ttl in ttls:
            self.counter += 1
            items.append((self.ids.new(), f"body {self.counter} ✓", self.clock.now + ttl))
        with self.env.begin(write=True) as txn:
            self.store.put_many(txn, items)
        keys = self.store.keys  # a body never outlives its key window's start + the max TTL
        window_start = keys.window_end(keys.body_window(self.clock.now)) - WINDOW
        cap = int((window_start + MAX_TTL) * 1000)
        for mid, body, exp in items:
            self.model[mid] = (body, min(int(exp * 1000), cap))

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def ack(self, data):
        chosen = data.draw(st.lists(st.sampled_from(sorted(self.model)), max_size=10, unique=True))
        with self.env.begin(write=True) as txn:
            self.store.discard_many(txn, chosen)
        for mid in chosen:
            del self.model[mid]

    @rule(seconds=st.integers(1, 2 * MAX_TTL))
    def advance(self, seconds):
        self.clock.now += seconds

    @rule()
    def sweep(self):
        now_ms = int(self.clock.now * 1000)
        result = self.store.sweep()
        due = [m for m, (_, exp) in self.model.items() if exp <= now_ms]
        assert result.purged == len(due)
        for mid in due:
            del self.model[mid]
        assert list(self.store.pending_ids()) == sorted(self.model)
        keys = self.store.keys  # after a sweep no window key outlives its start + the max TTL
        assert all(keys.window_end(w) - WINDOW + MAX_TTL > self.clock.now
                   for w in keys.live_windows())

    @rule()
    def restart(self):
        self.env.close()
        self.env = open_env(self.dir / "pop", map_size=16 << 20)
        self._open_store()

    @invariant()
    def every_body_reads_as_the_model_says(self):
        now_ms = int(self.clock.now * 1000)
        for mid, (body, exp) in self.model.items():
            assert self.store.get(mid) == (body if exp > now_ms else None)

    def teardown(self):
        self.env.close()
        shutil.rmtree(self.dir, ignore_errors=True)


BodyStoreMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=30,
                                              deadline=None)
test_body_store_behaves_like_its_model = BodyStoreMachine.TestCase
