"""The core does not ask a worker its supervisor knows will not answer (hung, down, restarting).

``ClusterShards`` over a stand-in transport that records who was asked: w1 is known hung. Before, every
question went to w1 too and waited out its time-out (30 s; 2 s for a view) on a query thread: a few
such questions exhausted the threads. Now a view names w1 at once, a question that needs w1's answer is
refused at once (``ClusterUnavailable``: 503 with ``Retry-After``), and an action is done where it can be
and reported as not done at w1 - never as done.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine import messages as m
from engine.cluster.cluster_shards import PARTIAL_ACTION, ClusterShards
from engine.errors import ClusterUnavailable, SmsrouteError

RECORD_ID = "msg_w0"


class _Transport:
    """Answers for w0 at once; w1 never answers (a question to it would wait out its time-out)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def request(self, node: str, payload: bytes, timeout: float, act_by: float | None = None,
                *, read: bool = False) -> bytes:
        q = m.decode(payload)
        self.asked.append((node, q.kind))
        if node != "w0":
            raise ClusterUnavailable(f"{node} did not answer: TimeoutError")
        return m.encode(m.ShardReply(True, _answer(q.kind, q.args), ""))


def _answer(kind: str, args: list[Any]) -> Any:
    if kind == "find_record":
        return None  # (w0 holds no record: the case where w1 might)
    if kind in ("records_for_account_page", "active_holds"):
        return []
    if kind == "forget_account":
        return 3
    raise AssertionError(kind)


@pytest.fixture()
def shards() -> ClusterShards:
    out = ClusterShards(_Transport(), ("w0", "w1"))
    out.not_answering = lambda node: "hung" if node == "w1" else None
    yield out
    out.close()


def _asked(shards: ClusterShards) -> list[tuple[str, str]]:
    return shards.transport.asked


def test_a_view_names_the_hung_worker_without_asking_it(shards):
    view = shards.holds_view()
    assert view == {"holds": [], "holds_missing": {"w1": "hung: not asked"}}
    assert _asked(shards) == [("w0", "active_holds")]


def test_a_question_that_needs_the_hung_worker_is_refused_without_asking_anyone(shards):
    with pytest.raises(ClusterUnavailable, match="active_holds not asked: worker w1 is hung"):
        shards.active_holds()  # (an action's check must see every worker's holds)
    account_of_w1 = next(f"acc_{i:016x}" for i in range(100)
                         if shards.placement.worker_of(f"acc_{i:016x}") == "w1")
    with pytest.raises(ClusterUnavailable, match="not asked: worker w1 is hung"):
        shards.records_for_account(account_of_w1)  # its one worker
    assert _asked(shards) == []


def test_a_message_not_found_elsewhere_is_refused_not_reported_absent(shards):
    with pytest.raises(ClusterUnavailable, match="find_record not asked: worker w1 is hung"):
        shards.find_record(RECORD_ID)  # w1 may hold it: "no such message" would be a lie
    assert _asked(shards) == [("w0", "find_record")]


def test_an_action_is_done_where_it_can_be_and_reported_as_not_done_at_the_hung_worker(shards):
    with pytest.raises(ClusterUnavailable) as refused:
        shards.forget_account("acc_0000000000000001")
    message = refused.value.message
    assert "done at w0" in message and "not asked w1 (hung)" in message, message
    assert "the same erasure again is safe" in message
    assert _asked(shards) == [("w0", "forget_account")]
    assert refused.value.public_message == PARTIAL_ACTION  # a customer's: no worker named


def test_without_a_supervisor_every_worker_is_asked():
    shards = ClusterShards(_Transport(), ("w0", "w1"))  # (workers started elsewhere: --role)
    try:
        assert shards.holds_view()["holds_missing"] == {"w1": "cluster_unavailable"}
        assert sorted(_asked(shards)) == [("w0", "active_holds"), ("w1", "active_holds")]
    finally:
        shards.close()


class _Refusing:
    """Every worker refuses: error ``code``, in ``words``."""

    def __init__(self, code: str, words: str) -> None:
        self.code, self.words = code, words

    def request(self, node: str, payload: bytes, timeout: float, act_by: float | None = None,
                *, read: bool = False) -> bytes:
        return m.encode(m.ShardReply(False, self.words, self.code))


def test_a_workers_refusal_names_the_worker_to_the_operator_and_not_to_a_customer():
    shards = ClusterShards(_Refusing("hold_conflict", "no such hold"), ("w0", "w1"))
    try:
        with pytest.raises(SmsrouteError) as refused:
            shards.active_holds()
        assert refused.value.code == "hold_conflict" and "worker w0" in refused.value.message
        assert refused.value.public_message == "no such hold"  # its words, without its name
    finally:
        shards.close()
    shards = ClusterShards(_Refusing("cluster_unavailable", "e0 is not ready"), ("w0", "w1"))
    try:  # a worker's cluster_unavailable may name other processes: a customer gets the general words
        with pytest.raises(ClusterUnavailable) as refused:
            shards.active_holds()
        assert refused.value.public_message == ClusterUnavailable.PUBLIC_MESSAGE
    finally:
        shards.close()
