"""Each SMPP module imports on its own (no hidden import-order dependencies)."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = ["engine.smpp", "engine.smpp.pdu", "engine.smpp.stream", "engine.smpp.receipts",
           "engine.smpp.submit", "engine.smpp.queue", "engine.smpp.bind", "engine.smpp.client",
           "bench.smsc", "bench.smsc_faults", "bench.smsc_receipts", "bench.smsc_cli",
           "bench.smsc_check", "actors.carrier_smpp"]


@pytest.mark.parametrize("module", MODULES)
def test_the_module_imports_alone(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, timeout=60)
