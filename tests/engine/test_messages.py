"""The actor message codec: every registered message type round-trips, and bad bytes fail only one way."""

from __future__ import annotations

import types
import typing
from typing import Any, Union

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import messages as m
from engine.errors import MalformedMessage

TYPES = sorted(m.message_types().items())
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)


def strategy_for(hint: Any) -> st.SearchStrategy:
    """A hypothesis strategy for one field type as the codec declares it."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:  # an int bounded with msgspec.Meta (an amount, a price)
        meta = hint.__metadata__[0]
        low = meta.ge if meta.ge is not None else meta.gt + 1
        return st.integers(min_value=low, max_value=meta.lt - 1)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return st.none() | strategy_for(inner)
    if origin is list:
        return st.lists(strategy_for(typing.get_args(hint)[0]), max_size=3)
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        hints = typing.get_type_hints(hint, include_extras=True)
        return st.builds(hint, *[strategy_for(hints[f]) for f in hint._fields])
    simple = {int: INT64, float: st.floats(allow_nan=False), bool: st.booleans(), str: TEXT,
              bytes: st.binary(max_size=40), Any: INT64}
    return simple[hint]


def message_strategy(cls: type) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls, include_extras=True)
    return st.builds(cls, *[strategy_for(hints[name]) for name in cls._fields])


def wrong_value_for(hint: Any) -> Any:
    """A value of a type the field does not accept."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return 12345 if inner == [str] else "not-this-type"
    if origin is list or hint in (int, float, bool, bytes):
        return "not-this-type"
    if hint is str:
        return 12345
    if isinstance(hint, type) and hasattr(hint, "_fields"):
        return {"a": 1}
    raise AssertionError(f"no wrong value known for {hint}")


def frame_of(msg: m.Message) -> list:
    return msgpack.unpackb(m.encode(msg), raw=False)


ALL_MESSAGES = st.one_of([message_strategy(cls) for _, cls in TYPES])


def test_every_message_type_has_a_distinct_tag_and_at_least_the_known_ones():
    assert len(TYPES) == len({tag for tag, _ in TYPES})
    names = {cls.__name__ for _, cls in TYPES}
    assert {"SubmitMessage", "AcceptMessages", "SubmitToCarrier", "StatusesChanged", "Flush"} <= names


