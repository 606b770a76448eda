"""Fixtures for the storage suites: a controllable clock, LMDB environments and key rings in tmp dirs."""

from __future__ import annotations

import pytest

from engine.ids import IdGenerator
from storage.bodies import BodyStore
from storage.env import open_env
from storage.keys import KeyRing, LocalKeyProvider

T0 = 1_790_000_000.0  # a fixed start instant, on an hour boundary of no importance


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def keyring(data_dir, clock) -> KeyRing:
    return KeyRing(data_dir / "keys", LocalKeyProvider(data_dir / "keys"), window_seconds=3600,
                   clock=clock)


@pytest.fixture
def env(data_dir):
    environment = open_env(data_dir / "pop_fra", map_size=64 << 20)
    yield environment
    environment.close()


@pytest.fixture
def store(env, keyring, clock) -> BodyStore:
    return BodyStore(env, keyring, max_ttl_seconds=86400, clock=clock)


@pytest.fixture
def ids(clock) -> IdGenerator:
    return IdGenerator(clock)
