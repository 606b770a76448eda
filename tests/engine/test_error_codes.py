"""An error code rebuilt on the far side of a process hop (``engine.errors.error_from_code``)."""

from __future__ import annotations

from engine import errors
from engine.errors import ClusterUnavailable, OutcomeUnknown, SmsrouteError, error_from_code


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
