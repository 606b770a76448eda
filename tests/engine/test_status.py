"""The status state machine over message parts: terminal finals, idempotent receipts, order independence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.status import (
    ACCEPTED,
    DELIVERED,
    EXPIRED,
    FAILED,
    FINAL,
    REJECTED,
    STATUSES,
    MessageState,
    status_from_smpp_state,
    worst,
)

SEVERITY_ORDER = [DELIVERED, EXPIRED, FAILED, REJECTED]  # worst last, as the policy ranks them

parts_and_applications = st.integers(min_value=1, max_value=6).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.tuples(st.integers(min_value=0, max_value=n - 1), st.sampled_from(STATUSES)),
                 max_size=30),
    )
)


def expected_worst(part_statuses: list[str]) -> str:
    if any(s not in FINAL for s in part_statuses):
        return ACCEPTED
    return max(part_statuses, key=SEVERITY_ORDER.index)


@settings(max_examples=300, deadline=None)
@given(case=parts_and_applications, closing=st.sampled_from(sorted(FINAL)))
def test_a_final_status_is_terminal_for_any_sequence_of_part_updates(case, closing):
    n, applications = case
    state = MessageState(parts=n)
    final_seen = None
    for part, status in applications:
        changed = state.apply(part, status)
        if final_seen is not None:
            assert not changed and state.status == final_seen
        elif state.final:
            final_seen = state.status
    state.finish(closing)  # expiry or exhausted retries close whatever is still open
    assert state.final
    if final_seen is not None:
        assert state.status == final_seen
    assert state.finish(closing) is False


@settings(max_examples=300, deadline=None)
@given(case=parts_and_applications)
def test_applying_the_same_receipt_twice_changes_nothing(case):
    n, applications = case
    state = MessageState(parts=n)
    for part, status in applications:
        state.apply(part, status)
        before = (list(state.parts), state.status)
        assert state.apply(part, status) is False
        assert (list(state.parts), state.status) == before


@settings(max_examples=300, deadline=None)
@given(finals=st.lists(st.sampled_from(sorted(FINAL)), min_size=1, max_size=6), data=st.data())
def test_the_order_of_final_part_receipts_does_not_change_the_outcome(finals, data):
    order = data.draw(st.permutations(range(len(finals))))
    a, b = MessageState(parts=len(finals)), MessageState(parts=len(finals))
    for i, status in enumerate(finals):
        a.apply(i, status)
    for i in order:
        b.apply(i, finals[i])
    assert a.status == b.status == expected_worst(finals)
    assert a.final


@settings(max_examples=300, deadline=None)
@given(case=parts_and_applications)
def test_a_message_is_delivered_only_if_every_part_was_delivered(case):
    n, applications = case
    state = MessageState(parts=n)
    first_final: dict[int, str] = {}
    for part, status in applications:
        state.apply(part, status)
        if status in FINAL:
            first_final.setdefault(part, status)
    if state.status == DELIVERED:
        assert len(first_final) == n and set(first_final.values()) == {DELIVERED}
    if len(first_final) == n and set(first_final.values()) == {DELIVERED}:
        assert state.status == DELIVERED


@settings(max_examples=300, deadline=None)
@given(case=parts_and_applications)
def test_the_message_takes_its_worst_parts_status_once_every_part_is_final(case):
    n, applications = case
    state = MessageState(parts=n)
    parts = [ACCEPTED] * n
    for part, status in applications:
        state.apply(part, status)
        if parts[part] not in FINAL:
            parts[part] = status
    assert state.parts == parts
    assert state.status == expected_worst(parts)


def test_worst_ranks_rejected_over_failed_over_expired_over_delivered():
    assert worst([DELIVERED, EXPIRED]) == EXPIRED
    assert worst([EXPIRED, FAILED, DELIVERED]) == FAILED
    assert worst([FAILED, REJECTED]) == REJECTED
    assert worst([DELIVERED, ACCEPTED]) == ACCEPTED


def test_resize_adds_open_parts_so_the_message_waits_for_them():
    state = MessageState(parts=1)
    state.resize(3)
    assert state.apply(0, DELIVERED) is False
    state.apply(1, DELIVERED)
    assert state.status == ACCEPTED
    assert state.apply(2, DELIVERED) is True and state.status == DELIVERED
    state.resize(5)  # a final message never grows
    assert len(state.parts) == 3


def test_a_receipt_for_a_part_out_of_range_is_ignored():
    state = MessageState(parts=2)
    assert state.apply(2, DELIVERED) is False and state.apply(-1, FAILED) is False
    assert state.parts == [ACCEPTED, ACCEPTED]


def test_finish_keeps_parts_that_were_already_final():
    state = MessageState(parts=3)
    state.apply(0, DELIVERED)
    state.apply(1, REJECTED)
    assert state.finish(EXPIRED) is True
    assert state.parts == [DELIVERED, REJECTED, EXPIRED] and state.status == REJECTED


def test_unknown_statuses_and_non_final_finish_are_refused():
    with pytest.raises(ValueError):
        MessageState(parts=1).apply(0, "sent")
    with pytest.raises(ValueError):
        MessageState(parts=1).finish(ACCEPTED)
    with pytest.raises(ValueError):
        MessageState(parts=0)


@pytest.mark.parametrize("state,status", [
    ("DELIVRD", DELIVERED), ("delivrd ", DELIVERED), ("UNDELIV", FAILED), ("DELETED", FAILED),
    ("UNKNOWN", FAILED), ("EXPIRED", EXPIRED), ("REJECTD", REJECTED), ("ENROUTE", ACCEPTED),
    ("ACCEPTD", ACCEPTED), ("SOMETHING", ACCEPTED),
])
def test_smpp_receipt_states_map_to_the_five_statuses(state, status):
    assert status_from_smpp_state(state) == status


def test_a_carrier_that_sends_a_long_message_whole_makes_it_one_part():
    """SMPP message_payload carries a two-segment text as one part: one receipt decides it."""
    state = MessageState(parts=2)
    state.resize(1)
    assert state.apply(0, DELIVERED) and state.status == DELIVERED and state.final
