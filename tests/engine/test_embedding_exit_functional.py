"""An embedding host never hangs: it exits without ``engine.stop()`` and the engine still stops cleanly.

A child process embeds the engine with SMPP carriers bound to a simulated SMSC in this process, sends
one message, then raises, simply ends, or raises inside ``with Engine.start(...)``. The process must
exit on its own with the host's status; the SMSC must see every bind unbind (the engine was stopped,
not abandoned); and the data directory must open again with the message and its one debit intact.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.smsc import SmscThread
from engine import Engine
from engine.errors import DataDirInUse
from storage.ledger import DEBIT
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
EXIT_DEADLINE = 60.0  # seconds for the child to start, deliver and exit: a bound, not an expectation


@pytest.fixture
def smsc():
    thread = SmscThread().start()
    yield thread
    thread.stop()


@pytest.mark.parametrize("mode,status,stderr", [
    ("raise", 1, "RuntimeError: the host failed before engine.stop()"),
    ("return", 0, ""),
    ("with", 1, "RuntimeError: the host failed inside the with block"),
])
def test_a_host_that_ends_without_stop_exits_and_the_engine_stops_cleanly(tmp_path, smsc, mode,
                                                                          status, stderr):
    data, out = tmp_path / "data", tmp_path / "out.txt"
    child = subprocess.run([sys.executable, "-m", "tests.engine.exit_child", str(data),
                            str(smsc.port), mode, str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=EXIT_DEADLINE)
    assert child.returncode == status, child.stderr
    assert stderr in child.stderr
    account_id, message_id, price = out.read_text().split()

    binds = smsc.call(lambda: smsc.smsc.counters["bind_transceiver"])
    assert binds >= 6
    wait_for(lambda: smsc.call(lambda: smsc.smsc.counters["unbind"]) >= binds,
             "every bind to unbind")

    with Engine.start(data_dir=data) as engine:  # the lock went with the child
        assert engine.status(message_id).status == "delivered"
        debits = [e for e in engine.runtime.ledger_store.entries(account_id) if e.kind == DEBIT]
        assert [e.reference for e in debits] == [message_id]
        assert engine.balance(account_id) == 10_000_000 - int(price)


def test_engine_start_on_a_data_directory_in_use_is_refused_until_it_is_stopped(tmp_path):
    first = Engine.start(data_dir=tmp_path / "data")
    try:
        with pytest.raises(DataDirInUse, match="in use by another smsroute engine"):
            Engine.start(data_dir=tmp_path / "data")
        assert not first.stopping  # the refused start touched nothing of the running engine
        assert first.status("not-an-id") is None
    finally:
        first.stop()
    Engine.start(data_dir=tmp_path / "data").stop()
