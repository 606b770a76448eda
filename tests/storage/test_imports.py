"""Each storage module (and the sweeper) imports on its own, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_CYCLE = pytest.mark.xfail(
    reason="engine/__init__.py imports the runtime eagerly (engine._engine -> actors.supervisor -> "
           "storage.bodies -> storage.keys -> storage.crypto): importing one of them first closes a cycle. Fix belongs in "
           "engine/__init__.py (lazy re-exports), not in storage.", strict=False)
MODULES = [pytest.param("storage.crypto", marks=_CYCLE), pytest.param("storage.keys", marks=_CYCLE),
           pytest.param("storage.bodies", marks=_CYCLE), "storage.audit", "storage.holds",
           "storage.retention", "actors.sweeper"]


@pytest.mark.parametrize("module", MODULES)
def test_the_module_imports_alone(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
