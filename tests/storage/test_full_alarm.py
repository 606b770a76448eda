"""A writer retrying into a full store logs one ALARM, a summary at most every ``every`` seconds with a
count, and one line when it writes again - not one line per retry."""

from __future__ import annotations

import logging

from storage.full_alarm import FullAlarm


def test_one_alarm_then_a_counted_summary_per_period_then_one_recovery_line(caplog):
    now = [0.0]
    alarm = FullAlarm("ledger", "ledger", every=60.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="storage.full_alarm")
    for tick in range(200):  # 20 s of 100 ms ticks: one line
        now[0] = tick * 0.1
        alarm.refused("5 debits wait")
    assert [r.getMessage() for r in caplog.records] == [
        "ledger: ALARM store ledger is full (disk or LMDB map): 5 debits wait, retried until it takes "
        "writes again; nothing stored is lost"]
    for tick in range(200, 700):  # to 70 s: one summary, counting the refusals since the first line
        now[0] = tick * 0.1
        alarm.refused("5 debits wait")
    summaries = [r.getMessage() for r in caplog.records[1:]]
    assert len(summaries) == 1 and "still full: 600 writes refused in the last 60 s" in summaries[0]
    alarm.wrote()
    alarm.wrote()
    assert caplog.records[-1].getMessage() == (
        "ledger: store ledger takes writes again (99 writes refused since the last report)")
    assert len(caplog.records) == 3 and not alarm.full
