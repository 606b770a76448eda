"""A frame from another process for ``session/<name>`` starts a session only for a name that is an
account id.

A worker starts the session of an account on its first submit or debit (``ClusterLink.deliver``). Before,
any name did: a process holding the cluster's NATS token could start an actor (and its thread, and on a
worker a data key) per invented name, without bound. The delivery is exercised on an engine's runtime
directly (in a cluster it is the transport thread's call for each inbound frame).
"""

from __future__ import annotations

import logging
import time

from engine import Engine
from engine import messages as m
from engine.ids import is_account_id, new_account_id
from tests.engine.crash_support import delivering_carriers


def _debit(name: str) -> tuple[bytes, m.Message]:
    msg = m.AdjustBalance(0, name, -1, "probe", "k1", "probe", time.time())
    return m.encode(msg), msg


def test_a_frame_for_an_invented_session_name_starts_no_session(tmp_path, caplog):
    engine = Engine.start(tmp_path / "data", overrides=delivering_carriers())
    try:
        runtime = engine.runtime
        before = set(runtime.directory.sessions)
        names = ["acc_" + "x" * 16, "invented", "acc_0123456789ABCDEF", "acc_0123456789abcdef\n",
                 "acc_0123456789abcdef0", "../ledger"]
        with caplog.at_level(logging.WARNING):
            for name in names:
                assert runtime.link.deliver(f"session/{name}", *_debit(name)) is False  # counted by the transport
        assert set(runtime.directory.sessions) == before
        assert runtime.link.refused_session_names == len(names)
        assert "invented" not in caplog.text and "x" * 16 not in caplog.text  # the name is not logged

        well_formed = new_account_id()  # an account id still starts its session on its first debit
        assert runtime.link.deliver(f"session/{well_formed}", *_debit(well_formed)) is True
        assert well_formed in runtime.directory.sessions
    finally:
        engine.stop(drain_seconds=0)


def test_the_ids_accounts_are_made_with_have_the_shape_the_check_takes():
    assert all(is_account_id(new_account_id()) for _ in range(100))
    assert not is_account_id("acc_") and not is_account_id(None)  # type: ignore[arg-type]
