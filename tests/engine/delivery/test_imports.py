"""Each delivery-policy module imports on its own, in a fresh interpreter (and so does the POP actor)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MODULES = ["engine.delivery", "engine.delivery.attempt", "engine.delivery.retry",
           "engine.delivery.carriers", "engine.delivery.admission", "engine.delivery.timers",
           "engine.delivery.outbox", "engine.delivery.dispatcher", "actors.pop"]


@pytest.mark.parametrize("module", MODULES)
def test_the_module_imports_alone(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
