"""``bench.http_instructions`` drives the real customer server without sockets: every route it measures
is answered as the API answers it (a harness that measured refusals would mislead)."""

from __future__ import annotations

import pytest

from bench import http_instructions


@pytest.mark.parametrize(("route", "status"), [("post", "202 Accepted"), ("batch", "200 OK"),
                                                ("get", "200 OK"), ("bare", "202 Accepted")])
def test_each_route_is_answered_as_the_api_answers_it(route, status):
    cpu, answer = http_instructions.measure(route, 20, batch=3)
    assert answer.split(b"\r\n", 1)[0] == f"HTTP/1.1 {status}".encode()
    assert cpu > 0
    if route == "batch":
        assert b'"accepted":3,"refused":0' in answer, answer
