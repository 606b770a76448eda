"""The README's webhook verification snippet, run as a customer would copy it.

Customers paste it into their receivers, so it must accept what the engine signs (one secret, or two
during a rotation; a single event or a batch) and refuse, without raising, what it must refuse: a stale
time, another body, another secret, and malformed headers (a receiver that raises answers 500 and the
engine retries a forgery's delivery as if it were a real failure).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from engine.http.webhooks import sign

README = Path(__file__).resolve().parents[3] / "README.md"


def _snippet_verify():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    [code] = [b for b in blocks if "def verify(secret: str, header: str" in b]
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the documented snippet itself
    return scope["verify"]


BODY = b'{"id":"evt_1","type":"message.status","data":{"status":"delivered"}}'
BATCH = b'[' + BODY + b',' + BODY.replace(b"evt_1", b"evt_2") + b']'


@pytest.mark.parametrize("body", [BODY, BATCH], ids=["event", "batch"])
def test_the_readme_snippet_accepts_what_the_engine_signs_even_during_a_rotation(body):
    verify, now = _snippet_verify(), int(time.time())
    assert verify("whsec_new", sign(["whsec_new"], body, now), body)
    rotating = sign(["whsec_new", "whsec_old"], body, now)  # newest first, both valid for a while
    assert verify("whsec_new", rotating, body) and verify("whsec_old", rotating, body)


@pytest.mark.parametrize("header", [
    "", "v1=abc", "t=", "t=abc,v1=00", "t=²³,v1=00", "garbage", "t=1,t=2,v1=00", ",,,",
])
def test_the_readme_snippet_refuses_a_malformed_header_instead_of_raising(header):
    assert _snippet_verify()("whsec_x", header, BODY) is False


def test_the_readme_snippet_refuses_a_stale_time_another_body_or_another_secret():
    verify, now = _snippet_verify(), int(time.time())
    assert not verify("whsec_x", sign(["whsec_x"], BODY, now - 301), BODY)
    assert not verify("whsec_x", sign(["whsec_x"], BODY, now), BODY + b" ")
    assert not verify("whsec_y", sign(["whsec_x"], BODY, now), BODY)
