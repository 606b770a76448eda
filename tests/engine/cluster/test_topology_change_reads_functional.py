"""After the worker count changes, what an account sent before is still found: per-account reads ask
every worker the account belonged to under each worker count its cluster ran with.

An account belongs to worker ``crc32(account id) mod N``: growing a cluster from 1 to 2 workers moves
half of the accounts to w1, while their earlier messages stay on w0 (more workers than before is
allowed; each worker resumes its own messages). Before, the account's data-subject export
(``export_account``, ``GET /v1/accounts/{id}/export``) asked only the worker the account maps to now,
so it left out every message sent before the change. Real nats-server and worker processes; the core
restarted on the same data directory with ``--workers 2``.
"""

from __future__ import annotations

import zlib

import pytest

from tests.engine.cluster.support import Cluster
from tests.waiting import wait_for

pytestmark = pytest.mark.functional


def _account_moving_to_w1(c: Cluster):
    """A funded account with sender ACME that w0 holds with 1 worker and w1 with 2."""
    i = 0
    while True:
        i += 1
        acct = c.engine.create_account(email=f"m{i}@example.com")
        if zlib.crc32(acct.id.encode()) % 2 == 1:
            break
    c.engine.register_sender(acct.id, "ACME")
    c.engine.deposit(acct.id, usd="10", chain="test", tx_hash=f"0xm{i}", from_address="addr")
    return acct


def test_an_accounts_messages_from_before_a_topology_change_are_read_and_erased(tmp_path):
    c = Cluster(tmp_path, workers=1)
    try:
        acct = _account_moving_to_w1(c)
        before = c.engine.submit(acct.api_key, "+4915112345678", "ACME", "sent with 1 worker")
        wait_for(lambda: c.final_in_store(before.message_id), "the first message final", 30)
    finally:
        c.stop()

    c = Cluster(tmp_path, workers=2)
    try:
        assert c.engine.runtime.placement.worker_of(acct.id) == "w1"  # it moved; its message did not
        after = c.engine.submit(acct.api_key, "+4915112345678", "ACME", "sent with 2 workers")
        wait_for(lambda: c.final_in_store(after.message_id), "the second message final", 30)
        both = {before.message_id, after.message_id}

        exported = c.engine.export_account(acct.id)
        assert {r["message_id"] for r in exported["messages"]} == both
        usage = [r for r in c.engine.billing.usage(acct.id) if r.type == "message"]
        assert {r.id for r in usage} == both and all(r.status for r in usage), usage
        listed, _ = c.engine.messages(acct.id)
        assert {r.message_id for r in listed} == both
        assert c.engine.status(before.message_id).account_id == acct.id

        assert c.engine.erase_account(acct.id)["message_records_deleted"] == 2
        assert c.engine.status(before.message_id) is None
    finally:
        c.stop()
