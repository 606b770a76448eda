"""A store full for ordinary writes keeps a reserve of pages (``storage.headroom``), so the deletes that free
space — an account's erasure, a retention sweep — still commit on it, and new writes fit again after them.
(LMDB copies every page it changes, so in a map used to its last page even a delete is refused.)"""

from __future__ import annotations

import pytest

from engine.errors import StoreFull
from storage.env import open_env
from storage.headroom import free_pages, reserve_pages
from storage.keys import KeyRing, LocalKeyProvider
from storage.verification import LinkTokens
from tests.storage.conftest import T0
from tests.storage.test_privacy_stores import _account_keys

HOUR = 3600


def _fill(links: LinkTokens) -> list[str]:
    """Issue links of two accounts, alternately, until the store refuses one; the issued tokens.
    Those of ``acc_1`` expire in an hour, those of ``acc_2`` in a day."""
    issued = []
    with pytest.raises(StoreFull, match="the privacy store is full"):
        for i in range(1_000_000):
            account, ttl = ("acc_1", HOUR) if i % 2 else ("acc_2", 24 * HOUR)
            issued.append(links.issue("confirm_email", f"{account}:{i}", ttl, now=T0, account_id=account)[0])
    # refused with the reserve still free, not at LMDB's last page (checked before each write, so the last
    # write taken may have used a few of its pages)
    env = links._store.env
    assert free_pages(env) > reserve_pages(env.info()["map_size"], env.stat()["psize"]) // 2 > 0
    return issued


@pytest.fixture
def links(tmp_path):
    keys = KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))
    env = open_env(tmp_path / "privacy", map_size=1 << 20)  # [engine] privacy_map_size_mb = 1
    yield LinkTokens(env, _account_keys(tmp_path / "keys", keys, "acc_1", "acc_2"))
    env.close()


def test_an_erasure_commits_on_a_store_full_for_new_writes_and_makes_room_for_them(links):
    issued = _fill(links)
    assert len(issued) > 1000
    assert links.forget_account("acc_1") == len(issued) // 2  # the erasure is not refused
    links.issue("confirm_email", "acc_2:again", HOUR, now=T0, account_id="acc_2")  # room again
    assert links.redeem("confirm_email", issued[0], now=T0) == "acc_2:0"  # the other account's kept


def test_a_retention_sweep_commits_on_a_store_full_for_new_writes_and_makes_room_for_them(links):
    issued = _fill(links)
    assert links.sweep(T0 + 2 * HOUR) == len(issued) // 2  # acc_1's expired links go
    links.issue("confirm_email", "acc_1:again", HOUR, now=T0, account_id="acc_1")
    last = (len(issued) - 1) // 2 * 2  # the last of acc_2's links, which stay
    assert links.redeem("confirm_email", issued[last], now=T0) == f"acc_2:{last}"
