"""The running engine sweeps every store the retention table names (not just the stores' own tests)."""

from __future__ import annotations

import time

from engine import Engine
from storage.audit import AuditLog
from storage.env import open_env
from tests.engine.crash_support import delivering_carriers


def test_every_retention_category_held_by_the_engine_is_swept_by_the_running_engine(tmp_path):
    overrides = delivering_carriers()
    overrides["http"] = {"customer_port": 0, "control_port": 0}
    engine = Engine.start(data_dir=tmp_path / "data", overrides=overrides, http=True)
    try:
        swept = set(engine.swept_stores())
        for pop in ("fra", "sin", "gru"):
            assert {f"bodies:{pop}", f"records:{pop}", f"holds:{pop}", f"audit:{pop}"} <= swept
        assert {"accounts", "ledger", "request_log", "idempotency", "audit:control",
                "operator_tokens"} <= swept
        # customer mail, data-subject requests, one-time proofs, incidents, support correspondence
        assert {"mail_outbox", "dsar", "link_tokens", "wallet_challenges", "incidents",
                "support"} <= swept
        result = engine.sweep_now()
        assert set(result["last"]) == swept  # one sweep ran over every one of them
        assert result["totals"]["failures"] == 0
    finally:
        engine.stop()


def test_audit_entries_older_than_a_year_are_swept_and_newer_ones_kept(tmp_path):
    now = [time.time() - 400 * 86400]
    log = AuditLog(open_env(tmp_path / "env"), clock=lambda: now[0])
    log.append("ops:alice", "place_legal_hold", "hold_1", "ok")
    now[0] = time.time()
    log.append("ops:bob", "release", "hold_1", "ok")
    assert log.sweep(time.time()) == 1
    assert [e.actor for e in log.entries()] == ["ops:bob"]
