"""The transport joins the submits for one session that leave in one flush into one ``SubmitMessages``
frame: the same items in the same order, each target's frames still in the order they were told, and
the receiver validates and delivers one frame per session instead of one per message."""

from __future__ import annotations

import threading
import typing

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import messages as m
from engine.cluster.transport import JOIN_BYTES, Transport, _joined
from tests.engine.test_messages import strategy_for
from tests.waiting import wait_for

_HINTS = typing.get_type_hints(m.SubmitMessage, include_extras=True)
SUBMITS = st.builds(m.SubmitMessage, *[strategy_for(_HINTS[f]) for f in m.SubmitMessage._fields])


def _fields(msg: m.SubmitMessage) -> m.SubmitItem:
    return m.SubmitItem(*[getattr(msg, f) for f in m.SubmitMessage._fields])


@settings(max_examples=60, deadline=None)
@given(msgs=st.lists(SUBMITS, min_size=1, max_size=40))
def test_joined_submits_are_the_bytes_of_a_submit_messages_of_the_same_items(msgs):
    frames = [m.encode(msg) for msg in msgs]
    assert all(m.is_submit_frame(f) for f in frames)
    joined = m.join_submits(frames)
    assert joined == m.encode(m.SubmitMessages([_fields(msg) for msg in msgs]))
    assert m.decode(joined).items == [_fields(msg) for msg in msgs]


def test_no_other_frame_counts_as_a_submit_frame():
    item = m.SubmitItem(1, b"k", "+4915112345678", "ACME", "hi", 0, None, 1.0, None, "")
    assert not m.is_submit_frame(m.encode(m.SubmitMessages([item])))
    assert not m.is_submit_frame(m.encode(m.Flush()))
    assert not m.is_submit_frame(m.encode(m.SenderRegistered("acc_x", "ACME")))


def _submit(rid: int, body: str = "hi") -> bytes:
    return m.encode(m.SubmitMessage(rid, b"k" * 32, "+4915112345678", "ACME", body, 0, None, 1.0))


def _per_target(frames: list[tuple[str, bytes]]) -> dict[str, list]:
    """What each target receives, in order: a request id per submit (joined or not), else the message."""
    out: dict[str, list] = {}
    for target, frame in frames:
        msg = m.decode(frame)
        if isinstance(msg, m.SubmitMessages):
            out.setdefault(target, []).extend(i.request_id for i in msg.items)
        elif isinstance(msg, m.SubmitMessage):
            out.setdefault(target, []).append(msg.request_id)
        else:
            out.setdefault(target, []).append(msg)
    return out


@settings(max_examples=100, deadline=None)
@given(plan=st.lists(st.tuples(st.sampled_from(["session/a", "session/b", "pop/fra"]),
                               st.booleans()), max_size=60))
def test_each_target_receives_its_frames_in_the_order_they_were_told(plan):
    frames = [(target, _submit(i) if submit else m.encode(m.SenderRegistered("acc_x", f"S{i}")))
              for i, (target, submit) in enumerate(plan)]
    joined = _joined(frames)
    assert _per_target(joined) == _per_target(frames)
    # a run of submits for one target, not broken by another frame for it, is one frame
    runs = 0
    last: dict[str, bool] = {}
    for target, submit in plan:
        if submit and not last.get(target):
            runs += 1
        last[target] = submit
    assert len(joined) == runs + sum(1 for _, submit in plan if not submit)


def test_a_joined_frame_stays_under_the_join_bound():
    body = "x" * 1000
    frames = [("session/a", _submit(i, body)) for i in range(300)]
    joined = _joined(frames)
    assert len(joined) > 1
    assert all(len(frame) <= JOIN_BYTES + 64 for _, frame in joined)
    assert _per_target(joined) == _per_target(frames)


def test_submits_told_together_arrive_as_one_validated_frame_per_session_over_a_real_server():
    from engine.cluster.nats_server import NatsServer

    got: list[tuple[str, m.Message]] = []
    lock = threading.Lock()

    def deliver(target: str, frame: bytes, msg: m.Message) -> bool:
        with lock:
            got.append((target, msg))
        return True

    with NatsServer() as server:
        worker = Transport([server.url], "w0", deliver).start()
        core = Transport([server.url], "core", lambda *a: True).start()
        try:
            a, b = core.ref("w0", "session/a"), core.ref("w0", "session/b")
            with core._lock:  # everything below leaves in one flush
                core._wake_pending = True
            for i in range(50):
                (a if i % 2 else b).tell(_submit(i))
            core._loop.call_soon_threadsafe(core._flush)
            wait_for(lambda: sum(len(msg.items) for _, msg in got) == 50, timeout=10)
        finally:
            core.stop()
            worker.stop()
    assert sorted(t for t, _ in got) == ["session/a", "session/b"]
    by_target = {t: [i.request_id for i in msg.items] for t, msg in got}
    assert by_target == {"session/a": list(range(1, 50, 2)), "session/b": list(range(0, 50, 2))}
    assert worker.counters["frames_in"] == 2
