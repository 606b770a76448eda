"""Each engine.http module imports on its own (no hidden import-order dependencies)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import engine.http

MODULES = sorted(f"engine.http.{m.name}" for m in pkgutil.iter_modules(engine.http.__path__))


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
