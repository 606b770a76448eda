"""An error code rebuilt on the far side of a process hop (``engine.errors.error_from_code``)."""

from __future__ import annotations

from engine import errors
from engine.errors import (
    ClusterUnavailable,
    OutcomeUnknown,
    SmsrouteError,
    WorkerUnavailable,
    error_from_code,
)
from engine.http.errors import from_engine_error


def test_every_code_rebuilds_the_class_that_declares_it():
    """(The errors of ``engine.errors``; a module's own error class, such as the SMPP codec's, is not
    rebuilt by code: it never crosses a process.)"""
    for cls in errors._all_subclasses(SmsrouteError):
        if cls.__module__ != errors.__name__:
            continue
        rebuilt = type(error_from_code(cls.code, "x"))
        assert rebuilt.code == cls.code
        assert "code" in vars(rebuilt), (cls.__name__, rebuilt.__name__)


def test_cluster_unavailable_from_another_process_says_nothing_was_sent():
    """An answer ``cluster_unavailable`` from another process (a worker or the core refusing at once) was
    rebuilt as ``OutcomeUnknown``, which claims the request may have taken effect (``maybe_sent``: an
    ``Idempotency-Key`` then stays pending and its retry is answered 409 idempotency_outcome_unknown)."""
    error = error_from_code("cluster_unavailable", "w1 is not ready")
    assert type(error) is ClusterUnavailable and not error.maybe_sent
    assert OutcomeUnknown("late").maybe_sent  # the side that waited still says so itself


def test_a_cluster_error_names_its_processes_to_the_operator_only():
    """A cluster's errors name its worker processes (``w1 did not answer``): the operator's to read
    (control port, logs, the embedding API), never a customer's (``public_message``, the customer API),
    unless the text was written for the customer."""
    error = error_from_code("cluster_unavailable", "w1 did not answer: TimeoutError")
    assert error.message == "w1 did not answer: TimeoutError"
    assert error.public_message == ClusterUnavailable.PUBLIC_MESSAGE and "w1" not in error.public_message
    assert ClusterUnavailable("w1 is hung", public="the link is down").public_message == "the link is down"
    not_ready = "the worker holding this account is not ready (hung); nothing was sent"
    assert WorkerUnavailable(not_ready).public_message == not_ready
    assert OutcomeUnknown("may or may not have been accepted").public_message.startswith("may or may")
    assert error_from_code("no_route", "nothing serves +999").public_message == "nothing serves +999"

    customer = from_engine_error(error, customer=True)
    operator = from_engine_error(error)
    assert customer.status == operator.status == 503 and customer.headers["Retry-After"]
    assert b"w1" not in customer.body and b"w1 did not answer" in operator.body
