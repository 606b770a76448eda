"""The processes' log lines carry the fields the engine logs with (``extra``): before, ``smsroute`` printed
``retention sweep failed`` or ``body store alarm`` without the store or the alarm they were about."""

from __future__ import annotations

import logging
import sys

import pytest

from engine.log_format import FORMAT, FieldsFormatter
from tests.engine.cli_support import Running
from tests.waiting import wait_for


def _line(name: str, extra: dict, exc_info=None) -> str:
    record = logging.getLogger(name).makeRecord(name, logging.ERROR, __file__, 1,
                                                "retention sweep failed", (), exc_info, extra=extra)
    return FieldsFormatter(FORMAT).format(record)


def test_an_engine_records_fields_follow_its_message_as_key_value():
    line = _line("actors.sweeper", {"store": "accounts", "reason": "no space left", "error": "Error",
                                    "counts": {"removed": 2}})
    assert line.endswith('retention sweep failed store=accounts reason="no space left" error=Error '
                         'counts={"removed":2}')


def test_the_fields_come_before_a_traceback():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        line = _line("storage.bodies", {"alarm": "corrupt_record"}, sys.exc_info())
    first, rest = line.split("\n", 1)
    assert first.endswith("alarm=corrupt_record") and rest.startswith("Traceback")


def test_another_librarys_fields_are_not_printed():
    assert _line("aiohttp.server", {"peer": "x"}).endswith("retention sweep failed")


@pytest.mark.functional
def test_smsroute_v_run_names_the_store_of_each_retention_sweep(tmp_path):
    with Running("-v", "run", "--no-http", "--data-dir", str(tmp_path / "data")) as run:
        line = wait_for(lambda: next((x for x in run.lines if "retention sweep store=accounts" in x),
                                     None), "the accounts store's sweep logged", 30)
        assert 'counts={"removed":0}' in line
        assert run.stop() == 0
