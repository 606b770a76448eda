"""The webhook outbox: events in order, sealed at rest, removed when done, bounded by the POP, swept."""

from __future__ import annotations

import pytest

from engine.messages import StatusItem
from engine.webhook_events import WebhookEvents
from storage.env import open_env
from storage.webhook_outbox import WebhookOutbox
from tests.storage.conftest import account_keys_in

ACCOUNT = "acc_0123456789abcdef"
T0 = 1_790_000_000.0


def _item(n: int, status: str = "delivered", at: float = T0, account: str = ACCOUNT) -> StatusItem:
    return StatusItem(f"msg_{n:032x}", account, status, at, "fra", "fra-telekom", "DE", 1, 75000, "",
                      "https://hooks.example.com/x", f"order-secret-{n}")


def _outbox(tmp_path, *accounts):
    keys = account_keys_in(tmp_path / "keys", ACCOUNT, *accounts)
    env = open_env(tmp_path / "pop", map_size=32 << 20)
    return env, WebhookOutbox(env, keys), keys


def test_events_come_back_in_order_and_are_gone_once_removed(tmp_path):
    env, outbox, _ = _outbox(tmp_path)
    with env.begin(write=True) as txn:
        seqs = outbox.add(txn, [_item(n) for n in range(5)])
    outbox.committed(5, 0)
    assert seqs == sorted(seqs) and outbox.count == 5
    assert [item for _, item in outbox.pending()] == [_item(n) for n in range(5)]
    with env.begin(write=True) as txn:
        removed = outbox.remove(txn, seqs[:3])
    outbox.committed(0, removed)
    assert removed == 3 and [s for s, _ in outbox.pending()] == seqs[3:]
    env.close()
    env = open_env(tmp_path / "pop", map_size=32 << 20)  # a restart: sequences go on, never reused
    again = WebhookOutbox(env, account_keys_in(tmp_path / "keys"))
    with env.begin(write=True) as txn:
        assert again.add(txn, [_item(9)])[0] > seqs[-1]
    env.close()


def test_events_are_sealed_at_rest(tmp_path):
    env, outbox, _ = _outbox(tmp_path)
    with env.begin(write=True) as txn:
        outbox.add(txn, [_item(1)])
    env.sync(True)
    raw = (tmp_path / "pop" / "data.mdb").read_bytes()
    assert b"order-secret-1" not in raw and b"hooks.example.com" not in raw
    assert f"{1:032x}".encode() not in raw
    env.close()


def test_an_erased_accounts_events_are_skipped_and_never_read_back(tmp_path):
    env, outbox, keys = _outbox(tmp_path, "acc_erased00000000")
    with env.begin(write=True) as txn:
        outbox.add(txn, [_item(1), _item(2, account="acc_erased00000000")])
    keys.shred("acc_erased00000000")
    assert [i.message_id for _, i in outbox.pending()] == [_item(1).message_id]
    with env.begin(write=True) as txn:
        assert outbox.add(txn, [_item(3, account="acc_erased00000000")]) == [0]
    env.close()


def test_events_past_the_retry_window_are_swept(tmp_path):
    env, outbox, _ = _outbox(tmp_path)
    with env.begin(write=True) as txn:
        outbox.add(txn, [_item(1, at=T0), _item(2, at=T0 + 86400)])
    assert outbox.sweep(T0 + 86400 + 10) == 1
    assert [i.message_id for _, i in outbox.pending()] == [_item(2).message_id]
    env.close()


def test_a_pop_stores_only_wanted_events_up_to_its_bound_and_counts_the_rest(tmp_path):
    env, outbox, _ = _outbox(tmp_path)
    prefs = {ACCOUNT: (True, frozenset({"delivered"}))}
    hooks = WebhookEvents(outbox, prefs.__getitem__, limit=3)
    hooks.pending = [_item(n, status) for n in range(4) for status in ("accepted", "delivered")]
    with env.begin(write=True) as txn:
        (seqs, items), writing = hooks.write(txn, [], hooks.stage())
    hooks.committed(writing)
    assert [i.status for i in items] == ["delivered"] * 3 and len(seqs) == 3
    assert hooks.dropped == 1 and outbox.count == 3 and not hooks
    hooks.done.extend(seqs[:2])  # delivered: room again, removed with the next commit
    hooks.pending = [_item(7)]
    with env.begin(write=True) as txn:
        stored, writing = hooks.write(txn, [], hooks.stage())
    hooks.committed(writing)
    assert stored is not None and outbox.count == 2
    env.close()


