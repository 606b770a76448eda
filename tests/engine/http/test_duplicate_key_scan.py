"""The cheap scan that decides whether a decoded body needs the full duplicate-key check
(``engine.http.schemas._may_repeat_a_key``) never lets a repeated key through: whatever the values hold
and however the body is spaced, a body with a key twice is flagged, and ``decode`` refuses it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.http import schemas as s
from engine.http.errors import HttpError

NAMES = ["to", "from", "body", "callback_url", "validity_seconds", "client_ref"]
SPACE = st.sampled_from(["", " ", "\n", "\t ", "  "])
VALUES = st.one_of(st.text(max_size=30), st.sampled_from(['"to"', '"from":"x"', 'to', '\\"body\\"']),
                   st.integers(), st.none())


@st.composite
def bodies(draw) -> tuple[bytes, bool]:
    """A JSON object of the message's field names (some repeated, maybe), spaced at random."""
    keys = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=8))
    parts = []
    for key in keys:
        parts.append(draw(SPACE) + json.dumps(key) + draw(SPACE) + ":" + draw(SPACE)
                     + json.dumps(draw(VALUES)) + draw(SPACE))
    return ("{" + ",".join(parts) + "}").encode(), len(set(keys)) != len(keys)


@settings(max_examples=400, deadline=None)
@given(bodies())
def test_a_body_with_a_key_twice_is_always_flagged_for_the_full_check(body):
    raw, repeated = body
    if repeated:
        assert s._may_repeat_a_key(raw, s.MessageRequest)


@pytest.mark.parametrize("raw", [
    b'{"to":"+4915112345678","from":"ACME","body":"a","to":"+4915112345679"}',
    b'{ "to" : "+4915112345678" , "from":"ACME", "body" :"a" ,"body":"b"}',
    b'{"to":"+4915112345678","from":"ACME","body":"\\"to\\"","client_ref":"r","client_ref":"s"}',
])
def test_decode_refuses_a_message_with_a_key_twice(raw):
    with pytest.raises(HttpError) as refused:
        s.decode(raw, s.MessageRequest)
    assert refused.value.code == "duplicate_key"


def test_a_body_whose_values_name_no_field_twice_needs_no_second_parse():
    raw = b'{"to":"+4915112345678","from":"ACME","body":"Your code is 123456"}'
    assert not s._may_repeat_a_key(raw, s.MessageRequest)
    assert s._may_repeat_a_key(b'{"to":"+4915112345678","from":"ACME","body":"say \\"to\\""}',
                               s.MessageRequest) is False  # an escaped quote is not a field name
