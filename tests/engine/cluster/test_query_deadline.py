"""A request between cluster processes is acted on only while its asker still waits for the answer.

Real nats-server on loopback, two transports; the asker reaches the server through a relay that can cut
or stall its link. Before, a request made while the link was down waited in nats-py's reconnect buffer
and was sent - and acted on - after the reconnect, although its caller had long been told
``cluster_unavailable``; one that a stalled link delivered late was acted on too.
"""

from __future__ import annotations

import threading
import time

import pytest

from engine import messages as m
from engine.cluster.cluster_shards import QUERY_THREADS_PER_WORKER, ClusterShards
from engine.cluster.nats_server import NatsServer
from engine.cluster.transport import Transport
from engine.errors import ClusterUnavailable
from tests.engine.cluster.support import LinkCutter
from tests.waiting import wait_for

pytestmark = pytest.mark.functional


@pytest.fixture()
def pair(tmp_path):
    """``(asker, answerer, link, asked)``: the asker's link goes through ``link``; ``asked`` lists the
    kinds the answerer acted on."""
    server = NatsServer(log_dir=tmp_path / "nats-log").start()
    link = LinkCutter(server.port)
    asked: list[str] = []

    def answer(raw: bytes) -> bytes:
        asked.append(m.decode(raw).kind)
        return m.encode(m.ShardReply(True, None, ""))

    deliver = lambda target, frame, message: True  # noqa: E731
    answerer = Transport([server.url], "w0", deliver, answer=answer).start()
    asker = Transport([link.url], "core", deliver).start()
    try:
        yield asker, answerer, link, asked
    finally:
        asker.stop()
        answerer.stop()
        link.close()
        server.stop()


def _ask(asker: Transport, kind: str, timeout: float = 5.0) -> None:
    asker.request("w0", m.encode(m.ShardQuery(kind, [])), timeout)


def test_a_request_while_the_link_is_down_is_refused_at_once_and_never_sent_later(pair):
    asker, answerer, link, asked = pair
    link.cut()
    wait_for(lambda: not asker.connected, "the asker to notice its link is down")
    started = time.monotonic()
    with pytest.raises(ClusterUnavailable):
        _ask(asker, "suspend_carrier", timeout=3.0)
    waited = time.monotonic() - started
    link.restore()
    wait_for(lambda: asker.connected, "the asker to reconnect", 15)
    _ask(asker, "carrier_stats")  # answered after anything sent before it on this link
    assert asked == ["carrier_stats"]  # the refused suspension was not sent after the reconnect
    assert waited < 1.0  # refused at once, not after waiting out its time-out in the reconnect buffer
    assert asker.stats()["requests_refused"] == 1


def test_a_request_that_arrives_after_its_asker_gave_up_is_dropped_counted_not_acted_on(pair):
    asker, answerer, link, asked = pair
    link.hold()  # the link stalls unnoticed: the request goes out but stays in the relay
    with pytest.raises(ClusterUnavailable):
        _ask(asker, "place_hold", timeout=1.0)
    link.release()  # it arrives now, after its deadline
    _ask(asker, "carrier_stats")  # answered after the late one, which came first on this link
    assert asked == ["carrier_stats"]  # the hold its asker reported as failed was not placed
    assert answerer.stats()["late_queries"] == 1


def test_a_request_past_the_deadline_it_was_given_is_not_sent(pair):
    asker, answerer, link, asked = pair
    with pytest.raises(ClusterUnavailable, match="not asked in time"):
        asker.request("w0", m.encode(m.ShardQuery("forget_account", [])), 5.0, act_by=time.time() - 1)
    _ask(asker, "carrier_stats")
    assert asked == ["carrier_stats"]


