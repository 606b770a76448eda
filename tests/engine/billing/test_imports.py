"""Each engine.billing module imports on its own (no hidden import-order dependencies)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine.billing

ROOT = Path(__file__).resolve().parents[3]
MODULES = sorted(f"engine.billing.{m.name}" for m in pkgutil.iter_modules(engine.billing.__path__))


@pytest.mark.parametrize("module", MODULES)
def test_the_module_imports_alone(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
