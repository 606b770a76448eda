"""Fixtures for the storage suites: a controllable clock, LMDB environments and key rings in tmp dirs."""

from __future__ import annotations

import pytest

from engine.ids import IdGenerator
from storage.account_keys import AccountKeys
from storage.bodies import BodyStore
from storage.env import open_env
from storage.keys import KeyRing, LocalKeyProvider
from storage.pseudonyms import Pseudonyms

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


def account_keys_in(keys_dir, *accounts: str, cache_size: int = 100) -> AccountKeys:
    """Per-account keys under ``keys_dir`` (the engine's layout), with keys made for ``accounts``."""
    provider = LocalKeyProvider(keys_dir)
    ring = KeyRing(keys_dir, provider)
    keys = AccountKeys(keys_dir / "accounts", provider, Pseudonyms(ring.secret("pseudonym")),
                       cache_size=cache_size)
    for account_id in accounts:
        keys.create(account_id)
    return keys