@pytest.mark.parametrize("cls", [cls for _, cls in TYPES], ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_message_type_decodes_to_an_equal_message_after_encoding(cls, data):
    msg = data.draw(message_strategy(cls))
    back = m.decode(m.encode(msg))
    assert type(back) is cls
    assert back == msg
    for name in cls._fields:  # batches come back as the named tuples, not plain lists
        value = getattr(msg, name)
        if isinstance(value, list) and value and hasattr(value[0], "_fields"):
            assert all(type(x) is type(value[0]) for x in getattr(back, name))


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_decode_of_arbitrary_bytes_returns_a_message_or_raises_only_malformed_message(raw):
    try:
        msg = m.decode(raw)
    except MalformedMessage:
        return
    assert isinstance(msg, m.Message)


MSGPACK_VALUES = st.recursive(
    st.none() | st.booleans() | INT64 | st.floats() | TEXT | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(tag=st.sampled_from([t for t, _ in TYPES]) | INT64, version=MSGPACK_VALUES,
       fields=st.lists(MSGPACK_VALUES, max_size=14))
def test_decode_of_any_msgpack_array_raises_only_malformed_message(tag, version, fields):
    raw = msgpack.packb([tag, version, *fields])
    try:
        msg = m.decode(raw)
    except MalformedMessage:
        return
    assert isinstance(msg, m.Message)
    assert m.encode(msg) and type(msg).TAG == tag


@pytest.mark.parametrize("raw", [b"", b"\xc1", msgpack.packb(5), msgpack.packb([1]),
                                 msgpack.packb({"tag": 1}), msgpack.packb([{1: 2}, 1])])
def test_decode_of_non_frames_raises_malformed_message(raw):
    with pytest.raises(MalformedMessage):
        m.decode(raw)


@settings(max_examples=50, deadline=None)
@given(tag=st.integers(min_value=-(2**63), max_value=2**64 - 1).filter(
    lambda t: t not in m.message_types()))
def test_decode_of_an_unknown_tag_raises_malformed_message(tag):
    with pytest.raises(MalformedMessage, match="unknown message tag"):
        m.decode(msgpack.packb([tag, 1]))


@settings(max_examples=60, deadline=None)
@given(msg=ALL_MESSAGES, delta=st.integers(min_value=1, max_value=1000))
def test_decode_of_a_wrong_schema_version_raises_malformed_message(msg, delta):
    frame = frame_of(msg)
    frame[-1] += delta  # the version is the frame's last element
    with pytest.raises(MalformedMessage, match="schema version"):
        m.decode(msgpack.packb(frame))


@settings(max_examples=60, deadline=None)
@given(msg=ALL_MESSAGES, extra=st.integers(min_value=1, max_value=3), drop=st.booleans())
def test_decode_of_a_wrong_number_of_fields_raises_malformed_message(msg, extra, drop):
    frame = frame_of(msg)
    if drop and len(frame) > 2:
        frame = frame[:-2] + frame[-1:]  # one field fewer, the version kept
    else:
        frame = frame[:-1] + [0] * extra + frame[-1:]
    with pytest.raises(MalformedMessage, match="fields"):
        m.decode(msgpack.packb(frame))


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_decode_of_a_field_of_the_wrong_type_raises_malformed_message(data):
    cls = data.draw(st.sampled_from([cls for _, cls in TYPES if cls._fields]))
    msg = data.draw(message_strategy(cls))
    hints = typing.get_type_hints(cls)
    typed = [i for i, name in enumerate(cls._fields) if hints[name] is not Any]  # Any takes anything
    if not typed:
        return
    index = data.draw(st.sampled_from(typed))
    frame = frame_of(msg)
    frame[1 + index] = wrong_value_for(hints[cls._fields[index]])
    with pytest.raises(MalformedMessage, match=cls.__name__):
        m.decode(msgpack.packb(frame))


@pytest.mark.parametrize("bad_item", [["r", "+49"], ["r", "+49", "S", "b", "extra"],
                                      ["r", 5, "S", "b"], "r+49Sb"])
def test_decode_of_a_batch_item_of_the_wrong_shape_raises_malformed_message(bad_item):
    frame = frame_of(m.SubmitToCarrier([m.CarrierSubmitItem("r", "+49", "S", "b")]))
    frame[1] = [bad_item]
    with pytest.raises(MalformedMessage, match="SubmitToCarrier"):
        m.decode(msgpack.packb(frame))


def test_an_int_in_a_float_field_decodes_as_a_float_but_a_bool_in_an_int_field_is_refused():
    assert m.decode(msgpack.packb([m.Tick.TAG, 3, 1])) == m.Tick(3.0)
    assert type(m.decode(msgpack.packb([m.Tick.TAG, 3, 1])).now) is float
    with pytest.raises(MalformedMessage):
        m.decode(msgpack.packb([m.RegisterSession.TAG, True, 1]))
    with pytest.raises(MalformedMessage):
        m.decode(msgpack.packb([m.SubmitRejected.TAG, True, "c", "r", 1]))


def test_reusing_a_tag_is_refused_at_definition_time():
    with pytest.raises(ValueError, match="already used"):
        @m.message(m.Tick.TAG)
        class Clash(m.Message):
            now: float


@pytest.mark.parametrize("amount", [10**15, -(10**15), 2**63 - 1, 2**64 - 1])
def test_an_amount_beyond_a_billion_usd_is_malformed(amount):
    raw = m.encode(m.AdjustBalance(1, "acc_1", amount, "reason", "key", "actor", 0.0))
    with pytest.raises(MalformedMessage, match="AdjustBalance"):
        m.decode(raw)


@pytest.mark.parametrize("amount", [-1, -(10**9), 10**15, 2**63 - 1])
def test_a_debited_or_refunded_price_that_is_negative_or_beyond_a_billion_usd_is_malformed(amount):
    """A negative debit would credit the account and a negative refund debit it: from another process
    (the cluster's NATS) such a batch is refused whole at the door, never handed to the ledger."""
    debit = m.DebitMessages("w0/fra", 1, [m.DebitItem("msg_1", "acc_1", amount, 0.0)])
    refund = m.RefundMessages("w0/fra", [m.RefundItem("msg_1", "acc_1", amount, 0.0)])
    for raw in (m.encode(debit), m.encode(refund)):
        with pytest.raises(MalformedMessage):
            m.decode(raw)
    ok = m.decode(m.encode(m.RefundMessages("w0/fra", [m.RefundItem("msg_1", "acc_1", 0, 0.0)])))
    assert ok.items[0].amount_micro_usd == 0  # a free message's refund is fine


# --- the wire stays what every smsroute version writes and reads ------------------------------------


def reference_frame(msg: m.Message) -> bytes:
    """The frame as msgpack-python writes it from the documented layout ``[tag, fields..., version]``
    (items as arrays): an encoder independent of the codec under test."""
    cls = type(msg)
    return msgpack.packb([cls.TAG, *(getattr(msg, name) for name in cls._fields), cls.VERSION])


@pytest.mark.parametrize("cls", [cls for _, cls in TYPES], ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_encode_writes_exactly_the_bytes_of_the_documented_frame(cls, data):
    """Byte for byte what msgpack.packb writes for the frame: a process of another smsroute version
    (a cluster during an upgrade) reads these frames, and this one reads theirs."""
    msg = data.draw(message_strategy(cls))
    raw = reference_frame(msg)
    assert m.encode(msg) == raw
    assert m.decode(raw) == msg
    assert m.decode_or_drop(raw, "test") == msg


def test_encode_of_long_strings_big_ints_and_floats_matches_msgpack_packb():
    """The sizes hypothesis rarely draws: str8/str16/str32, bin16, every int width, float64."""
    for text in ("x" * 31, "x" * 32, "é" * 200, "y" * 70_000):
        for n in (0, 127, 128, 255, 256, 65_535, 65_536, 2**32, 2**63 - 1, -1, -32, -33, -(2**63)):
            msg = m.ShardReply(True, [text, n, 0.1, b"z" * 300, None, {"k": [n]}], "")
            assert m.encode(msg) == reference_frame(msg)
            assert m.decode(m.encode(msg)) == msg


@settings(max_examples=300, deadline=None,  # (caplog is cleared for each input)
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200) | st.builds(
    lambda tag, fields, version: msgpack.packb([tag, *fields, version]),
    st.sampled_from([t for t, _ in TYPES]), st.lists(MSGPACK_VALUES, max_size=14), MSGPACK_VALUES))
def test_decode_or_drop_returns_what_decode_returns_and_none_where_it_raises(raw, caplog):
    """decode_or_drop has a fast path of its own; it must take and refuse exactly what decode does."""
    try:
        expected = m.decode(raw)
    except MalformedMessage:
        expected = None
    caplog.clear()
    assert m.decode_or_drop(raw, "test") == expected
    assert bool(caplog.records) == (expected is None)  # a drop is logged, a message is not


@pytest.mark.parametrize("tag", [-1, 128, 255])
def test_a_tag_outside_0_to_127_is_refused_and_leaves_nothing_registered(tag):
    with pytest.raises(ValueError, match="tag from 0 to 127"):
        @m.message(tag)
        class OutOfRange(m.Message):
            now: float
    assert tag not in m.message_types()
    assert m.decode(m.encode(m.Tick(1.0))) == m.Tick(1.0)