def test_the_bound_holds_for_several_batches_of_a_pop_written_in_one_transaction(tmp_path):
    """A group commit writes every batch a POP staged since the last round in one transaction: the
    room of each is judged by what that transaction already holds, not by the last commit's count."""
    env, outbox, _ = _outbox(tmp_path)
    hooks = WebhookEvents(outbox, lambda account_id: (True, None), limit=3)
    hooks.pending = [_item(1), _item(2)]
    first = hooks.stage()
    hooks.pending = [_item(3), _item(4)]
    second = hooks.stage()
    with env.begin(write=True) as txn:
        (stored_1, _), writing_1 = hooks.write(txn, [], first)
        (stored_2, _), writing_2 = hooks.write(txn, [], second)
    hooks.committed(writing_1)
    hooks.committed(writing_2)
    assert len(stored_1) == 2 and len(stored_2) == 1  # room for one more after the first batch
    assert outbox.count == 3 and hooks.dropped == 1
    env.close()


def test_a_batch_written_again_after_its_transaction_failed_counts_its_dropped_events_once(tmp_path):
    """A failed group transaction is retried POP by POP, writing the same staged batch twice: the events
    dropped over the bound are counted when a transaction holding the batch commits, not per write."""
    env, outbox, _ = _outbox(tmp_path)
    hooks = WebhookEvents(outbox, lambda account_id: (True, None), limit=1)
    hooks.pending = [_item(1), _item(2)]
    staged = hooks.stage()
    with pytest.raises(RuntimeError), env.begin(write=True) as txn:
        hooks.write(txn, [], staged)
        raise RuntimeError("the group transaction failed")
    assert hooks.dropped == 0 and outbox.count == 0
    with env.begin(write=True) as txn:
        _, writing = hooks.write(txn, [], staged)
    hooks.committed(writing)
    assert outbox.count == 1 and hooks.dropped == 1
    env.close()


def test_a_retry_schedule_is_kept_beside_its_event_and_goes_with_it(tmp_path):
    env, outbox, keys = _outbox(tmp_path)
    with env.begin(write=True) as txn:
        seqs = outbox.add(txn, [_item(n) for n in range(3)])
    with env.begin(write=True) as txn:
        assert outbox.set_retry(txn, seqs[:2], 3, T0 + 40.5) == 2
        assert outbox.set_retry(txn, [seqs[-1] + 100], 1, T0) == 0  # no such event: nothing recorded
    assert outbox.retries() == {seqs[0]: (3, T0 + 40.5), seqs[1]: (3, T0 + 40.5)}
    env.close()
    env = open_env(tmp_path / "pop", map_size=32 << 20)  # a restart reads the schedule back
    outbox = WebhookOutbox(env, keys)
    assert outbox.retries()[seqs[1]] == (3, T0 + 40.5)
    with env.begin(write=True) as txn:
        outbox.remove(txn, [seqs[0]])
        assert outbox.set_retry(txn, [seqs[0]], 4, T0 + 99) == 0  # removed in this very commit
    assert outbox.retries() == {seqs[1]: (3, T0 + 40.5)}
    assert outbox.sweep(T0 + 3 * 86400) == 2  # events past the retry window go with their schedule
    assert outbox.retries() == {}
    env.close()


def test_the_pop_records_a_retry_schedule_in_its_commit_unless_the_event_is_done(tmp_path):
    env, outbox, _ = _outbox(tmp_path)
    hooks = WebhookEvents(outbox, lambda account_id: (True, None), limit=100)
    with env.begin(write=True) as txn:
        (seqs, _), writing = hooks.write(txn, [_item(1), _item(2)], hooks.stage())
    hooks.committed(writing)
    hooks.retrying.append((seqs, 2, T0 + 8.0))
    hooks.done.append(seqs[0])
    assert hooks
    with env.begin(write=True) as txn:
        _, writing = hooks.write(txn, [], hooks.stage())
    hooks.committed(writing)
    assert outbox.retries() == {seqs[1]: (2, T0 + 8.0)} and not hooks
    env.close()