class _FailingFirst:
    """A transport whose question to w0 fails at once (w0 did not answer) and that records the rest."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, float | None]] = []

    def request(self, node: str, payload: bytes, timeout: float, act_by: float | None = None,
                *, read: bool = False) -> bytes:
        self.asked.append((node, act_by))
        if node == "w0":
            raise ClusterUnavailable("w0 did not answer")
        return m.encode(m.ShardReply(True, None, ""))


def test_when_one_worker_fails_a_question_still_queued_for_another_is_never_sent():
    """The core's query threads may all be busy: a worker's question waits for one. Before, it was sent
    once a thread came free - after the caller had been told 503 - with a fresh deadline, and acted on."""
    transport = _FailingFirst()
    shards = ClusterShards(transport, ("w0", "w1"))
    busy = threading.Event()
    try:
        for _ in range(QUERY_THREADS_PER_WORKER):  # w1's threads are busy: its question waits
            shards._pools["w1"].submit(busy.wait, 10)
        with pytest.raises(ClusterUnavailable):
            shards.suspend_carrier("fra-telekom", True)
    finally:
        busy.set()
        shards.close()
    assert [node for node, _ in transport.asked] == ["w0"]


def test_requests_to_a_killed_node_fail_at_once_when_its_asker_gives_up_on_it(tmp_path):
    """The supervisor killed a hung worker: what the core still waits for from it will never come.
    Before, each such request waited out its whole time-out (30 s for the core's queries), holding a
    query thread; now ``give_up_on`` fails them at once, and only them."""
    server = NatsServer(log_dir=tmp_path / "nats-log").start()
    release = threading.Event()

    def never(raw: bytes) -> bytes:  # the hung worker: takes the question, answers nothing
        release.wait(30)
        return m.encode(m.ShardReply(True, None, ""))

    deliver = lambda target, frame, message: True  # noqa: E731
    hung = Transport([server.url], "w0", deliver, answer=never).start()
    other = Transport([server.url], "w1", deliver,
                      answer=lambda raw: m.encode(m.ShardReply(True, None, ""))).start()
    asker = Transport([server.url], "core", deliver).start()
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            asker.request("w0", m.encode(m.ShardQuery("records_page", [])), 20.0)
        except BaseException as exc:
            errors.append(exc)

    askers = [threading.Thread(target=ask) for _ in range(2)]
    try:
        for t in askers:
            t.start()
        wait_for(lambda: len(asker._asking.get("w0", ())) == 2, "both requests to w0 waiting", 5)
        started = time.monotonic()
        assert asker.give_up_on("w0") == 2
        for t in askers:
            t.join(5)
        assert time.monotonic() - started < 2.0  # not their 20 s time-out
        assert len(errors) == 2 and all(isinstance(e, ClusterUnavailable) for e in errors)
        asker.request("w1", m.encode(m.ShardQuery("carrier_stats", [])), 5.0)  # others unaffected
    finally:
        release.set()
        for t in askers:
            t.join(5)
        asker.stop()
        other.stop()
        hung.stop()
        server.stop()


def test_a_node_judged_hung_has_its_reads_given_up_and_its_actions_waited_for(tmp_path):
    """At the hung verdict the node may still wake and act (a SIGCONT): a read given up then changes
    nothing if it is answered late, but an action reported failed could be done afterwards. So
    ``give_up_on(node, reads_only=True)`` fails only the reads (before: both held their query thread
    until the kill or their time-out), and the action still gets its answer once the node wakes."""
    server = NatsServer(log_dir=tmp_path / "nats-log").start()
    release = threading.Event()

    def stalled(raw: bytes) -> bytes:  # the hung worker: answers once it wakes
        release.wait(30)
        return m.encode(m.ShardReply(True, m.decode(raw).kind, ""))

    deliver = lambda target, frame, message: True  # noqa: E731
    hung = Transport([server.url], "w0", deliver, answer=stalled).start()
    asker = Transport([server.url], "core", deliver).start()
    outcomes: dict[str, object] = {}

    def ask(kind: str, read: bool) -> None:
        try:
            outcomes[kind] = m.decode(asker.request("w0", m.encode(m.ShardQuery(kind, [])), 20.0,
                                                    read=read)).result
        except BaseException as exc:
            outcomes[kind] = exc

    askers = {kind: threading.Thread(target=ask, args=(kind, kind == "records_page"))
              for kind in ("records_page", "place_hold")}
    try:
        for t in askers.values():
            t.start()
        wait_for(lambda: len(asker._asking.get("w0", ())) == 2, "both requests to w0 waiting", 5)
        started = time.monotonic()
        assert asker.give_up_on("w0", reads_only=True) == 1
        askers["records_page"].join(5)
        assert time.monotonic() - started < 2.0  # not its 20 s time-out
        assert isinstance(outcomes["records_page"], ClusterUnavailable)
        assert "given up on it" in str(outcomes["records_page"])
        assert askers["place_hold"].is_alive() and "place_hold" not in outcomes  # still waiting
        release.set()  # the node wakes: the action's answer is its caller's
        askers["place_hold"].join(5)
        assert outcomes["place_hold"] == "place_hold"
    finally:
        release.set()
        for t in askers.values():
            t.join(5)
        asker.stop()
        hung.stop()
        server.stop()
