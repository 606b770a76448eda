"""Each engine.mail and engine.privacy module imports on its own (no hidden import-order dependencies)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import engine.mail
import engine.privacy

MODULES = sorted([f"engine.mail.{m.name}" for m in pkgutil.iter_modules(engine.mail.__path__)]
                 + [f"engine.privacy.{m.name}" for m in pkgutil.iter_modules(engine.privacy.__path__)])


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
